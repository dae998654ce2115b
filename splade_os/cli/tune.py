"""`splade-os tune`: measure two-phase settings on an index with its own queries, and store the fastest safe one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from splade_os.cli.options import (
    cli_errors,
    connection_options,
    device_options,
    echo_json,
    json_report_options,
    model_option,
)
from splade_os.cli.progress import ProgressFactory, Steps, progress_options
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import connect
from splade_os.errors import InputError, SpladeOSError
from splade_os.evaluation import tuning as tuning_defaults
from splade_os.evaluation.tuning import DEFAULT_REPEAT, DEFAULT_WARMUP, TITLE_QUERIES_CAVEAT

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _queries(path: Path | None, client: object, index: str, sample: int) -> dict[str, str]:
    """Queries from a file (JSON Lines `{"_id", "text"}` as in BEIR, or one text per line), else document titles."""
    from splade_os.evaluation.evaluate import read_queries

    if path is not None and path.suffix in (".jsonl", ".json"):
        return read_queries(path)
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: invalid UTF-8 at byte {err.start}; give UTF-8, one query a line") from None
        return {f"q{n}": line.strip() for n, line in enumerate(lines, start=1) if line.strip()}
    body = {
        "size": sample,
        "query": {"function_score": {"random_score": {"seed": 7, "field": "_seq_no"}}},
        "_source": ["title", "text"],
    }
    hits = client.search(index=index, body=body)["hits"]["hits"]  # type: ignore[attr-defined]
    texts = {}
    for hit in hits:
        source = hit.get("_source", {})
        text = str(source.get("title") or " ".join(str(source.get("text") or "").split()[:12])).strip()
        if text:
            texts[f"doc:{hit['_id']}"] = text
    return texts


@click.command()
@click.argument("index")
@model_option()
@click.option(
    "--queries",
    "queries_file",
    type=FILE,
    help="Queries: JSON Lines {_id, text} or one per line. "
    "[default: titles of a random sample of the index's documents, which overstate agreement]",
)
@click.option(
    "--qrels",
    "qrels_file",
    type=FILE,
    help="Judgements (BEIR qrels TSV) of the queries: the target "
    "becomes nDCG@10 within --ndcg-loss of exact search's, what users feel, rather than agreement.",
)
@click.option(
    "--target",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Mean top-k agreement with exact search to reach. [default: 0.99; with --qrels, none unless given]",
)
@click.option(
    "--ndcg-loss",
    type=click.FloatRange(0, 1, max_open=True),
    default=tuning_defaults.NDCG_TOLERANCE,
    show_default=True,
    help="With --qrels: the nDCG@10 a setting may lose against exact search.",
)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits that must agree.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Documents whose titles are the queries when --queries is not given.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=DEFAULT_REPEAT,
    show_default=True,
    help="Timed passes per setting; the spread of their p50s tells a real gain from noise.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=DEFAULT_WARMUP,
    show_default=True,
    help="Untimed passes over every setting first, so that cold caches count against none of them.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the shuffled order the settings run in each pass: the same seed, the same order.",
)
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Write the frontier as a PNG.")
@json_report_options
@click.option("--dry-run", is_flag=True, help="Measure and report, but do not store the choice with the index.")
@progress_options
@device_options
@connection_options
def tune(
    index: str,
    model_dir: str,
    queries_file: Path | None,
    qrels_file: Path | None,
    target: float | None,
    ndcg_loss: float,
    k: int,
    sample: int,
    repeat: int,
    warmup: int,
    seed: int,
    plot_file: str | None,
    json_to: str | None,
    dry_run: bool,
    progress: ProgressFactory,
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Pick the fastest two-phase setting that keeps exact search's quality on INDEX, and store it in its _meta.

    Every setting of a grid (phase-one ratio, rescore window, query top-n) is measured against exact search on
    the same queries: mean top-k agreement, search request latency p50/p95, and nDCG@10 with --qrels. With
    judgements (--qrels) a setting must keep nDCG@10 within --ndcg-loss of exact search; without, reach a mean
    top-k agreement of --target. Every
    setting runs untimed first (--warmup), then in a new shuffled order each timed pass (--repeat, --seed); a
    faster setting whose gain is within the spread of the passes gives way to a safer one. `search --mode
    two-phase`, `eval` and `Searcher` then use the stored setting unless given one. Exit code 1 when no setting
    reaches the target (nothing is stored; exact search stays the reference). Progress (queries encoded, settings
    run) goes to stderr.
    """
    from splade_os.evaluation import tuning
    from splade_os.evaluation.evaluate import read_qrels
    from splade_os.model.encoder import SpladeEncoder
    from splade_os.model.settings import EncoderSettings
    from splade_os.retrieval.search import Searcher

    with cli_errors():
        qrels = read_qrels(qrels_file) if qrels_file else None
        client = connect(settings)
        try:
            with (
                SpladeEncoder(model_dir, settings=EncoderSettings(**device)) as encoder,
                Searcher(index, encoder, client=client) as searcher,
            ):
                queries = _queries(queries_file, client, index, sample)
                if qrels is not None:
                    queries = {q: t for q, t in queries.items() if q in qrels}
                with Steps(progress, "tune", {"queries": "queries"}, default="settings") as steps:
                    result = tuning.tune(
                        searcher,
                        queries,
                        k=k,
                        target=target,
                        qrels=qrels,
                        ndcg_loss=ndcg_loss,
                        repeat=repeat,
                        warmup=warmup,
                        seed=seed,
                        on_progress=steps,
                    )
            if queries_file is None:
                result.notes.insert(0, TITLE_QUERIES_CAVEAT)
            say = (lambda line: click.echo(line, err=True)) if json_to == "-" else click.echo  # stdout: JSON alone
            if json_to == "-":
                echo_json(result.to_json())
            else:
                click.echo(tuning.format_result(result))
            if json_to and json_to != "-":
                Path(json_to).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
            if plot_file:
                tuning.plot(result, plot_file)
                say(f"plot: {plot_file}")
            if result.chosen is None:
                raise SpladeOSError(result.reason)
            if not dry_run:
                tuning.store(client, index, result)
                say(f"stored in the _meta of {index}: two-phase search now uses {result.chosen.label}")
        finally:
            client.close()
