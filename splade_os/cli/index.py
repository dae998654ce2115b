"""`splade-os index` (bulk load or re-encode through an alias) and `splade-os alias` (show or switch it)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from splade_os import aliases
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
from splade_os.cli.progress import Progress, ProgressFactory, progress_options
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FORMATS, FieldNames
from splade_os.engines.clients import connect
from splade_os.errors import IndexNotFoundError
from splade_os.indexing import BulkOptions, IndexSummary, LoadOptions, index_corpus, reencode_index
from splade_os.indexing import Progress as IndexProgress
from splade_os.indexing.block_worker import SpladeRecipe
from splade_os.indexing.distributed import DEFAULT_BLOCK_SIZE, BlockDone, RayWorkers, index_corpus_on_ray
from splade_os.indexing.precomputed import DEFAULT_VECTOR_FIELD, PrecomputedVectors
from splade_os.indexing.state import locate
from splade_os.model.settings import EncoderSettings
from splade_os.words import plural

FILE = click.Path(dir_okay=False, path_type=Path)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressReport:
    """Documents acknowledged by the cluster (indexed, failed or skipped), not bytes read ahead: a bar on a terminal,
    a plain line every `every` seconds elsewhere. The ETA comes from the acknowledged rate; for a file, the total is
    estimated from the records per byte read so far. `total_is_documents`: the source counts documents (an index)."""

    def __init__(self, bar: Progress, *, total_is_documents: bool = False) -> None:
        self.bar, self.total_is_documents = bar, total_is_documents

    def __call__(self, p: IndexProgress) -> None:
        c = p.counters
        acknowledged = c.indexed + c.failed + c.skipped
        total = p.total if self.total_is_documents else None
        if total is None and p.total and p.done:
            total = max(acknowledged, round(c.read * p.total / p.done))  # records per byte read so far
        if total != self.bar.total:
            self.bar.set_total(total)
        self.bar.advance_to(acknowledged, f"{c.failed:,} failed, {c.skipped:,} skipped")

    def close(self) -> None:
        self.bar.close()


class BlockReport:
    """One line per finished block of a distributed load, at most every `every` seconds (and for the last one)."""

    def __init__(self, every: float) -> None:
        self.every, self.last = every, 0.0

    def __call__(self, b: BlockDone) -> None:
        now = time.monotonic()
        if now - self.last < self.every and b.done < b.total:
            return
        self.last = now
        c = b.counters
        rate = b.processed / b.elapsed if b.elapsed > 0 else 0.0
        click.echo(
            f"block {b.done:,} of {b.total:,}: {c.indexed:,} indexed, {c.failed:,} failed, {c.skipped:,} skipped, "
            f"{rate:,.0f} docs/s",
            err=True,
        )


def _default_sigint() -> None:
    # A shell that starts a job in the background hands it SIGINT ignored; Ctrl-C (or `kill -INT`) must still stop
    # a load cleanly at a batch boundary, so the handler that raises KeyboardInterrupt is installed explicitly.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def format_summary(s: IndexSummary) -> str:
    c = s.counters
    lines = [
        f"read {c.read:,}, indexed {c.indexed:,}, failed {c.failed:,}, skipped {c.skipped:,}, "
        f"truncated {c.truncated:,} in {s.elapsed:.1f} s ({s.docs_per_s:,.1f} docs/s)",
        f"index {s.index} (alias {s.alias}): {plural(s.index_count, 'document')}, {_size(s.index_bytes)}",
        ("verified: " if s.verified else "") + s.verification,
    ]
    if c.resumed:
        lines.append(f"resumed: {plural(c.resumed, 'document')} already indexed, not encoded again")
    if c.replaced:
        lines.append(f"replaced: {plural(c.replaced, 'document')} already in the index")
    if s.dead_letter:
        lines.append(f"dead letters (failed and skipped, with reasons): {s.dead_letter}")
    if s.swapped:
        lines.append(f"alias {s.alias} -> {s.swapped.index} (was {', '.join(s.swapped.previous) or 'nothing'})")
        if s.swapped.deleted:
            lines.append(f"deleted previous index: {', '.join(s.swapped.deleted)}")
    lines += [f"note: {n}" for n in s.notes]
    return "\n".join(lines)


@click.command()
@click.argument("corpus", required=False)
@click.option("--index", "alias", required=True, envvar="SPLADE_OS_INDEX", help="Alias to write (readers query it).")
@model_option(required=False)
@click.option("--vectors", is_flag=True, help="CORPUS is JSON Lines that carry their vectors ({\"_id\", \"vector\": "
              "{token: weight}}, as `splade-os encode` writes): index them as they are, no model needed; --model "
              "checks their tokens against its vocabulary.")
@click.option("--vector-field", help="With --vectors: the input field holding each vector. [default: vector]")
@click.option("--from-index", help="Re-encode the documents of this index instead of reading a CORPUS.")
@click.option("--format", "corpus_format", type=click.Choice(FORMATS), help="Input format (default: from the name).")
@click.option("--id-field", default="_id", show_default=True, help="Input field holding the document id.")
@click.option("--text-field", help="Input field holding the text to encode. [default: text; --from-index: the field "
              "the source's vectors were encoded from]")
@click.option("--title-field", help="Input field holding the title. [default: title; --from-index: the field the "
              "source's vectors were encoded from]")
@click.option("--columns", help="Comma-separated column names for CSV/TSV without a header row.")
@click.option("--recreate", is_flag=True, help="Start over: build a new index version, switch the alias when done.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--break-lock", is_flag=True, help="Take over the lease of another load on the alias once it expired "
              "(that load was stopped or killed). Only one load per alias runs at a time.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some documents failed.")
@click.option("--keep-previous", is_flag=True, help="After --recreate, keep the previous version (the default).")
@click.option("--delete-previous", is_flag=True, help="After a verified --recreate, delete the previous version.")
@click.option(
    "--index-empty", is_flag=True, help="Index corpus documents with empty text too (default: skip them, each one in "
    "the dead-letter file). --from-index always copies every document."
)
@click.option("--dead-letter", type=FILE, help="[default: NAME.dead-letter.jsonl in the state folder]")
@click.option("--checkpoint", type=FILE, help="[default: NAME.checkpoint.json in the state folder]")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Where loads keep their checkpoint "
              "and dead letters, in CLUSTER/NAME/ below it, so --resume finds them from any folder. [default: "
              "$SPLADE_OS_STATE_DIR, else $XDG_STATE_HOME/splade-os, else ~/.local/state/splade-os]")
@click.option("--batch-size", default=256, show_default=True, help="Documents encoded and sent together.")
@click.option("--chunk-bytes", default=8 * 1024 * 1024, show_default=True, help="Largest bulk request in bytes.")
@click.option("--max-retries", default=6, show_default=True, help="Retries of documents the cluster answers 429 to.")
@click.option("--retry-for", default=300.0, show_default=True, help="Seconds to wait out connection errors and 5xx.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds one bulk request may take.")
@click.option("--shards", default=1, show_default=True, help="Primary shards of a new index.")
@click.option("--analyzer", envvar="SPLADE_OS_ANALYZER", help="Analyzer of the BM25 text fields of a new index, "
              "recorded in its _meta. [default: english; --from-index: the source's; env: SPLADE_OS_ANALYZER]")
@click.option("--replicas", type=click.IntRange(min=0), help="Replicas of a new index. [default: "
              "auto_expand_replicas 0-1: one where a second node can hold it, none on a single node]")
@click.option("--threads", type=int, help="Encoder threads (default: all cores).")
@click.option("--max-length", type=int, help="Longest document in tokens (default: the model's).")
@click.option("--top-k", type=int, help="Keep only the k heaviest terms of each document vector.")
@click.option("--min-weight", default=0.0, show_default=True, help="Drop document terms lighter than this.")
@click.option("--prune-ratio", default=0.0, show_default=True,
              help="Drop document terms lighter than this share of the document's largest weight (e.g. 0.1).")
@click.option("--vectors-in-source/--no-vectors-in-source", default=None,
              help="Keep each vector in the stored _source too (the default; --from-index: the source's choice). "
              "Leaving it out saves disk; explanations then re-encode the hit's text.")
@segment_options
@click.option(
    "--long-documents",
    type=click.Choice(("truncate", "split")),
    default="truncate",
    show_default=True,
    help="Past --max-length: keep the start (counted as truncated), or encode overlapping windows.",
)
@progress_options
@json_option
@click.option("--yes", is_flag=True, help="With --optimize and no --recreate: merge the version readers search "
              "(as `merge --yes` does).")
@click.option("--ray", "on_ray", is_flag=True, help="Encode and send with a pool of Ray workers (JSON Lines and "
              "Parquet files, or a folder of them; needs the ray extra). --threads is then the CPUs of each worker "
              "[default 1].")
@click.option("--ray-address", help="With --ray: the Ray cluster to use ('auto', ray://HOST:10001) [default: start one "
              "on this machine].")
@click.option("--workers", type=click.IntRange(min=1), help="With --ray: encoding workers. [default: 1]")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="With --ray: GPUs each worker reserves (and "
              "encodes on, where the encoder supports it). [default: 0]")
@click.option("--block-size", type=click.IntRange(min=1), help="With --ray: records per block, the unit a worker "
              f"indexes, retries and checkpoints. [default: {DEFAULT_BLOCK_SIZE}]")
@first_phase_options
@device_options
@connection_options
def index(
    corpus: str | None,
    alias: str,
    model_dir: str | None,
    vectors: bool,
    vector_field: str | None,
    from_index: str | None,
    corpus_format: str | None,
    id_field: str,
    text_field: str | None,
    title_field: str | None,
    columns: str | None,
    recreate: bool,
    resume: bool,
    break_lock: bool,
    allow_failures: bool,
    keep_previous: bool,
    delete_previous: bool,
    index_empty: bool,
    dead_letter: Path | None,
    checkpoint: Path | None,
    state_dir: Path | None,
    batch_size: int,
    chunk_bytes: int,
    max_retries: int,
    retry_for: float,
    timeout: float,
    shards: int,
    analyzer: str | None,
    replicas: int | None,
    threads: int | None,
    max_length: int | None,
    top_k: int | None,
    min_weight: float,
    prune_ratio: float,
    vectors_in_source: bool | None,
    concurrent_segment_search: bool | None,
    optimize: bool,
    long_documents: str,
    progress: ProgressFactory,
    as_json: bool,
    yes: bool,
    on_ray: bool,
    ray_address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    block_size: int | None,
    first_phase_k: int | None,
    first_phase_candidates: tuple[int, ...] | None,
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Encode CORPUS (JSON Lines, CSV/TSV, a BEIR folder, or - for stdin) and bulk-index it into alias --index.

    Every document ends indexed, failed (in the dead-letter file, with the reason) or skipped; the index's count is
    verified at the end. Exit code 1 when a document failed (unless --allow-failures) or the count is off.
    """
    with cli_errors():
        if (corpus is None) == (from_index is None):
            raise click.UsageError("give either a CORPUS or --from-index SOURCE (to re-encode an index)")
        if recreate and resume:
            raise click.UsageError("--recreate starts over and --resume continues: pick one")
        if keep_previous and delete_previous:
            raise click.UsageError("--keep-previous and --delete-previous contradict each other: pick one")
        made_elsewhere = precomputed(vectors, vector_field, model_dir, from_index, corpus_format, columns, {
            "--max-length": max_length, "--top-k": top_k, "--min-weight": min_weight or None,
            "--prune-ratio": prune_ratio or None, "--long-documents": None if long_documents == "truncate" else 1,
        })  # fmt: skip
        if optimize and not recreate and not yes:
            with closing(connect(settings)) as probe:
                refuse_live_merge(probe, alias)
        _default_sigint()
        # A corpus is read from `text` and `title` unless told; a re-encode by default reads what the source recorded.
        names = FieldNames(id=id_field, text=text_field or "text", title=title_field or "title")
        options = BulkOptions(
            batch_size=batch_size, chunk_bytes=chunk_bytes, max_retries=max_retries, retry_for=retry_for,
            request_timeout=timeout,
        )  # fmt: skip
        load = LoadOptions(
            recreate=recreate, resume=resume, skip_empty=not index_empty, allow_failures=allow_failures,
            delete_previous=delete_previous, shards=shards, replicas=replicas, analyzer=analyzer,
            vectors_in_source=vectors_in_source, first_phase_k=first_phase_k,
            first_phase_candidates=first_phase_candidates, concurrent_segment_search=concurrent_segment_search,
            optimize=optimize, checkpoint=checkpoint, break_lock=break_lock,
            dead_letter=dead_letter, state_dir=state_dir, bulk=options,
        )  # fmt: skip
        if on_ray:
            if from_index or (corpus_format not in (None, "jsonl")) or columns:
                raise click.UsageError(
                    "--ray reads JSON Lines and Parquet files: not --from-index, CSV/TSV or --columns"
                )
            assert corpus is not None
            with closing(connect(settings)) as probe:
                load = located(probe, alias, load, resumable=True, shown=progress.enabled)
            recipe = made_elsewhere or SpladeRecipe(str(model_dir), EncoderSettings(
                threads=threads or 1, max_length=max_length, top_k=top_k, min_weight=min_weight,
                max_ratio=prune_ratio, long_documents=long_documents,
                # Workers given GPUs encode on them unless --device says otherwise.
                device="cuda" if gpus_per_worker and device["device"] == "cpu" else device["device"],
                precision=device["precision"],
            ))  # fmt: skip
            summary = index_corpus_on_ray(
                settings, corpus, index=alias, recipe=recipe, block_size=block_size or DEFAULT_BLOCK_SIZE,
                pool=RayWorkers(workers or 1, float(threads or 1), gpus_per_worker or 0.0, ray_address),
                names=names, load=load, on_block=BlockReport(progress.every),
            )  # fmt: skip
            report_and_exit(summary, allow_failures, as_json)
            return
        ray_only = {"--ray-address": ray_address, "--workers": workers, "--gpus-per-worker": gpus_per_worker,
                    "--block-size": block_size}  # fmt: skip
        given = [name for name, value in ray_only.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} go with --ray")
        from splade_os.model.encoder import SpladeEncoder

        encoder = made_elsewhere or SpladeEncoder(
            str(model_dir), threads=threads, max_length=max_length, top_k=top_k, min_weight=min_weight,
            max_ratio=prune_ratio, long_documents=long_documents, **device,
        )  # fmt: skip
        client = connect(settings)
        try:
            load = located(client, alias, load, resumable=from_index is None, shown=progress.enabled)
        except BaseException:
            client.close()
            raise
        report = ProgressReport(progress("index", unit="documents"), total_is_documents=from_index is not None)
        try:
            if from_index:
                summary = reencode_index(
                    client, from_index, index=alias, encoder=encoder, text_field=text_field, title_field=title_field,
                    load=load, on_progress=report,
                )  # copies every document: an empty text is still a document
            else:
                assert corpus is not None
                summary = index_corpus(
                    client, corpus, index=alias, encoder=encoder, names=names, corpus_format=corpus_format,
                    columns=columns.split(",") if columns else None, load=load, on_progress=report,
                )  # fmt: skip
        finally:
            report.close()
            client.close()
        report_and_exit(summary, allow_failures, as_json)


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


