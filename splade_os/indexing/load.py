"""The entry points: `index_corpus` and `reencode_index` pick the target, run the pipeline, and verify the count."""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from splade_os import aliases
from splade_os.corpus import CorpusReader, FieldNames
from splade_os.df import build_df, read_df
from splade_os.engines import engine_for
from splade_os.engines.errors import describe_error
from splade_os.engines.refusals import is_refusal
from splade_os.errors import ConfigError, EncoderMismatchError
from splade_os.indexing.lease import Lease
from splade_os.indexing.ledger import (
    CHECKPOINT_VERSION,
    Checkpoint,
    Counters,
    DeadLetters,
)
from splade_os.indexing.merge import force_merge
from splade_os.indexing.options import EncoderDescription, LoadOptions, RecordEncoder
from splade_os.indexing.pipeline import DocumentEncoder, Loader, Progress, run, stored_documents
from splade_os.indexing.sources import IndexSource, Source, source_names
from splade_os.indexing.state import locate
from splade_os.indexing.target import Target, count_documents, prepare_target, restore_refresh, try_restore_refresh
from splade_os.mappings import VECTOR_FIELD, default_analyzer
from splade_os.words import plural

log = logging.getLogger(__name__)

NOTHING_READ = hashlib.sha256().hexdigest()
FIRST_CHECKED = 100  # records read before a load creates anything: if every one fails, it creates nothing


