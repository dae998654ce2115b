"""`splade-os doctor`, `stats` and `reindex`: what operators run against a live cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from splade_os.cli.options import (
    cli_errors,
    connection_options,
    device_options,
    echo_json,
    first_phase_options,
    json_option,
    model_option,
    segment_options,
)
from splade_os.cli.progress import ProgressFactory, Steps, progress_options
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FORMATS, FieldNames
from splade_os.engines.clients import connect
from splade_os.errors import SpladeOSError
from splade_os.redaction import redact
from splade_os.words import plural


@click.command()
@click.option("--index", help="Also check this index or alias: mapping, encoder in _meta, shard health.")
@model_option(required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
        result = index_stats(connect(settings), index, model_dir=model_dir, sample=sample,
                             bm25_docs=None if no_bm25 else bm25_docs, on_progress=steps)  # fmt: skip
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_stats(result))


@click.command()
@click.argument("alias")
@click.argument("corpus", required=False)
@model_option()
@click.option("--from-index", is_flag=True, help="Re-encode the documents of the current version (no CORPUS).")
@click.option("--delete-previous", is_flag=True, help="Delete the old version after a verified swap.")
@click.option("--allow-failures", is_flag=True, help="Swap even when some documents failed.")
@click.option("--break-lock", is_flag=True, help="Take over the lease of another load on ALIAS once it expired.")
@click.option("--format", "corpus_format", type=click.Choice(FORMATS), help="Input format (default: from the name).")
@click.option("--id-field", default="_id", show_default=True, help="Input field holding the document id.")
@click.option("--text-field", help="Field holding the text to encode. [default: text; --from-index: the field the "
              "current version was encoded from]")
@click.option("--title-field", help="Field holding the title. [default: title; --from-index: the field the current "
              "version was encoded from]")
@click.option("--shards", default=1, show_default=True, help="Primary shards of the new version.")
@click.option("--replicas", type=click.IntRange(min=0), help="Replicas of a new index. [default: "
              "auto_expand_replicas 0-1: one where a second node can hold it, none on a single node]")
@click.option("--analyzer", help="Analyzer of the new version's BM25 text fields. [default: the current version's]")
@click.option("--batch-size", default=256, show_default=True, help="Documents encoded and sent together.")
@click.option(
    "--dead-letter", type=click.Path(dir_okay=False, path_type=Path),
    help="[default: ALIAS.dead-letter.jsonl in the state folder, as for index]",
)
@first_phase_options
@segment_options
@json_option
@device_options
@connection_options
def reindex(
    alias: str,
    corpus: str | None,
    model_dir: str,
    from_index: bool,
    delete_previous: bool,
    allow_failures: bool,
    break_lock: bool,
    corpus_format: str | None,
    id_field: str,
    text_field: str | None,
    title_field: str | None,
    shards: int,
    replicas: int | None,
    analyzer: str | None,
    batch_size: int,
    dead_letter: Path | None,
    first_phase_k: int | None,
    first_phase_candidates: tuple[int, ...] | None,
    concurrent_segment_search: bool | None,
    optimize: bool,
    as_json: bool,
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Build ALIAS-v<next> from CORPUS (or --from-index), verify it, and move ALIAS to it atomically.

    Readers keep the current version until the new one is verified. The old version is kept for a rollback
    (`splade-os alias ALIAS OLD_INDEX`) unless --delete-previous. Exit code 1 when the alias was not moved.
    """
    from splade_os.cli.index import format_summary, summary_json
    from splade_os.indexing import BulkOptions, LoadOptions
    from splade_os.indexing.reindex import reindex as run_reindex
    from splade_os.model.encoder import SpladeEncoder

    with cli_errors():
        if (corpus is None) != from_index:
            raise click.UsageError("give either a CORPUS or --from-index")
        encoder = SpladeEncoder(model_dir, **device)
        corpus_options: dict[str, Any] = {
            "names": FieldNames(id=id_field, text=text_field or "text", title=title_field or "title"),
            "corpus_format": corpus_format,
        }  # fmt: skip
        result = run_reindex(
            connect(settings), alias, encoder, corpus=corpus, corpus_options=corpus_options, text_field=text_field,
            title_field=title_field, load=LoadOptions(
                delete_previous=delete_previous, allow_failures=allow_failures, shards=shards, replicas=replicas,
                analyzer=analyzer, dead_letter=dead_letter, bulk=BulkOptions(batch_size=batch_size),
                first_phase_k=first_phase_k, first_phase_candidates=first_phase_candidates,
                concurrent_segment_search=concurrent_segment_search, optimize=optimize, break_lock=break_lock,
            ),
        )  # fmt: skip
        if as_json:
            echo_json({**summary_json(result.summary), "previous": list(result.previous),
                       "previous_count": result.previous_count, "alias_moved": result.swapped,
                       "deleted": list(result.deleted), "problems": list(result.problems)})  # fmt: skip
            if result.problems:
                raise SpladeOSError("; ".join(result.problems))
            return
        click.echo(format_summary(result.summary))
        before = f"{', '.join(result.previous)} ({plural(result.previous_count or 0, 'document')})" if result.previous \
            else "nothing"
        click.echo(f"before: {alias} -> {before}")
        if result.swapped:
            kept = f"deleted {', '.join(result.deleted)}" if result.deleted else "kept the previous version"
            click.echo(f"now:    {alias} -> {result.summary.index} ({plural(result.summary.index_count, 'document')}); "
                       f"{kept}")  # fmt: skip
        if result.problems:
            raise SpladeOSError("; ".join(result.problems))
