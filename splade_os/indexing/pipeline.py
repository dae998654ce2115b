"""Records -> actions -> cluster: the main thread encodes batch N+1 while a sender thread sends batch N.

The sender retries what the cluster could not take (429, 5xx, requests without an answer), writes the dead letters
and checkpoints each acknowledged batch, so at any instant the checkpoint matches what landed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from splade_os.corpus import Item, Record, RecordError
from splade_os.engines import Engine, engine_for
from splade_os.engines.refusals import refusal, refused_line
from splade_os.errors import EncoderMismatchError, EngineError, ModelError, SpladeOSError
from splade_os.indexing.ledger import Checkpoint, Counters, LetterSink, entry
from splade_os.indexing.options import BulkOptions, DocumentEncoder, RecordEncoder
from splade_os.indexing.sources import Source
from splade_os.indexing.target import Target
from splade_os.mappings import VECTOR_FIELD, vector_fields
from splade_os.vectors import MAX_KEY_BYTES, SparseVector, long_key

log = logging.getLogger(__name__)


class IndexingInterrupted(SpladeOSError):
    """The run stopped part-way (Ctrl-C or an outage); what was acknowledged is safe and `--resume` continues."""


class IndexingRefused(IndexingInterrupted):
    """The cluster refused to take documents (401/403): no document is at fault, so none becomes a dead letter;
    the batch stays pending in the checkpoint and `--resume` sends it once the user's role allows it."""


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


def broken_encoder(batch: int, err: BaseException) -> str:
    detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
    return (
        f"the encoder failed on every one of {batch} documents ({detail}): check the model folder, --threads and "
        "the execution provider; documents already sent are safe, run the same command with --resume to continue"
    )


@dataclass
class Batch:
    actions: list[dict[str, Any]]
    records: dict[str, Record]
    entries: list[dict[str, Any]]  # errors and skips decided before sending
    counters: Counters
    offset: int
    line: int
    digest: str


@dataclass
class Result:
    ok: bool
    created: bool = False
    status: Any = None
    reason: str = ""


def error_reason(item: Mapping[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, Mapping):
        reason = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" ({cause.get('type')}: {cause.get('reason')})"
        return reason
    return str(error)


def stored_documents(client: Any, index: str, ids: Sequence[str], *, source: bool = False) -> dict[str, Any]:
    """The documents of `ids` that `index` holds, by id: each one's `_source` when `source`, else None.

    An item that carries an error is no answer, and raises: the OpenSearch security plugin refuses an mget's shard
    requests with HTTP 200 and a `security_exception` per item, which read as "not found" would send documents that
    did land again, each then a false "duplicate id" dead letter.
    """
    if not ids:
        return {}
    fields = "docs._id,docs.found,docs.error" + (",docs._source" if source else "")
    response = client.mget(index=index, body={"ids": list(ids)}, filter_path=fields)
    found: dict[str, Any] = {}
    for doc in response.get("docs", []):
        if doc.get("error") is not None:
            raise unreadable(index, doc)
        if doc.get("found"):
            found[doc["_id"]] = doc.get("_source")
    return found


def unreadable(index: str, doc: Mapping[str, Any]) -> SpladeOSError:
    """The error for an mget item without an answer; for a refusal, the privilege to add."""
    reason, error = error_reason(doc), doc.get("error")
    why = (
        "splade-os reads back documents that may already be indexed, so as not to take them for duplicates: none "
        "was dead-lettered and the checkpoint is kept; once"
    )
    if (isinstance(error, Mapping) and error.get("type") == "security_exception") or refusal(reason):
        line = refused_line("the cluster", reason)
        return IndexingRefused(f"{line}. {why} the user may read them, run the same command with --resume")
    return EngineError(
        f"the cluster could not say whether document {doc.get('_id')!r} is in {index} ({reason[:300]}). {why} the "
        "cluster is healthy, run the same command with --resume"
    )


class Sender(threading.Thread):
    """Sends batches in order, retrying what the cluster could not take, and checkpoints each one."""

    def __init__(self, loader: Loader) -> None:
        super().__init__(name="splade-os-bulk", daemon=True)
        self.loader = loader
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=loader.options.queue_size)
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

    def put(self, batch: Batch | None) -> None:
        while True:
            if self.error is not None or not self.is_alive():
                return
            try:
                self.queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue


def retryable(status: Any) -> bool:
    # A status that is not a number means the request never got an HTTP answer: connection refused, reset, timeout.
    return not isinstance(status, int) or status == 429 or status >= 500


