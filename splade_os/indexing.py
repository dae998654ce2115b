"""Bulk indexing that loses nothing: stream records, encode, send, and account for every single one.

The main thread reads and encodes batch N+1 while a sender thread bulk-sends batch N (onnxruntime releases the GIL).
Every record read ends as exactly one of indexed, failed (written to the dead-letter file with the reason) or
skipped, and the index's document count is checked against that at the end.

Resume: after each acknowledged batch the sender writes a checkpoint with the input's byte offset, a digest of the
bytes before it and the counters. Before sending a batch it records the batch's ids as `pending`, so after a crash
between send and acknowledgement the ids that did land are found with one `mget` and are not encoded again. The
corpus id is the `_id`, so sending a document twice can never duplicate it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opensearchpy import OpenSearch, helpers

from splade_os import aliases
from splade_os.connection import without_retries
from splade_os.corpus import CorpusReader, FieldNames, Item, Record, RecordError, to_record
from splade_os.errors import ConfigError, EngineError, ModelError, SpladeOSError
from splade_os.mappings import VECTOR_FIELD, check_encoder, check_vector_field, index_body
from splade_os.vectors import SparseVector

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class DocumentEncoder(Protocol):
    """What indexing needs from an encoder; `SpladeEncoder` is one, a test can bring a tiny fake."""

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...


class IndexingInterrupted(SpladeOSError):
    """The run stopped part-way (Ctrl-C or an outage); what was acknowledged is safe and `--resume` continues."""


@dataclass(frozen=True)
class BulkOptions:
    """How records are batched and sent, and how long an unhealthy cluster is waited for."""

    batch_size: int = 256  # records encoded and sent together; also the unit of a checkpoint
    chunk_bytes: int = 8 * 1024 * 1024  # a bulk request never exceeds this, except a single larger document
    max_retries: int = 6  # rounds of 429 retries inside one bulk call
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    retry_for: float = 300.0  # how long a batch is retried through connection errors and 5xx before giving up
    request_timeout: float = 120.0
    queue_size: int = 1  # encoded batches waiting for the sender: bounds memory

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_bytes < 1 or self.queue_size < 1:
            raise ConfigError("batch size, chunk bytes and queue size must be positive")


@dataclass
class Counters:
    """Counts persisted in the checkpoint, so a resumed run reports the whole corpus."""

    read: int = 0
    indexed: int = 0
    failed: int = 0
    skipped: int = 0
    truncated: int = 0
    resumed: int = 0  # found already indexed after an interruption, not encoded again
    replaced: int = 0  # overwrote a document that was already in the index


@dataclass
class Progress:
    """A snapshot for a progress display: `done`/`total` are input bytes (or documents for an index source)."""

    counters: Counters
    done: int
    total: int | None
    elapsed: float
    processed: int  # records handled by this process (excludes those skipped through --resume)

    @property
    def docs_per_s(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


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


# ---- where the documents go -------------------------------------------------------------------------------------


@dataclass
class _Target:
    alias: str
    index: str
    fresh: bool  # created by this load: `create` ops, and duplicate ids are errors instead of overwrites
    swap: bool  # move the alias here once the load is verified
    refresh_restore: Any


def _create_index(client: OpenSearch, index: str, encoder: DocumentEncoder, shards: int, replicas: int) -> Any:
    body = index_body(shards=shards, replicas=replicas, manifest=encoder.manifest)
    restore = body["settings"]["index"].get("refresh_interval")
    body["settings"]["index"]["refresh_interval"] = "-1"  # no refreshes during a bulk load; restored at the end
    try:
        client.indices.create(index=index, body=body)
    except Exception as err:
        raise EngineError(f"cannot create index {index!r}: {err}") from None
    return restore


def _prepare_target(
    client: OpenSearch, alias: str, encoder: DocumentEncoder, *, recreate: bool, shards: int, replicas: int
) -> _Target:
    current = aliases.resolve(client, alias)
    if len(current) > 1:
        raise ConfigError(
            f"alias {alias!r} points at {len(current)} indices ({', '.join(current)}): point it at one with "
            "`splade-os alias`"
        )
    if current and not recreate:
        # An in-place load writes to the index readers use: its refresh interval is left alone, so a load that dies
        # (even by SIGKILL) never leaves a live index that stops refreshing.
        index = current[0]
        check_vector_field(index, client.indices.get_mapping(index=index))
        check_encoder(client, index, encoder.manifest)
        return _Target(alias, index, fresh=False, swap=False, refresh_restore=None)
    if current and not aliases.is_alias(client, alias):
        raise ConfigError(
            f"{alias!r} is a concrete index, not an alias: moving an alias to a new version would delete it. Build "
            f"versions behind an alias instead: splade-os index --from-index {alias} --index NEW_NAME"
        )
    index = aliases.next_version(client, alias)
    restore = _create_index(client, index, encoder, shards, replicas)
    if not current:
        aliases.swap(client, alias, index)  # nothing to protect readers from: expose the alias right away
    return _Target(alias, index, fresh=True, swap=bool(current), refresh_restore=restore)


def _restore_refresh(client: OpenSearch, target: _Target) -> None:
    if target.fresh:  # only an index this load created had its refreshes turned off
        client.indices.put_settings(index=target.index, body={"index": {"refresh_interval": target.refresh_restore}})


# ---- checkpoint and dead letters ----------------------------------------------------------------------------------


def default_checkpoint(alias: str) -> Path:
    return Path(f"{alias}.checkpoint.json")


def default_dead_letter(alias: str) -> Path:
    return Path(f"{alias}.dead-letter.jsonl")


class _Checkpoint:
    """A small JSON file, replaced atomically, so a crash at any instant leaves the last good state."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def load(cls, path: Path) -> _Checkpoint:
        if not path.is_file():
            raise ConfigError(f"nothing to resume: no checkpoint {path} (run without --resume to start a load)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {err}): start over with --recreate"
            ) from None
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{path} was written by another splade-os version: start over with --recreate")
        return cls(path, data)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(self.data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class _DeadLetters:
    """The dead-letter JSON Lines file, opened on the first entry; a resume truncates it to the checkpoint."""

    def __init__(self, path: Path, keep_bytes: int = 0) -> None:
        self.path = path
        self._out: Any = None
        if keep_bytes and path.is_file():
            with open(path, "r+b") as existing:
                existing.truncate(keep_bytes)
            self._out = open(path, "ab")  # kept open for the whole run
        else:
            path.unlink(missing_ok=True)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self._out is None:
            self._out = open(self.path, "ab")  # kept open for the whole run
        self._out.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")

    def tell(self) -> int:
        if self._out is None:
            return 0
        self._out.flush()
        return int(self._out.tell())

    def close(self) -> Path | None:
        if self._out is None:
            return None
        self._out.close()
        return self.path


def _broken_encoder(batch: int, err: BaseException) -> str:
    detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
    return (
        f"the encoder failed on every one of {batch} documents ({detail}): check the model folder, --threads and "
        "the execution provider; documents already sent are safe, run the same command with --resume to continue"
    )


def _entry(line: int, doc_id: str | None, outcome: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"line": line, "doc_id": doc_id, "outcome": outcome, "reason": reason, **extra}


# ---- the pipeline -------------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    actions: list[dict[str, Any]]
    records: dict[str, Record]
    entries: list[dict[str, Any]]  # errors and skips decided before sending
    counters: Counters
    offset: int
    line: int
    digest: str


@dataclass
class _Result:
    ok: bool
    created: bool = False
    status: Any = None
    reason: str = ""


def _error_reason(item: Mapping[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, Mapping):
        reason = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" ({cause.get('type')}: {cause.get('reason')})"
        return reason
    return str(error)


class _Sender(threading.Thread):
    """Sends batches in order, retrying what the cluster could not take, and checkpoints each one."""

    def __init__(self, loader: _Loader) -> None:
        super().__init__(name="splade-os-bulk", daemon=True)
        self.loader = loader
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=loader.options.queue_size)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (batch := self.queue.get()) is not None:
                if self.stop.is_set():
                    return
                self.loader.commit(batch)
        except BaseException as err:  # handed to the main thread, which raises it
            self.error = err

    def halt(self) -> None:
        """Stop after the batch being sent; wake the thread if it is waiting for one."""
        self.stop.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # it is busy sending and finds `stop` set when it takes the queued batch

    def put(self, batch: _Batch | None) -> None:
        while True:
            if self.error is not None or not self.is_alive():
                return
            try:
                self.queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue


def _retryable(status: Any) -> bool:
    # A status that is not a number means the request never got an HTTP answer: connection refused, reset, timeout.
    return not isinstance(status, int) or status == 429 or status >= 500


class _Loader:
    """One load: prepares batches in the caller's thread and commits them from the sender thread."""

    def __init__(
        self,
        client: OpenSearch,
        target: _Target,
        encoder: DocumentEncoder,
        options: BulkOptions,
        checkpoint: _Checkpoint | None,
        dead_letters: _DeadLetters,
        *,
        skip_empty: bool,
        landed: set[str],
        counters: Counters,
        total: int | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.client, self.target, self.encoder, self.options = client, target, encoder, options
        self.checkpoint, self.dead_letters = checkpoint, dead_letters
        self.skip_empty, self.landed, self.counters = skip_empty, landed, counters
        self.total, self.on_progress = total, on_progress
        self.op_type = "create" if target.fresh else "index"
        self.created = 0  # by this process: the upsert-mode count check is "count before + created"
        self.uncertain = 0  # re-sent after an unanswered request: may or may not have been created the first time
        self.processed = 0
        self.started = time.monotonic()
        self.stop = threading.Event()

    # -- main thread: records -> batch
    def prepare(self, items: Sequence[Item], offset: int, line: int, digest: str) -> _Batch:
        delta = Counters(read=len(items))
        entries: list[dict[str, Any]] = []
        to_encode: dict[str, Record] = {}
        for item in items:
            if isinstance(item, RecordError):
                delta.failed += 1
                entries.append(_entry(item.line, item.doc_id, "failed", item.reason, raw=item.raw))
            elif item.doc_id in to_encode:
                delta.failed += 1
                first = to_encode[item.doc_id].line
                reason = f"duplicate id {item.doc_id!r}: the record at line {first} has it too and was kept"
                entries.append(_entry(item.line, item.doc_id, "failed", reason, record=item.source()))
            elif self.skip_empty and not (item.text.strip() or item.title.strip()):
                delta.skipped += 1
                entries.append(_entry(item.line, item.doc_id, "skipped", "empty text and title: nothing to encode"))
            elif item.doc_id in self.landed:
                self.landed.discard(item.doc_id)  # a later record with this id is a real duplicate again
                delta.indexed += 1
                delta.resumed += 1
            else:
                to_encode[item.doc_id] = item
        records = list(to_encode.values())
        vectors = self._encode(records, delta)
        actions: list[dict[str, Any]] = []
        for record, vector in zip(records, vectors, strict=True):
            if isinstance(vector, str):
                delta.failed += 1
                del to_encode[record.doc_id]
                entries.append(_entry(record.line, record.doc_id, "failed", vector, record=record.source()))
                continue
            source = {**record.fields, "doc_id": record.doc_id, "title": record.title, "text": record.text}
            source[VECTOR_FIELD] = vector.to_field()
            action = {"_op_type": self.op_type, "_index": self.target.index, "_id": record.doc_id, "_source": source}
            actions.append(action)
        return _Batch(actions, to_encode, entries, delta, offset, line, digest)

    def _encode(self, records: list[Record], delta: Counters) -> list[SparseVector | str]:
        if not records:
            return []
        texts = [f"{r.title} {r.text}".strip() for r in records]
        before = int(getattr(self.encoder, "truncated", 0))
        try:
            result: list[SparseVector | str] = list(self.encoder.encode_documents(texts))
        except MemoryError:
            raise ModelError(_broken_encoder(len(texts), MemoryError("out of memory"))) from None
        except Exception as batch_error:  # one bad text must not sink its batch: find it by encoding one at a time
            result = []
            for text in texts:
                try:
                    result.extend(self.encoder.encode_documents([text]))
                except MemoryError:
                    raise ModelError(_broken_encoder(len(texts), MemoryError("out of memory"))) from None
                except Exception as err:
                    result.append(f"encoder error: {type(err).__name__}: {err}")
            if all(isinstance(r, str) for r in result):
                # Not one text encodes: the encoder is broken (provider, model file, memory), not the documents.
                # Stop with one error instead of turning the whole corpus into dead letters.
                raise ModelError(_broken_encoder(len(texts), batch_error)) from None
        delta.truncated += int(getattr(self.encoder, "truncated", 0)) - before
        return result

    # -- sender thread: batch -> cluster -> checkpoint
    def commit(self, batch: _Batch) -> None:
        if self.checkpoint and batch.actions:
            self.checkpoint.data["pending_ids"] = [a["_id"] for a in batch.actions]
            self.checkpoint.save()
        results = self._send(batch.actions)
        for entry in batch.entries:
            self.dead_letters.write(entry)
        delta = batch.counters
        for action in batch.actions:
            result, record = results[action["_id"]], batch.records[action["_id"]]
            if result.ok:
                delta.indexed += 1
                self.created += result.created
                delta.replaced += not result.created
            else:
                delta.failed += 1
                reason = result.reason
                if result.status == 409 and self.op_type == "create":
                    reason = (
                        f"duplicate id {record.doc_id!r}: an earlier record with this id is already indexed and was "
                        f"kept ({reason})"
                    )
                entry = _entry(record.line, record.doc_id, "failed", reason, status=result.status)
                self.dead_letters.write({**entry, "record": record.source()})
        for name, value in asdict(delta).items():
            setattr(self.counters, name, getattr(self.counters, name) + value)
        self.processed += delta.read - delta.resumed
        if self.checkpoint:
            self.checkpoint.data.update(
                offset=batch.offset,
                line=batch.line,
                digest=batch.digest,
                counters=asdict(self.counters),
                dead_letter_bytes=self.dead_letters.tell(),
                pending_ids=[],
            )
            self.checkpoint.save()
        if self.on_progress:
            elapsed = time.monotonic() - self.started
            self.on_progress(Progress(self.counters, batch.offset, self.total, elapsed, self.processed))

    def _send(self, actions: list[dict[str, Any]]) -> dict[str, _Result]:
        """Send until every action has a final answer; retry 429, 5xx and connection errors with backoff."""
        opts = self.options
        by_id = {a["_id"]: a for a in actions}
        results: dict[str, _Result] = {}
        uncertain: set[str] = set()
        todo, attempt, first_failure = actions, 0, 0.0
        while todo:
            retry: list[str] = []
            last_error = ""
            for ok, info in helpers.streaming_bulk(
                self.client,
                todo,
                chunk_size=opts.batch_size,
                max_chunk_bytes=opts.chunk_bytes,
                raise_on_error=False,
                raise_on_exception=False,  # a failed request becomes per-document failures we can sort
                max_retries=opts.max_retries,
                initial_backoff=opts.initial_backoff,  # type: ignore[arg-type]  # float seconds work
                max_backoff=opts.max_backoff,  # type: ignore[arg-type]
                request_timeout=opts.request_timeout,
            ):
                item = next(iter(info.values()))
                doc_id, status = item.get("_id"), item.get("status")
                if ok:
                    results[doc_id] = _Result(ok=True, created=item.get("result") == "created")
                elif status == 409 and doc_id in uncertain:
                    results[doc_id] = _Result(ok=True, created=True)  # landed before its answer was lost
                elif _retryable(status):
                    retry.append(doc_id)
                    last_error = f"{status}: {_error_reason(item)}"[:300]
                    if not isinstance(status, int):
                        uncertain.add(doc_id)
                else:
                    results[doc_id] = _Result(ok=False, status=status, reason=_error_reason(item))
            if not retry:
                break
            now = time.monotonic()
            first_failure = first_failure or now
            if now - first_failure > opts.retry_for:
                raise IndexingInterrupted(
                    f"OpenSearch did not take {len(retry)} documents for {opts.retry_for:.0f} s (last answer: "
                    f"{last_error}). {self.counters.indexed} documents are safely indexed; once the cluster is "
                    "healthy, run the same command with --resume to continue."
                )
            wait = min(opts.max_backoff, opts.initial_backoff * 2**attempt)
            attempt += 1
            log.warning("retrying %d documents in %.1f s after: %s", len(retry), wait, last_error)
            if self.stop.wait(wait):
                raise IndexingInterrupted("stopped while waiting to retry")
            self.uncertain += len(uncertain & set(retry))
            todo = [by_id[i] for i in retry]
        return results


# ---- entry points -------------------------------------------------------------------------------------------------


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def _landed(client: OpenSearch, index: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    response = client.mget(index=index, body={"ids": ids}, params={"_source": "false"})
    return {d["_id"] for d in response["docs"] if d.get("found")}


def _settings(encoder: DocumentEncoder, skip_empty: bool) -> dict[str, Any]:
    manifest = encoder.manifest
    return {"encoder": [manifest.get("name"), manifest.get("sha256")], "skip_empty": skip_empty}


class _Source(Protocol):
    resumable: bool
    label: str
    size: int | None
    offset: int
    line: int

    def __iter__(self) -> Iterator[Item]: ...

    def identity(self) -> dict[str, Any]: ...

    def digest(self) -> str: ...

    def skip_to(self, offset: int, line: int, digest: str) -> None: ...


def index_corpus(
    client: OpenSearch,
    source: str | Path,
    *,
    index: str,
    encoder: DocumentEncoder,
    names: FieldNames | None = None,
    corpus_format: str | None = None,
    columns: Sequence[str] | None = None,
    recreate: bool = False,
    resume: bool = False,
    skip_empty: bool = True,
    allow_failures: bool = False,
    delete_previous: bool = False,
    shards: int = 1,
    replicas: int = 1,
    checkpoint: Path | None = None,
    dead_letter: Path | None = None,
    options: BulkOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> IndexSummary:
    """Index a corpus file, BEIR folder or `-` (stdin) into alias `index`; see the module docstring.

    The alias is moved to a freshly built index only once its count checks out (and no document failed, unless
    `allow_failures`). Call `summary.problems()` to decide whether the run succeeded.
    """
    reader = CorpusReader(source, corpus_format=corpus_format, names=names, columns=columns)
    try:
        return _load(
            client, reader, index=index, encoder=encoder, recreate=recreate, resume=resume, skip_empty=skip_empty,
            allow_failures=allow_failures, delete_previous=delete_previous, shards=shards, replicas=replicas,
            checkpoint=checkpoint or default_checkpoint(index), dead_letter=dead_letter or default_dead_letter(index),
            options=options or BulkOptions(), on_progress=on_progress,
        )  # fmt: skip
    finally:
        reader.close()


class IndexSource:
    """The documents of an existing index, read with a scroll, as records to encode again."""

    resumable = False

    def __init__(self, client: OpenSearch, index: str, names: FieldNames, batch_size: int) -> None:
        if not aliases.resolve(client, index):
            raise ConfigError(f"cannot re-encode {index!r}: no index or alias of that name")
        self.client, self.index, self.names, self.batch_size = client, index, names, batch_size
        self.label = f"index {index}"
        self.size: int | None = int(client.count(index=index)["count"])
        self.offset = self.line = 0

    def __iter__(self) -> Iterator[Item]:
        hits = helpers.scan(
            self.client, index=self.index, query={"query": {"match_all": {}}}, size=self.batch_size,
            _source_excludes=[VECTOR_FIELD],
        )  # fmt: skip
        for hit in hits:
            self.offset += 1
            self.line += 1
            fields = dict(hit.get("_source", {}))
            fields.pop("doc_id", None)  # written by splade-os from the id; it is not a field of the document
            obj = {**fields, self.names.id: hit["_id"]}
            yield to_record(obj, self.names, self.line)

    def identity(self) -> dict[str, Any]:
        return {"index": self.index}

    def digest(self) -> str:
        return ""

    def skip_to(self, offset: int, line: int, digest: str) -> None:
        raise ConfigError("a re-encode cannot be resumed: start it again with --recreate")


def reencode_index(
    client: OpenSearch,
    source_index: str,
    *,
    index: str,
    encoder: DocumentEncoder,
    text_field: str = "text",
    title_field: str = "title",
    recreate: bool = True,
    skip_empty: bool = False,
    allow_failures: bool = False,
    delete_previous: bool = False,
    shards: int = 1,
    replicas: int = 1,
    dead_letter: Path | None = None,
    options: BulkOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> IndexSummary:
    """Read `source_index` (scroll), encode `text_field` (with `title_field`), and write alias `index`.

    With `index` equal to the source alias and `recreate`, this builds the next version and swaps the alias to it
    once verified: readers move to the new vectors atomically. The old version is kept unless `delete_previous`.
    Every document is copied, an empty text included (it gets an empty vector and stays findable by its fields),
    and the alias moves only when the new index holds as many documents as the source did.
    """
    options = options or BulkOptions()
    names = FieldNames(id="_id", text=text_field, title=title_field)
    source = IndexSource(client, source_index, names, options.batch_size)
    if not recreate and set(aliases.resolve(client, index)) & set(aliases.resolve(client, source_index)):
        raise ConfigError(f"{index!r} is the index being read: pass --recreate to build a new version of it")
    return _load(
        client, source, index=index, encoder=encoder, recreate=recreate, resume=False, skip_empty=skip_empty,
        allow_failures=allow_failures, delete_previous=delete_previous, shards=shards, replicas=replicas,
        checkpoint=None, dead_letter=dead_letter or default_dead_letter(index), options=options,
        on_progress=on_progress,
    )  # fmt: skip


def _unfinished_index(checkpoint: Path) -> str | None:
    """The index an interrupted run was writing, to delete on --recreate; None when the checkpoint is unreadable."""
    try:
        index = json.loads(checkpoint.read_text(encoding="utf-8")).get("target", {}).get("index")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        log.warning("checkpoint %s is unreadable; starting over without it", checkpoint)
        return None
    return index if isinstance(index, str) else None


@dataclass
class _Started:
    """A load's target and the state it starts from (all empty unless resuming)."""

    target: _Target
    checkpoint: _Checkpoint | None
    counters: Counters
    landed: set[str]
    dead_letter_bytes: int = 0


def _start(
    client: OpenSearch,
    source: _Source,
    *,
    index: str,
    encoder: DocumentEncoder,
    recreate: bool,
    resume: bool,
    skip_empty: bool,
    shards: int,
    replicas: int,
    checkpoint: Path | None,
) -> _Started:
    """Pick or create the target index and read the state of an interrupted run when resuming.

    Nothing here opens a file or turns refreshes off: `_load` does that once it is inside its clean-up block.
    """
    settings = _settings(encoder, skip_empty)
    if resume:
        if checkpoint is None:
            raise ConfigError("this source cannot be resumed")
        state = _Checkpoint.load(checkpoint)
        for key, now in (("input", source.identity()), ("settings", settings)):
            if state.data.get(key) != now:
                raise ConfigError(
                    f"--resume with different {key} than the interrupted run ({state.data.get(key)} then, {now} "
                    "now): use the same options, or start over with --recreate"
                )
        target = _Target(**state.data["target"])
        if not client.indices.exists(index=target.index):
            raise ConfigError(f"index {target.index!r} of the interrupted run is gone: start over with --recreate")
        source.skip_to(state.data["offset"], state.data["line"], state.data["digest"])
        landed = _landed(client, target.index, state.data["pending_ids"])
        return _Started(target, state, Counters(**state.data["counters"]), landed, state.data["dead_letter_bytes"])
    if checkpoint and checkpoint.exists():
        if not recreate:
            raise ConfigError(
                f"an interrupted run left {checkpoint}: pass --resume to continue it, or --recreate to start over"
            )
        unfinished = _unfinished_index(checkpoint)
        if unfinished and unfinished not in aliases.resolve(client, index):
            client.indices.delete(index=unfinished, ignore_unavailable=True)
        checkpoint.unlink()
    target = _prepare_target(client, index, encoder, recreate=recreate, shards=shards, replicas=replicas)
    fresh_state: _Checkpoint | None = None
    if checkpoint and source.resumable:
        fresh_state = state = _Checkpoint(checkpoint, {"version": CHECKPOINT_VERSION, "target": asdict(target)})
        state.data.update(input=source.identity(), settings=settings, offset=0, line=0, digest=source.digest())
        state.data.update(counters=asdict(Counters()), dead_letter_bytes=0, pending_ids=[])
    return _Started(target, fresh_state, Counters(), set())


def _load(
    client: OpenSearch,
    source: _Source,
    *,
    index: str,
    encoder: DocumentEncoder,
    recreate: bool,
    resume: bool,
    skip_empty: bool,
    allow_failures: bool,
    delete_previous: bool,
    shards: int,
    replicas: int,
    checkpoint: Path | None,
    dead_letter: Path,
    options: BulkOptions,
    on_progress: Callable[[Progress], None] | None,
) -> IndexSummary:
    # The loader retries on its own and must see every failed request, so it talks through its own client with the
    # transport's retries off; the caller's client, which other threads may share, is never changed.
    own = without_retries(client)
    letters: _DeadLetters | None = None
    started: _Started | None = None
    try:
        started = _start(
            own, source, index=index, encoder=encoder, recreate=recreate, resume=resume, skip_empty=skip_empty,
            shards=shards, replicas=replicas, checkpoint=checkpoint,
        )  # fmt: skip
        target = started.target
        if started.checkpoint is not None:
            started.checkpoint.save()
        if resume and target.fresh:
            own.indices.put_settings(index=target.index, body={"index": {"refresh_interval": "-1"}})
        letters = _DeadLetters(dead_letter, keep_bytes=started.dead_letter_bytes)
        loader = _Loader(
            own, target, encoder, options, started.checkpoint, letters, skip_empty=skip_empty,
            landed=started.landed, counters=started.counters, total=source.size, on_progress=on_progress,
        )  # fmt: skip
        count_at_start = _count(own, target.index)
        _run(loader, source)
        return _finish(
            own, target, loader, letters, count_at_start, allow_failures, delete_previous, checkpoint,
            source_total=source.size if isinstance(source, IndexSource) else None,
        )  # fmt: skip
    except BaseException:
        if letters is not None:
            letters.close()
        if started is not None:
            _try_restore_refresh(own, started.target)
        raise
    finally:
        own.close()


def _try_restore_refresh(client: OpenSearch, target: _Target) -> None:
    # Best effort after a failure, so an abandoned load does not leave an index that never refreshes; a resumed
    # run turns refreshes off again.
    try:
        _restore_refresh(client, target)
    except Exception as err:  # the cluster may be the reason we are here
        log.warning("could not restore refresh_interval of %s: %s", target.index, err)


def _run(loader: _Loader, source: _Source) -> None:
    """Encode in this thread while the sender thread sends the previous batch.

    Whatever ends the run early (Ctrl-C, an encoder or reader error), the sender finishes the batch on the wire and
    stops before the caller closes the dead-letter file, so the checkpoint always matches what landed.
    """
    sender = _Sender(loader)
    sender.start()
    try:
        for items in _batches(source, loader.options.batch_size):
            sender.put(loader.prepare(items, source.offset, source.line, source.digest()))
            if sender.error is not None:
                break
        sender.put(None)
        sender.join()
    except KeyboardInterrupt:
        # The user wants out: finish only the batch on the wire, and skip retry waits.
        sender.halt()
        loader.stop.set()
        sender.join(timeout=loader.options.request_timeout + 10)
        raise IndexingInterrupted(
            f"interrupted: {loader.counters.indexed} documents are safely indexed in {loader.target.index}; run the "
            "same command with --resume to continue"
        ) from None
    except BaseException:
        # The encoder or the reader failed: the batches already encoded are good, so send them, then stop.
        sender.put(None)
        sender.join(timeout=loader.options.request_timeout + 10)
        if sender.is_alive():
            sender.halt()
            loader.stop.set()
            sender.join(timeout=loader.options.request_timeout + 10)
        raise
    if sender.error is not None:
        if isinstance(sender.error, SpladeOSError):
            raise sender.error
        raise EngineError(f"bulk indexing failed: {type(sender.error).__name__}: {sender.error}") from sender.error


def _finish(
    client: OpenSearch,
    target: _Target,
    loader: _Loader,
    letters: _DeadLetters,
    count_at_start: int,
    allow_failures: bool,
    delete_previous: bool,
    checkpoint: Path | None,
    *,
    source_total: int | None = None,
) -> IndexSummary:
    """Restore refreshes, count what landed against what was read, and move the alias when it checks out.

    `source_total` is the document count of an index being copied: the copy must hold every one of them (with
    `allow_failures`, all but the failed ones, each in the dead-letter file) before the alias may move.
    """
    dead_letter = letters.close()
    _restore_refresh(client, target)
    count = _count(client, target.index)
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
        accounted = count + (c.failed if allow_failures else 0)
        verified = accounted == source_total and c.read == source_total
        how += f", and the source held {source_total}"
    verification = f"{target.index} holds {count} documents; expected {how}"
    if not verified:
        verification = f"count mismatch: {verification}. Look at the dead-letter file and the cluster's logs"
    stats = client.indices.stats(index=target.index, metric="store")
    size = int(stats["indices"][target.index]["primaries"]["store"]["size_in_bytes"])
    summary = IndexSummary(
        alias=target.alias, index=target.index, counters=c, elapsed=time.monotonic() - loader.started,
        processed=loader.processed, index_count=count, index_bytes=size, expected=expected, verified=verified,
        verification=verification, dead_letter=dead_letter,
    )  # fmt: skip
    if target.swap:
        if verified and (allow_failures or not c.failed):
            summary.swapped = aliases.swap(client, target.alias, target.index, delete_previous=delete_previous)
        else:
            summary.notes.append(
                f"alias {target.alias!r} still points at the previous index; to switch anyway: "
                f"splade-os alias {target.alias} {target.index}"
            )
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
    return summary