def precomputed(
    vectors: bool,
    field: str | None,
    model_dir: str | None,
    from_index: str | None,
    corpus_format: str | None,
    columns: str | None,
    encoding: dict[str, Any],
) -> PrecomputedVectors | None:
    """The pass-through encoder of `--vectors` (None without it), once the options make sense together."""
    if not vectors:
        if field:
            raise click.UsageError("--vector-field goes with --vectors")
        if not model_dir:
            raise click.UsageError("give --model (or set SPLADE_OS_MODEL), or --vectors for vectors made elsewhere")
        return None
    if from_index or corpus_format not in (None, "jsonl") or columns:
        raise click.UsageError(
            "--vectors reads JSON Lines that carry their vectors: not --from-index, CSV/TSV or --columns"
        )
    given = [name for name, value in encoding.items() if value is not None]
    if given:
        raise click.UsageError(f"{', '.join(given)} change how text is encoded: with --vectors the vectors are "
                               "indexed as they are (prune them where they are made)")  # fmt: skip
    field = field or DEFAULT_VECTOR_FIELD
    if model_dir:
        return PrecomputedVectors.from_model(model_dir, field=field)
    click.echo("warning: --vectors without --model: the vectors' tokens are not checked against a vocabulary, and "
               "searches cannot tell which model's queries fit them; pass --model with the folder of the model that "
               "made them", err=True)  # fmt: skip
    return PrecomputedVectors(field=field)


