"""`splade-os doctor`, `stats` and `reindex`: what operators run against a live cluster."""

from __future__ import annotations

import json
import sys

import click

from splade_os.cli.groups import ModelChoice, Reading, encoder_options, load_options, reading_options
from splade_os.cli.options import cli_errors, connection_options, echo_json, json_option, model_option
from splade_os.cli.output import format_summary, summary_json
from splade_os.cli.progress import ProgressFactory, Steps, progress_options
from splade_os.cli.sections import OUTPUT, READING, option
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import connect
from splade_os.errors import SpladeOSError
from splade_os.indexing.options import LoadOptions
from splade_os.redaction import redact
from splade_os.words import plural


@click.command()
@click.option("--index", help="Also check this index or alias: mapping, encoder in _meta, shard health.")
@model_option(required=False)
@option(OUTPUT, "--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@connection_options
def doctor(index: str | None, model_dir: str | None, as_json: bool, settings: ConnectionSettings) -> None:
    """Check the cluster (and an index) for what splade-os needs; each failed check says how to fix it.

    Exit code 1 when a check failed (warnings do not count).
    """
    from splade_os.doctor import failed, format_checks, run_checks, to_json

    with cli_errors():
        checks = run_checks(settings, index=index, model_dir=model_dir)
    click.echo(redact(json.dumps(to_json(checks), indent=2) if as_json else format_checks(checks)))
    if failed(checks):
        sys.exit(1)


@click.command()
@click.argument("index")
@model_option(required=False)
@click.option("--sample", default=10_000, show_default=True, help="Documents read for features per document.")
@click.option("--bm25-docs", default=50_000, show_default=True, help="Documents copied for the BM25-only comparison.")
@click.option("--no-bm25", is_flag=True, help="Skip the BM25-only comparison (it copies documents twice).")
@option(OUTPUT, "--json", "as_json", is_flag=True, help="Print JSON.")
@progress_options
@connection_options
def stats(
    index: str,
    model_dir: str | None,
    sample: int,
    bm25_docs: int,
    no_bm25: bool,
    as_json: bool,
    progress: ProgressFactory,
    settings: ConnectionSettings,
) -> None:
    """Documents, size on disk, features per document, vocabulary coverage, and size against BM25 only.

    Vocabulary coverage needs --model (the vocabulary size). The BM25 comparison copies up to --bm25-docs documents
    into two temporary indices (with and without vectors), force-merges them and deletes them afterwards.
    Progress (the documents read, then copied) goes to stderr.
    """
    from splade_os.stats import format_stats, index_stats

    with cli_errors(), Steps(progress, "stats", {}, default="documents") as steps:
        result = index_stats(
            connect(settings),
            index,
            model_dir=model_dir,
            sample=sample,
            bm25_docs=None if no_bm25 else bm25_docs,
            on_progress=steps,
        )
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_stats(result))


@click.command()
@click.argument("alias")
@click.argument("corpus", required=False)
@option(READING, "--from-index", is_flag=True, help="Re-encode the documents of the current version (no CORPUS).")
@encoder_options(model_required=True, encoding=False)
@reading_options()
@load_options(reindex=True)
@json_option
@connection_options
def reindex(
    alias: str,
    corpus: str | None,
    from_index: bool,
    encoder: ModelChoice,
    reading: Reading,
    load: LoadOptions,
    as_json: bool,
    settings: ConnectionSettings,
) -> None:
    """Build ALIAS-v<next> from CORPUS (or --from-index), verify it, and move ALIAS to it atomically.

    Readers keep the current version until the new one is verified. The old version is kept for a rollback
    (`splade-os alias ALIAS OLD_INDEX`) unless --delete-previous. Exit code 1 when the alias was not moved.
    """
    from splade_os.indexing.reindex import reindex as run_reindex

    with cli_errors():
        if (corpus is None) != from_index:
            raise click.UsageError("give either a CORPUS or --from-index")
        result = run_reindex(
            connect(settings),
            alias,
            encoder.load(),
            corpus=corpus,
            corpus_options=reading.corpus_options(),
            text_field=reading.text_field,
            title_field=reading.title_field,
            load=load,
        )
        if as_json:
            echo_json(
                {
                    **summary_json(result.summary),
                    "previous": list(result.previous),
                    "previous_count": result.previous_count,
                    "alias_moved": result.swapped,
                    "deleted": list(result.deleted),
                    "problems": list(result.problems),
                }
            )
            if result.problems:
                raise SpladeOSError("; ".join(result.problems))
            return
        click.echo(format_summary(result.summary))
        before = (
            f"{', '.join(result.previous)} ({plural(result.previous_count or 0, 'document')})"
            if result.previous
            else "nothing"
        )
        click.echo(f"before: {alias} -> {before}")
        if result.swapped:
            kept = f"deleted {', '.join(result.deleted)}" if result.deleted else "kept the previous version"
            click.echo(
                f"now:    {alias} -> {result.summary.index} ({plural(result.summary.index_count, 'document')}); {kept}"
            )
        if result.problems:
            raise SpladeOSError("; ".join(result.problems))