class Loader:
    """One load: prepares batches in the caller's thread and commits them from the sender thread."""

    def __init__(
        self,
        client: Any,
        target: Target,
        encoder: DocumentEncoder,
        options: BulkOptions,
        checkpoint: Checkpoint | None,
        dead_letters: LetterSink,
        *,
        skip_empty: bool,
        landed: set[str],
        counters: Counters,
        total: int | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.client, self.target, self.encoder, self.options = client, target, encoder, options
        self.engine: Engine = engine_for(client)
        self.checkpoint, self.dead_letters = checkpoint, dead_letters
        self.skip_empty, self.landed, self.counters = skip_empty, landed, counters
        self.total, self.on_progress = total, on_progress
        self.op_type = "create" if target.fresh else "index"
        self.created = 0  # by this process: the upsert-mode count check is "count before + created"
        self.uncertain = 0  # re-sent after an unanswered request: may or may not have been created the first time
        self.processed = 0
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.seen: set[str] = set()  # the tokens of the vectors sent: what a new df table counts

    def kept_in(self) -> str:
        """Where `--resume` finds this run's checkpoint (from any folder), for the messages that ask for it."""
        return f" (from any folder; its checkpoint: {self.checkpoint.path})" if self.checkpoint else ""

    # -- main thread: records -> batch
    def prepare(self, items: Sequence[Item], offset: int, line: int, digest: str) -> Batch:
        delta = Counters(read=len(items))
        entries: list[dict[str, Any]] = []
        to_encode: dict[str, Record] = {}
        for item in items:
            if isinstance(item, RecordError):
                delta.failed += 1
                carried = {"record": dict(item.record)} if item.record is not None else {"raw": item.raw}
                entries.append(entry(item.line, item.doc_id, "failed", item.reason, **carried))
            elif (first := self.first_copy(item, to_encode)) is not None:
                delta.failed += 1
                reason = f"duplicate id {item.doc_id!r}: the record at {first} has it too and was kept"
                entries.append(entry(item.line, item.doc_id, "failed", reason, record=item.source()))
            elif self.skip_empty and (empty := item.nothing_to_index()):
                delta.skipped += 1
                entries.append(entry(item.line, item.doc_id, "skipped", empty))
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
            source = (
                vector
                if isinstance(vector, str)
                else document_body(
                    record, vector, self.engine, self.target.first_phase_k, self.target.first_phase_candidates
                )
            )
            if isinstance(source, str):  # the reason it cannot be indexed
                delta.failed += 1
                del to_encode[record.doc_id]
                entries.append(entry(record.line, record.doc_id, "failed", source, record=record.source()))
                continue
            action = {"_op_type": self.op_type, "_index": self.target.index, "_id": record.doc_id, "_source": source}
            actions.append(action)
            self.seen.update(vector)
        return Batch(actions, to_encode, entries, delta, offset, line, digest)

    def first_copy(self, record: Record, batch: Mapping[str, Record]) -> str | None:
        """Where the kept record with this record's id is ("line 4"), when this one repeats it: here, in its batch.
        An earlier batch's copy is found by the cluster (a conflict on `create`)."""
        kept = batch.get(record.doc_id)
        return None if kept is None else f"line {kept.line}"

    def _encode(self, records: list[Record], delta: Counters) -> list[SparseVector | str]:
        if not records:
            return []
        before = int(getattr(self.encoder, "truncated", 0))
        try:
            result: list[SparseVector | str] = list(vectors_of(self.encoder, records))
        except MemoryError:
            raise ModelError(broken_encoder(len(records), MemoryError("out of memory"))) from None
        except EncoderMismatchError:
            raise  # the vectors are not in the index's vocabulary: no record is at fault, the run is
        except Exception as batch_error:  # one bad text must not sink its batch: find it by encoding one at a time
            result = []
            for record in records:
                try:
                    result.extend(vectors_of(self.encoder, [record]))
                except MemoryError:
                    raise ModelError(broken_encoder(len(records), MemoryError("out of memory"))) from None
                except Exception as err:
                    result.append(f"encoder error: {type(err).__name__}: {err}")
            if all(isinstance(r, str) for r in result):
                # Not one text encodes: the encoder is broken (provider, model file, memory), not the documents.
                # Stop with one error instead of turning the whole corpus into dead letters.
                raise ModelError(broken_encoder(len(records), batch_error)) from None
        delta.truncated += int(getattr(self.encoder, "truncated", 0)) - before
        return result

    # -- sender thread: batch -> cluster -> checkpoint
    def commit(self, batch: Batch) -> None:
        if self.checkpoint and batch.actions:
            self.checkpoint.data["pending_ids"] = [a["_id"] for a in batch.actions]
            self.checkpoint.save()
        results = self._send(batch.actions)
        for decided in batch.entries:
            self.dead_letters.write(decided)
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
                failure = entry(record.line, record.doc_id, "failed", reason, status=result.status)
                self.dead_letters.write({**failure, "record": record.source()})
        self.counters.add(delta)
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

    def _send(self, actions: list[dict[str, Any]]) -> dict[str, Result]:
        """Send until every action has a final answer; retry 429, 5xx and connection errors with backoff."""
        opts = self.options
        by_id = {a["_id"]: a for a in actions}
        results: dict[str, Result] = {}
        uncertain: set[str] = set()
        todo, attempt, first_failure = actions, 0, 0.0
        while todo:
            retry: list[str] = []
            last_error = ""
            refused = ""
            for ok, info in self.engine.bulk(
                self.client,
                todo,
                chunk_size=opts.batch_size,
                max_chunk_bytes=opts.chunk_bytes,
                max_retries=opts.max_retries,
                initial_backoff=opts.initial_backoff,  # float seconds work
                max_backoff=opts.max_backoff,
                request_timeout=opts.request_timeout,
            ):
                item = next(iter(info.values()))
                doc_id, status = item.get("_id"), item.get("status")
                if ok:
                    results[doc_id] = Result(ok=True, created=item.get("result") == "created")
                elif status in (401, 403):
                    refused = refused or error_reason(item)
                elif status == 409 and doc_id in uncertain:
                    results[doc_id] = Result(ok=True, created=True)  # landed before its answer was lost
                elif retryable(status):
                    retry.append(doc_id)
                    last_error = f"{status}: {error_reason(item)}"[:300]
                    if not isinstance(status, int):
                        uncertain.add(doc_id)
                else:
                    results[doc_id] = Result(ok=False, status=status, reason=error_reason(item))
            if refused:
                raise self._refused(refused)
            if not retry:
                break
            now = time.monotonic()
            first_failure = first_failure or now
            if now - first_failure > opts.retry_for:
                raise IndexingInterrupted(
                    f"the cluster did not take {len(retry)} documents for {opts.retry_for:.0f} s (last answer: "
                    f"{last_error}). {self.counters.indexed} documents are safely indexed; once the cluster is "
                    f"healthy, run the same command with --resume to continue{self.kept_in()}."
                )
            wait = min(opts.max_backoff, opts.initial_backoff * 2**attempt)
            attempt += 1
            log.warning("retrying %d documents in %.1f s after: %s", len(retry), wait, last_error)
            if self.stop.wait(wait):
                raise IndexingInterrupted("stopped while waiting to retry")
            self.uncertain += len(uncertain & set(retry))
            todo = [by_id[i] for i in retry]
        return results

    def _refused(self, reason: str) -> IndexingRefused:
        line = refused_line("the cluster", reason)
        if "(401)" in reason or reason.startswith("401"):
            line = "the cluster refused the credentials (401)"
        return IndexingRefused(
            f"{line}. Nothing was lost: {self.counters.indexed} documents are indexed in {self.target.index} and the "
            "checkpoint is saved; once the user may write, run the same command with --resume"
        )


def vectors_of(encoder: DocumentEncoder, records: Sequence[Record]) -> Sequence[SparseVector]:
    """The vectors of `records`: an encoder that reads records (vectors made elsewhere, `encode_records`) is given
    them; any other encodes each one's title, a space and its text."""
    if isinstance(encoder, RecordEncoder):
        return encoder.encode_records(records)
    return encoder.encode_documents([f"{r.title} {r.text}".strip() for r in records])


def document_body(
    record: Record,
    vector: SparseVector,
    engine: Engine,
    first_phase_k: int | None = None,
    candidates: tuple[int, ...] = (),
) -> dict[str, Any] | str:
    """The `_source` a record is indexed as, with its vector in the engine's fields (the full one, and the pruned
    first-phase one and its candidates when the index has them); or why the engine cannot store it (a key past
    Lucene's term length, which only a vector made elsewhere can have)."""
    source = record.stored()
    fields = vector_fields(engine, vector, first_phase_k, candidates)
    source.update(fields)
    key = long_key(fields[VECTOR_FIELD])
    if key is not None:
        return (
            f"vector token {key[:50]!r}... is {len(key.encode('utf-8'))} bytes as {engine.label} stores it, over "
            f"the {MAX_KEY_BYTES} bytes a term may have"
        )
    return source


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(loader: Loader, source: Source) -> None:
    """Encode in this thread while the sender thread sends the previous batch.

    Whatever ends the run early (Ctrl-C, an encoder or reader error), the sender finishes the batch on the wire and
    stops before the caller closes the dead-letter file, so the checkpoint always matches what landed.
    """
    sender = Sender(loader)
    sender.start()
    try:
        for items in batches(source, loader.options.batch_size):
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
            f"same command with --resume to continue{loader.kept_in()}"
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