@dataclass
class IndexSummary:
    """What a run did and whether the index holds what it should."""

    alias: str
    index: str
    counters: Counters
    elapsed: float
    processed: int
    index_count: int
    index_bytes: int
    expected: int
    verified: bool
    verification: str
    dead_letter: Path | None
    swapped: aliases.AliasSwap | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def docs_per_s(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0

    def problems(self, *, allow_failures: bool = False) -> list[str]:
        """Why this run should count as failed; empty when all is well."""
        found = [] if self.verified else [self.verification]
        if self.counters.failed and not allow_failures:
            where = f"; see {self.dead_letter}" if self.dead_letter else ""
            found.append(f"{self.counters.failed} documents failed{where} (pass --allow-failures to accept)")
        return found


def run_settings(encoder: EncoderDescription, opts: LoadOptions) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    manifest = encoder.manifest
    recorded = [manifest.get("name"), manifest.get("sha256")]
    if manifest.get("vocabulary"):  # vectors made elsewhere: the vocabulary they are checked against
        recorded.append(manifest["vocabulary"].get("sha256"))
    return {"encoder": recorded, "skip_empty": opts.skip_empty}


def reading_names(names: FieldNames | None, encoder: object) -> FieldNames:
    """The fields to read: `names`, with the vector field of an encoder that passes vectors through
    (`PrecomputedVectors`) when they name none."""
    names = names or FieldNames()
    field_name = getattr(encoder, "vector_field", None)
    return replace(names, vector=field_name) if names.vector is None and field_name else names


def load_options(
    call: str, client: Any, index: str, load: LoadOptions | None, legacy: Mapping[str, Any], **defaults: Any
) -> LoadOptions:
    """The options of a load into alias `index` on the client's cluster: `load`, or the loose keywords of earlier
    versions (`legacy`: the fields of `LoadOptions` by name, `options` for the `BulkOptions`; deprecated), with the
    run's files named in its state folder (`indexing.state`)."""
    return locate(client, index, LoadOptions.of_call(call, load, legacy, **defaults))


def index_corpus(
    client: Any,
    source: str | Path,
    *,
    index: str,
    encoder: DocumentEncoder,
    names: FieldNames | None = None,
    corpus_format: str | None = None,
    columns: Sequence[str] | None = None,
    load: LoadOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **legacy: Any,
) -> IndexSummary:
    """Index a corpus file, BEIR folder or `-` (stdin) into alias `index`; see the package docstring.

    `load` says how (`LoadOptions`; its fields as keywords, `recreate=True`, ..., are the deprecated form of earlier
    versions). The alias is moved
    to a freshly built index only once its count checks out (and no document failed, unless `allow_failures`).
    Call `summary.problems()` to decide whether the run succeeded.
    """
    opts = load_options("index_corpus", client, index, load, legacy)
    names = reading_names(names, encoder)
    reader = CorpusReader(source, corpus_format=corpus_format, names=names, columns=columns)
    try:
        return run_load(client, reader, index, encoder, opts, on_progress)
    finally:
        reader.close()


def reencode_index(
    client: Any,
    source_index: str,
    *,
    index: str,
    encoder: DocumentEncoder,
    text_field: str | None = None,
    title_field: str | None = None,
    load: LoadOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **legacy: Any,
) -> IndexSummary:
    """Read `source_index` (scroll), encode `text_field` (with `title_field`), and write alias `index`.

    Every document is written as it is, each field under its own name; the new index's `_meta` records which fields
    its vectors were encoded from, and those are the default of the next re-encode (else `text` and `title`). The
    new index maps the documents' own fields as the source did.

    With `index` equal to the source alias and `recreate` (the default without `load`), this builds the next
    version and swaps the alias to it once verified: readers move to the new vectors atomically. The old version is
    kept unless `delete_previous`. Every document is copied, an empty text included (it gets an empty vector and
    stays findable by its fields), and the alias moves only when the new index holds as many documents as the
    source did. The new version keeps the source's BM25 analyzer, its choice of vectors in `_source`, its pruned
    first-phase field (with its k and candidate fields) and its recorded choice of concurrent segment search,
    unless the options give `analyzer`/`vectors_in_source`/`first_phase_k`/`first_phase_candidates`/
    `concurrent_segment_search`.
    """
    opts = load_options("reencode_index", client, index, load, legacy, recreate=True)
    if isinstance(encoder, RecordEncoder):
        raise ConfigError("re-encoding an index needs a model: vectors made elsewhere are indexed from a file")
    bulk = opts.bulk
    names = source_names(client, source_index, text_field, title_field)
    source = IndexSource(client, source_index, names, bulk.batch_size)
    properties, analysis = source.field_mappings()
    if not opts.recreate and set(aliases.resolve(client, index)) & set(aliases.resolve(client, source_index)):
        raise ConfigError(f"{index!r} is the index being read: pass --recreate to build a new version of it")
    in_source = source.vectors_in_source() if opts.vectors_in_source is None else opts.vectors_in_source
    first_k = source.first_phase_k() if opts.first_phase_k is None else opts.first_phase_k
    candidates = source.first_phase_candidates() if opts.first_phase_candidates is None else opts.first_phase_candidates
    concurrent = opts.concurrent_segment_search
    opts = replace(
        opts,
        skip_empty=False,
        checkpoint=None,
        analyzer=opts.analyzer or source.analyzer() or default_analyzer(),
        vectors_in_source=in_source,
        first_phase_k=first_k,
        first_phase_candidates=candidates,
        encoded_from={"text": names.text, "title": names.title},
        concurrent_segment_search=source.concurrent_segment_search() if concurrent is None else concurrent,
        properties=properties,
        analysis=analysis,
    )
    summary = run_load(client, source, index, encoder, opts, on_progress)
    if (names.text, names.title) != ("text", "title"):
        summary.notes.append(
            f"vectors encoded from {names.title!r} and {names.text!r}; BM25 (bm25 and hybrid modes) searches 'title' "
            "and 'text' as on the source index (Searcher's bm25_fields chooses other fields)"
        )
    return summary


def unfinished_index(checkpoint: Path) -> str | None:
    """The index an interrupted run was writing, to delete on --recreate; None when the checkpoint is unreadable."""
    try:
        index = json.loads(checkpoint.read_text(encoding="utf-8")).get("target", {}).get("index")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        log.warning("checkpoint %s is unreadable; starting over without it", checkpoint)
        return None
    return index if isinstance(index, str) else None


def resumed_target(client: Any, checkpoint: Path, expected: dict[str, Any]) -> tuple[Checkpoint, Target]:
    """The checkpoint of an interrupted run and the index it was writing, once each `expected` key matches."""
    state = Checkpoint.load(checkpoint)
    for key, now in expected.items():
        if state.data.get(key) != now:
            raise ConfigError(
                f"--resume with different {key} than the interrupted run ({state.data.get(key)} then, {now} "
                "now): use the same options, or start over with --recreate"
            )
    target = Target(**state.data["target"])
    if not client.indices.exists(index=target.index):
        raise ConfigError(f"index {target.index!r} of the interrupted run is gone: start over with --recreate")
    return state, target


def new_target(client: Any, alias: str, encoder: EncoderDescription, opts: LoadOptions) -> Target:
    """The index a load that does not resume writes; an interrupted run's checkpoint is refused unless `recreate`,
    which deletes the index that run left unfinished."""
    checkpoint = opts.checkpoint
    if checkpoint and checkpoint.exists():
        if not opts.recreate:
            raise ConfigError(
                f"an interrupted run left {checkpoint}: pass --resume to continue it, or --recreate to start over"
            )
        unfinished = unfinished_index(checkpoint)
        if unfinished and unfinished not in aliases.resolve(client, alias):
            client.indices.delete(index=unfinished, ignore_unavailable=True)
        checkpoint.unlink()
    return prepare_target(client, alias, encoder, opts)


@dataclass
class Started:
    """A load's target and the state it starts from (all empty unless resuming)."""

    target: Target
    checkpoint: Checkpoint | None
    counters: Counters
    landed: set[str]
    dead_letter_bytes: int = 0


def start(client: Any, source: Source, alias: str, encoder: DocumentEncoder, opts: LoadOptions) -> Started:
    """Pick or create the target index and read the state of an interrupted run when resuming.

    Nothing here opens a file or turns refreshes off: `load` does that once it is inside its clean-up block.
    """
    settings = run_settings(encoder, opts)
    checkpoint = opts.checkpoint
    if opts.resume:
        if checkpoint is None:
            raise ConfigError("this source cannot be resumed")
        state, target = resumed_target(client, checkpoint, {"input": source.identity(), "settings": settings})
        source.skip_to(state.data["offset"], state.data["line"], state.data["digest"])
        landed = set(stored_documents(client, target.index, state.data["pending_ids"]))
        return Started(target, state, Counters(**state.data["counters"]), landed, state.data["dead_letter_bytes"])
    target = new_target(client, alias, encoder, opts)
    fresh_state: Checkpoint | None = None
    if checkpoint and source.resumable:
        fresh_state = state = Checkpoint(checkpoint, {"version": CHECKPOINT_VERSION, "target": asdict(target)})
        # The digest of the bytes before offset 0, none: a file's first records may have been read ahead already.
        state.data.update(input=source.identity(), settings=settings, offset=0, line=0, digest=NOTHING_READ)
        state.data.update(counters=asdict(Counters()), dead_letter_bytes=0, pending_ids=[])
    return Started(target, fresh_state, Counters(), set())


def run_load(
    client: Any,
    source: Source,
    alias: str,
    encoder: DocumentEncoder,
    opts: LoadOptions,
    on_progress: Callable[[Progress], None] | None = None,
) -> IndexSummary:
    """One load from `source` into `alias`, with the clean-up that keeps every failure path tidy."""
    # The loader retries on its own and must see every failed request, so it talks through a client whose transport
    # never re-sends; the caller's client, which other threads may share, is never changed.
    engine = engine_for(client)
    # A file is checked before anything exists, the lock index included; a pipe is not read ahead of the lease (its
    # records may come slowly), and a load of it whose every record fails removes its new index at the end.
    if isinstance(source, CorpusReader) and source.path is not None and not opts.resume:
        source.check_start(min(FIRST_CHECKED, opts.bulk.batch_size))
    lease = Lease.acquire(client, alias, break_lock=opts.break_lock)  # before a checkpoint is read or anything made
    own, close_own = engine.without_retries(client)
    letters: DeadLetters | None = None
    started: Started | None = None
    try:
        started = start(own, source, alias, encoder, opts)
        target = started.target
        if started.checkpoint is not None:
            started.checkpoint.save()
        if opts.resume and target.fresh:
            own.indices.put_settings(index=target.index, body={"index": {"refresh_interval": "-1"}})
        letters = DeadLetters(opts.dead_letter_path, keep_bytes=started.dead_letter_bytes)
        loader = Loader(
            own,
            target,
            encoder,
            opts.bulk,
            started.checkpoint,
            letters,
            skip_empty=opts.skip_empty,
            landed=started.landed,
            counters=started.counters,
            total=source.size,
            on_progress=on_progress,
        )
        count_at_start = count_documents(own, target.index)
        run(loader, source)
        copied = source if isinstance(source, IndexSource) else None
        return finish(
            own,
            target,
            loader,
            letters,
            count_at_start,
            opts,
            source_total=copied.size if copied else None,
            copied_from=copied.index if copied else None,
            seen=loader.seen,
            whole=lambda: getattr(encoder, "tokens", None),
            lease=lease,
            counting=client,
            model=model_dir_of(encoder),
        )
    except BaseException as err:
        if letters is not None:
            letters.close()
        if started is not None:
            try_restore_refresh(own, started.target)
            if isinstance(err, EncoderMismatchError) and not opts.resume and not started.counters.read:
                discard(own, started.target, opts)
        raise
    finally:
        lease.release()
        if close_own:
            own.close()


def model_dir_of(encoder: object) -> str | None:
    """The model folder of an encoder or recipe that has one, for the notes' command lines."""
    folder = getattr(encoder, "model_dir", None)
    return str(folder) if folder else None


def discard(client: Any, target: Target, opts: LoadOptions) -> None:
    """Undo a load refused before its first batch was sent (vectors in another vocabulary than the index's): the
    index it created and its checkpoint would only stand in the way of the corrected command."""
    if target.fresh:
        client.indices.delete(index=target.index, ignore_unavailable=True)
    if opts.checkpoint:
        opts.checkpoint.unlink(missing_ok=True)


class Tally(Protocol):
    """What a load counted, for the check at its end: a `Loader`, or the sum over the workers of a distributed one."""

    counters: Counters
    created: int  # documents this run created (an upsert-mode check is "count before + created")
    uncertain: int  # documents that may or may not have been created before a re-send
    processed: int
    started: float


@dataclass
class DfPlan:
    """What a load's df table counts, decided before the alias moves (the version it replaces may go with it)."""

    tokens: list[str]
    field: str
    partial: bool  # documents this load did not send may hold tokens outside `tokens`


def df_line(index: str, model: str | None) -> str:
    """The `splade-os df` command that counts `index`'s table over the whole vocabulary of `model`."""
    return f"splade-os df {index} --model {shlex.quote(model) if model else 'MODEL'}"


def _df_plan(
    client: Any,
    target: Target,
    copied_from: str | None,
    resumed: bool,
    seen: set[str] | None,
    whole: Callable[[], Sequence[str] | None],
    fix: str,
) -> DfPlan | str:
    """The tokens to count for the index's df table after a load, whichever path loaded it; or a note saying why
    none is counted.

    The table is counted over the tokens of the table it had (or the version it replaces, or the index it
    re-encodes, had) and the tokens this load sent (`seen`); when those may miss tokens of documents this run did
    not send (a resumed load, or one into an index without a complete table), over every token the vectors can hold
    too (`whole()`, None when unknown).
    """
    if not target.fresh:
        previous = [target.index]
    elif target.swap:
        previous = aliases.resolve(client, target.alias)
    else:
        previous = aliases.resolve(client, copied_from) if copied_from else []
    try:
        earlier = read_df(client, previous[0]) if len(previous) == 1 else None
    except Exception as err:  # the table is an extra: it never fails a verified load
        return f"df table not counted (the earlier table could not be read: {describe_error(err)}): run `{fix}`"
    tokens = dict.fromkeys([*(earlier.tokens if earlier else ()), *sorted(seen or ())])
    partial = resumed or seen is None or (not target.fresh and (earlier is None or earlier.partial))
    if partial and (vocabulary := whole()):
        tokens.update(dict.fromkeys(vocabulary))
        partial = False
    if not tokens:
        return f"no df table for {target.index}: the tokens to count are unknown; run `{fix}`"
    return DfPlan(list(tokens), earlier.field if earlier else VECTOR_FIELD, partial)


def _count_df(client: Any, target: Target, plan: DfPlan, fix: str) -> str:
    """Count and store the table `plan` says, best effort: the load is verified and the alias moved already, so a
    timeout, a 429 or a refusal here is a note with the command that counts it, never a failed load."""
    try:
        table = build_df(client, target.index, plan.tokens, field_name=plan.field, partial=plan.partial)
    except Exception as err:
        who = f" as a user allowed to write {aliases.df_index_name(target.index)}" if is_refusal(err) else ""
        return f"df table not counted ({describe_error(err)}); the load itself is complete: run `{fix}`{who}"
    counted = (
        f"df table of {target.index} counted: {len(table.counts):,} tokens at {table.documents:,} documents in "
        f"{table.seconds:.1f} s"
    )
    if plan.partial:
        counted += f", over the tokens this run sent only (documents it did not send may hold others): run `{fix}`"
    return counted


def finish(
    client: Any,
    target: Target,
    loader: Tally,
    letters: DeadLetters,
    count_at_start: int,
    opts: LoadOptions,
    *,
    source_total: int | None = None,
    copied_from: str | None = None,
    seen: set[str] | None = None,
    whole: Callable[[], Sequence[str] | None] = lambda: None,
    lease: Lease | None = None,
    counting: Any = None,
    model: str | None = None,
) -> IndexSummary:
    """Restore refreshes, count what landed against what was read, and move the alias when it checks out.

    `source_total` is the document count of an index being copied (`copied_from`): the copy must hold every one
    of them but the failed ones (each in the dead-letter file) before the alias may move.
    `seen` (the tokens the load sent) and `whole` (every token its vectors can hold) are what the df table counts,
    after the alias moved, through `counting` (a client that retries; default `client`); `model` (the model folder)
    completes the `splade-os df` line of a note.
    """
    allow_failures = opts.allow_failures
    dead_letter = letters.close()
    restore_refresh(client, target)
    count = count_documents(client, target.index)
    c = loader.counters
    if target.fresh:
        expected = c.read - c.failed - c.skipped
        verified = count == expected
        how = f"read {c.read} - failed {c.failed} - skipped {c.skipped} = {expected}"
    else:
        expected = count_at_start + loader.created
        verified = expected <= count <= expected + loader.uncertain
        how = f"{count_at_start} before + {loader.created} new = {expected}"
    if source_total is not None and verified:
        # A failed document is in the dead-letter file, not lost: it fails the run (unless allow_failures) as a
        # failure, never as a count mismatch.
        verified = count + c.failed == source_total and c.read == source_total
        how += f", and the source held {source_total}"
    verification = f"{target.index} holds {count} documents; expected {how}"
    if not verified:
        verification = f"count mismatch: {verification}. Look at the dead-letter file and the cluster's logs"
    # A new index that every record failed to enter would only stand in the way (and, with --allow-failures, become
    # what readers search): it goes, with an alias this load made for it.
    emptied = target.fresh and c.failed > 0 and not c.indexed and count == 0
    if emptied:
        verified = False
        verification = (
            f"every record failed ({c.failed} failed, {c.skipped} skipped): nothing was indexed, so "
            f"{target.index} was removed" + ("" if target.swap else f" with alias {target.alias}")
        )
    succeeded = verified and (allow_failures or not c.failed)
    merged = force_merge(client, target.index, 1) if opts.optimize and succeeded else None
    stats = client.indices.stats(index=target.index, metric="store")
    size = int(stats["indices"][target.index]["primaries"]["store"]["size_in_bytes"])
    summary = IndexSummary(
        alias=target.alias,
        index=target.index,
        counters=c,
        elapsed=time.monotonic() - loader.started,
        processed=loader.processed,
        index_count=count,
        index_bytes=size,
        expected=expected,
        verified=verified,
        verification=verification,
        dead_letter=dead_letter,
    )
    if emptied:
        client.indices.delete(index=target.index, ignore_unavailable=True)
        if opts.checkpoint:
            opts.checkpoint.unlink(missing_ok=True)
        return summary
    if merged is not None:
        summary.notes.append(
            f"merged {target.index} from {merged.before} to {plural(merged.after, 'segment')} in {merged.seconds:.1f} s"
        )
    fix = df_line(target.index, model)
    plan = _df_plan(client, target, copied_from, opts.resume, seen, whole, fix) if succeeded else None
    if isinstance(plan, str):
        summary.notes.append(plan)
    if target.swap:
        if succeeded:
            if lease is not None:
                lease.confirm()  # a load whose lease another took over must not move the alias
            summary.swapped = aliases.swap(client, target.alias, target.index, delete_previous=opts.delete_previous)
        else:
            summary.notes.append(
                f"alias {target.alias!r} still points at the previous index; to switch anyway: "
                f"splade-os alias {target.alias} {target.index}"
            )
    if opts.checkpoint:
        opts.checkpoint.unlink(missing_ok=True)
    if isinstance(plan, DfPlan):
        summary.notes.append(_count_df(counting or client, target, plan, fix))
    return summary
