"""`splade-os eval`: BEIR evaluation through the cluster, per mode, with latency."""

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
from splade_os.retrieval.search import MODES


@click.command(name="eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
@model_option()
@click.option(
    "--index", help="Index to evaluate; built from the corpus when missing. [default: eval-<dataset>-<model>]"
)
@click.option(
    "--mode", "modes", multiple=True, type=click.Choice(MODES), help="Modes to run (repeatable). [default: all]"
)
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to judge with.")
@click.option("--depth", type=click.IntRange(min=10), default=100, show_default=True, help="Hits per query.")
@click.option("--exact", is_flag=True, help="Also score the same vectors exactly in memory, as a reference.")
@json_report_options
@click.option("--force", is_flag=True, help="Evaluate even if the index was built with another encoder.")
@progress_options
@device_options
@connection_options
def evaluate(
    dataset_dir: str,
    model_dir: str,
    index: str | None,
    modes: tuple[str, ...],
    split: str,
    depth: int,
    exact: bool,
    json_to: str | None,
    force: bool,
    progress: ProgressFactory,
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Evaluate DATASET_DIR (BEIR layout) with nDCG@10, Recall@100 and RR@10 (MRR@10) in each mode.

    Progress (the queries of each mode, the documents indexed or read) goes to stderr.
    """
    from splade_os.evaluation.evaluate import evaluate as run_evaluation
    from splade_os.evaluation.evaluate import format_table, load_beir
    from splade_os.model.encoder import SpladeEncoder
    from splade_os.model.settings import EncoderSettings

    with cli_errors():
        dataset = load_beir(dataset_dir, split)  # a malformed file is reported before any model or cluster work
        steps = Steps(progress, "eval", {"index": "documents", "exact": "documents"}, default="queries")
        with SpladeEncoder(model_dir, settings=EncoderSettings(**device)) as encoder, steps:
            client = connect(settings)
            report = run_evaluation(
                dataset,
                encoder,
                client=client,
                index=index,
                modes=modes or MODES,  # type: ignore[arg-type]
                depth=depth,
                split=split,
                exact=exact,
                force=force,
                on_indexing=lambda name: click.echo(f"index {name!r} is missing: indexing the corpus first", err=True),
                on_progress=steps,
            )
    if json_to == "-":
        echo_json(report.to_dict())
        return
    click.echo(format_table(report))
    if json_to:
        Path(json_to).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"report written to {json_to}")