def summary_json(s: IndexSummary, allow_failures: bool = False) -> dict[str, Any]:
    """What `--json` prints for a load: the counts, the index, the verification, where the alias points."""
    swapped = None
    if s.swapped:
        swapped = {"index": s.swapped.index, "previous": list(s.swapped.previous), "deleted": list(s.swapped.deleted)}
    return {
        "alias": s.alias, "index": s.index, "counters": asdict(s.counters), "elapsed_s": round(s.elapsed, 3),
        "docs_per_s": round(s.docs_per_s, 1), "index_count": s.index_count, "index_bytes": s.index_bytes,
        "expected": s.expected, "verified": s.verified, "verification": s.verification,
        "dead_letter": str(s.dead_letter) if s.dead_letter else None, "swapped": swapped, "notes": list(s.notes),
        "problems": s.problems(allow_failures=allow_failures),
    }  # fmt: skip


def report_and_exit(summary: IndexSummary, allow_failures: bool, as_json: bool = False) -> None:
    if as_json:
        echo_json(summary_json(summary, allow_failures))
    else:
        click.echo(format_summary(summary))
    problems = summary.problems(allow_failures=allow_failures)
    if problems:
        raise click.ClickException("; ".join(problems))


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
                raise IndexNotFoundError(f"no index or alias {name!r}: build it with `splade-os index CORPUS --index "
                                         f"{name}`, or point it at an index with `splade-os alias {name} INDEX`")
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
            echo_json({"name": name, "index": done.index, "previous": list(done.previous),
                       "deleted": list(done.deleted)})  # fmt: skip
            return
        click.echo(f"{name} -> {done.index} (was {', '.join(done.previous) or 'nothing'})")
        if done.deleted:
            click.echo(f"deleted: {', '.join(done.deleted)}")
