"""`splade-os search`: one query from a terminal, as a table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import click

from splade_os.cli.options import cli_errors, connection_options, device_options, model_option
from splade_os.connection import ConnectionSettings
from splade_os.retrieval.results import result_to_json
from splade_os.retrieval.search import MODES, Searcher, SearchResult

__all__ = ["result_to_json", "result_to_table", "search"]  # result_to_json moved to the library; kept here

TERMS_SHOWN = 5
TITLE_WIDTH = 40


def _term(token: str, value: float, result: SearchResult) -> str:
    # "+" marks an expansion: a term the model added that the query text does not contain.
    return f"{'+' if token in result.expansions else ''}{token}:{value:.2f}"


def result_to_table(result: SearchResult, explain: bool) -> str:
    terms = " ".join(_term(t, w, result) for t, w in result.query_vector.sorted_items()[:12])
    lines = [f"query terms ({len(result.query_vector)}, + = expansion): {terms}" if terms else "query terms: (bm25)"]
    lines += [f"note: {note}" for note in result.notes]
    id_width = max([len(h.id) for h in result.hits] + [2])
    lines.append(f"{'#':>2}  {'id':<{id_width}} {'score':>9}  {'title':<{TITLE_WIDTH}} matching terms")
    for rank, hit in enumerate(result.hits, start=1):
        matched = " ".join(_term(t, c, result) for t, c in (hit.explanation or [])[:TERMS_SHOWN])
        title = hit.title if len(hit.title) <= TITLE_WIDTH else hit.title[: TITLE_WIDTH - 3] + "..."
        lines.append(f"{rank:>2}  {hit.id:<{id_width}} {hit.score:>9.4f}  {title:<{TITLE_WIDTH}} {matched}")
        if explain and hit.explanation:
            total = sum(c for _, c in hit.explanation) or 1.0
            for token, contribution in hit.explanation:
                lines.append(f"{'':>6}{_term(token, contribution, result):<28} {contribution / total:6.1%}")
    if not result.hits:
        lines.append("   (no hits)")
    return "\n".join(lines)


@click.command()
@click.argument("text")
@click.option(
    "--index", required=True, envvar="SPLADE_OS_INDEX", help="Index or alias to search. [env: SPLADE_OS_INDEX]"
)
@model_option()
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="two-phase",
    show_default=True,
    help="two-phase: phase one on the heaviest query terms, exact scores on the rescored window (as exact in nDCG "
    "as splade at 500,000 real documents, and 2-3x faster: docs/scale.md); splade: exact; bm25; hybrid.",
)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of hits.")
@click.option("--explain", is_flag=True, help="Show every matching token's contribution (query x document weight).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--force", is_flag=True, help="Search even if the index was built with another encoder.")
@device_options
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
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Search INDEX for TEXT and print the hits with the tokens that matched."""
    from splade_os.model.encoder import SpladeEncoder
    from splade_os.model.settings import EncoderSettings

    with cli_errors():
        with SpladeEncoder(model_dir, settings=EncoderSettings(**device)) as encoder:
            with Searcher(index, encoder, settings=settings, force=force) as searcher:
                # The table always shows the top matching terms, so it always asks for explanations.
                result = searcher.search(text, k=k, mode=mode, explain=explain or not as_json)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(result_to_json(result, explain), ensure_ascii=False, indent=2))
    else:
        click.echo(result_to_table(result, explain))
