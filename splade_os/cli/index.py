"""`splade-os index` (bulk load or re-encode through an alias) and `splade-os alias` (show or switch it)."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import closing
from typing import Any

import click

from splade_os import aliases
from splade_os.cli.groups import (
    ModelChoice,
    RayOptions,
    Reading,
    encoder_options,
    load_options,
    ray_options,
    reading_options,
)
from splade_os.cli.options import cli_errors, connection_options, echo_json, json_option
from splade_os.cli.output import BlockReport, ProgressReport, report_and_exit
from splade_os.cli.progress import ProgressFactory, progress_options
from splade_os.cli.sections import LOADING, READING, option
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import connect
from splade_os.errors import IndexNotFoundError
from splade_os.indexing import IndexSummary, LoadOptions, index_corpus, reencode_index
from splade_os.indexing.distributed import index_corpus_on_ray
from splade_os.indexing.options import DocumentEncoder
from splade_os.indexing.state import locate


@click.command()
@click.argument("corpus", required=False)
@click.option("--index", "alias", required=True, envvar="SPLADE_OS_INDEX", help="Alias to write (readers query it).")
@option(READING, "--from-index", help="Re-encode the documents of this index instead of reading a CORPUS.")
@ray_options
@encoder_options(vectors=True)
@reading_options()
@load_options()
@option(
    LOADING,
    "--yes",
    is_flag=True,
    help="With --optimize and no --recreate: merge the version readers search (as `merge --yes` does).",
)
@progress_options
@json_option
@connection_options
def index(
    corpus: str | None,
    alias: str,
    from_index: str | None,
    ray: RayOptions | None,
    encoder: ModelChoice,
    reading: Reading,
    load: LoadOptions,
    yes: bool,
    progress: ProgressFactory,
    as_json: bool,
    settings: ConnectionSettings,
) -> None:
    """Encode CORPUS (JSON Lines, CSV/TSV, a BEIR folder, or - for stdin) and bulk-index it into alias --index.

    Every document ends indexed, failed (in the dead-letter file, with the reason) or skipped; the index's count is
    verified at the end. Exit code 1 when a document failed (unless --allow-failures) or the count is off.
    """
    with cli_errors():
        if (corpus is None) == (from_index is None):
            raise click.UsageError("give either a CORPUS or --from-index SOURCE (to re-encode an index)")
        made_elsewhere = encoder.precomputed(from_index=from_index is not None, reading=reading)
        if load.optimize and not load.recreate and not yes:
            with closing(connect(settings)) as probe:
                refuse_live_merge(probe, alias)
        _default_sigint()
        if ray is not None:
            if from_index or reading.format not in (None, "jsonl") or reading.columns:
                raise click.UsageError(
                    "--ray reads JSON Lines and Parquet files: not --from-index, CSV/TSV or --columns"
                )
            with closing(connect(settings)) as probe:
                load = located(probe, alias, load, resumable=True, shown=progress.enabled)
            summary = index_corpus_on_ray(
                settings,
                str(corpus),
                index=alias,
                recipe=made_elsewhere or encoder.recipe(),
                block_size=ray.block_size,
                pool=ray.pool(encoder.settings.threads or 1),
                names=reading.names,
                load=load,
                on_block=BlockReport(progress.every),
            )
        else:
            summary = _load_here(
                settings, corpus, from_index, alias, made_elsewhere or encoder.load(), reading, load, progress
            )
        report_and_exit(summary, load.allow_failures, as_json)


def _load_here(
    settings: ConnectionSettings,
    corpus: str | None,
    from_index: str | None,
    alias: str,
    encoder: DocumentEncoder,
    reading: Reading,
    load: LoadOptions,
    progress: ProgressFactory,
) -> IndexSummary:
    """Load CORPUS, or re-encode the index `from_index`, into `alias` from this process."""
    client = connect(settings)
    try:
        load = located(client, alias, load, resumable=from_index is None, shown=progress.enabled)
        report = ProgressReport(progress("index", unit="documents"), total_is_documents=from_index is not None)
        try:
            if from_index:  # copies every document: an empty text is still a document
                return reencode_index(
                    client,
                    from_index,
                    index=alias,
                    encoder=encoder,
                    text_field=reading.text_field,
                    title_field=reading.title_field,
                    load=load,
                    on_progress=report,
                )
            return index_corpus(
                client,
                str(corpus),
                index=alias,
                encoder=encoder,
                load=load,
                on_progress=report,
                **reading.corpus_options(),
            )
        finally:
            report.close()
    finally:
        client.close()


def _default_sigint() -> None:
    # A shell that starts a job in the background hands it SIGINT ignored; Ctrl-C (or `kill -INT`) must still stop
    # a load cleanly at a batch boundary, so the handler that raises KeyboardInterrupt is installed explicitly.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def located(client: Any, alias: str, load: LoadOptions, *, resumable: bool, shown: bool) -> LoadOptions:
    """`load` with its checkpoint and dead letters named (the state folder unless given), said on a terminal when
    progress is `shown` (off it the summary names the dead letters, an interrupted run's error its checkpoint)."""
    load = locate(client, alias, load)
    assert load.checkpoint is not None and load.dead_letter is not None
    if not (shown and sys.stderr.isatty()):
        return load
    if resumable and load.checkpoint.parent == load.dead_letter.parent:
        where = f"checkpoint and dead letters in {load.checkpoint.parent}/ (--resume finds them from any folder)"
    else:
        where = f"dead letters: {load.dead_letter}" + (f"; checkpoint: {load.checkpoint}" if resumable else "")
    click.echo(f"state: {where}", err=True)
    return load


def refuse_live_merge(client: Any, alias: str) -> None:
    """--optimize without --recreate merges the index readers search now: only with --yes, as `merge` asks."""
    from splade_os.indexing.merge import check_not_live

    if aliases.resolve(client, alias):  # else a new index: nobody searches it yet
        check_not_live(client, alias)


@click.command()
@click.argument("name")
@click.argument("target", required=False)
@click.option("--delete-previous", is_flag=True, help="Delete the indices the alias pointed at before.")
@json_option
@connection_options
def alias(name: str, target: str | None, delete_previous: bool, as_json: bool, settings: ConnectionSettings) -> None:
    """Show which index alias NAME points at, or switch it to TARGET atomically."""
    with cli_errors():
        client = connect(settings)
        if target is None:
            current = aliases.resolve(client, name)
            if not current:
                raise IndexNotFoundError(
                    f"no index or alias {name!r}: build it with `splade-os index CORPUS --index "
                    f"{name}`, or point it at an index with `splade-os alias {name} INDEX`"
                )
            kind = "alias" if aliases.is_alias(client, name) else "index"
            others = [v for v in aliases.versions(client, name) if v not in current]
            if as_json:
                echo_json({"name": name, "kind": kind, "indices": current, "other_versions": others})
                return
            click.echo(f"{name} ({kind}) -> {', '.join(current) or 'nothing'}")
            if others:
                click.echo(f"other versions: {', '.join(others)}")
            return
        done = aliases.swap(client, name, target, delete_previous=delete_previous)
        if as_json:
            echo_json(
                {"name": name, "index": done.index, "previous": list(done.previous), "deleted": list(done.deleted)}
            )
            return
        click.echo(f"{name} -> {done.index} (was {', '.join(done.previous) or 'nothing'})")
        if done.deleted:
            click.echo(f"deleted: {', '.join(done.deleted)}")
