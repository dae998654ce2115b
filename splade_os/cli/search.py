"""`splade-os search`: one query from a terminal, as a table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import click

from splade_os.cli.options import cli_errors, connection_options, model_option
from splade_os.connection import ConnectionSettings
from splade_os.search import MODES, Searcher, SearchResult

TERMS_SHOWN = 5


def result_to_json(result: SearchResult, explain: bool) -> dict[str, Any]:
    return {
        "mode": result.mode,
        "took_ms": round(result.took_ms, 2),
        "notes": list(result.notes),
        "query_terms": dict(result.query_vector.sorted_items()),
        "hits": [
            {
                "id": hit.id,
                "score": hit.score,
                "title": hit.title,
                **(
                    {"explanation": [{"token": t, "contribution": c} for t, c in hit.explanation or []]}
                    if explain
                    else {}
                ),
            }
            for hit in result.hits
        ],
    }


def result_to_table(result: SearchResult, explain: bool) -> str:
    lines = [f"query terms: {result.query_vector.decode(limit=12)}" if result.query_vector else "query terms: (bm25)"]
    lines += [f"note: {note}" for note in result.notes]
    lines.append(f"{'#':>2}  {'id':<14} {'score':>9}  {'title':<48} matching terms")
    for rank, hit in enumerate(result.hits, start=1):
        terms = " ".join(f"{t}:{c:.2f}" for t, c in (hit.explanation or [])[:TERMS_SHOWN])
        title = hit.title if len(hit.title) <= 48 else hit.title[:45] + "..."
        lines.append(f"{rank:>2}  {hit.id:<14} {hit.score:>9.4f}  {title:<48} {terms}")
        if explain and hit.explanation:
            total = sum(c for _, c in hit.explanation)
            for token, contribution in hit.explanation:
                lines.append(f"{'':>28}{token:<20} {contribution:>8.4f}  ({contribution / total:5.1%})")
    if not result.hits:
        lines.append("   (no hits)")
    return "\n".join(lines)


@click.command()
@click.argument("text")
@click.option(
    "--index", required=True, envvar="SPLADE_OS_INDEX", help="Index or alias to search. [env: SPLADE_OS_INDEX]"
)
@model_option()
@click.option("--mode", type=click.Choice(MODES), default="splade", show_default=True, help="Retrieval mode.")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of hits.")
@click.option("--explain", is_flag=True, help="Show every matching token's contribution (query x document weight).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--force", is_flag=True, help="Search even if the index was built with another encoder.")
@connection_options
def search(
    text: str,
    index: str,
    model_dir: str,
    mode: str,
    k: int,
    explain: bool,
    as_json: bool,
    force: bool,
    settings: ConnectionSettings,
) -> None:
    """Search INDEX for TEXT and print the hits with the tokens that matched."""
    with cli_errors():
        searcher = Searcher(index, model_dir, settings=settings, force=force)
        # The table always shows the top matching terms, so it always asks for explanations.
        result = searcher.search(text, k=k, mode=mode, explain=explain or not as_json)  # type: ignore[arg-type]
        searcher.close()
    if as_json:
        click.echo(json.dumps(result_to_json(result, explain), ensure_ascii=False, indent=2))
    else:
        click.echo(result_to_table(result, explain))
