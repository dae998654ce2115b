"""Dynamic batching: texts submitted by many callers at once run through the encoder together.

`submit(texts)` returns a `Future` of that call's results, in order. Each of `slots` worker threads (one per
encoder worker: two batches run at once on two cores) takes the waiting submissions, up to `max_batch` texts, and
runs them as one encoder call. While every slot is busy submissions wait in a bounded queue,
so the next batch takes all of them: under load batches grow with concurrency, and an idle service runs a lone
request at once (the `max_wait` pause for company is taken only while another batch is running).

Each text's result is what encoding it alone gives (the encoder pads each batch with masked positions, which do not
change a row's weights: tests/test_serve_batcher.py checks it bit for bit). A full queue refuses the submission with
`QueueFullError` instead of growing without bound; `close()` lets the queued and running batches finish first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from splade_os.errors import SpladeOSError

T = TypeVar("T")


class QueueFullError(SpladeOSError):
    """The batcher's queue holds `max_queue` texts already: the caller should retry later."""


class BatcherClosedError(SpladeOSError):
    """The batcher was closed (the service is shutting down)."""


@dataclass(frozen=True)
class BatchSettings:
    """`max_batch` texts per encoder call, `max_wait_ms` to wait for more while another batch runs, `max_queue`
    texts waiting at most (more is refused), `slots` batches running at once."""

    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    slots: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.slots < 1 or self.max_wait_ms < 0:
            raise ValueError(f"batch settings out of range: {self}")


@dataclass
class _Waiting(Generic[T]):
    texts: list[str]
    future: Future[list[T]]


class Batcher(Generic[T]):
    """Gathers concurrent `submit` calls into batches of `encode` (one call per batch, texts in submission order)."""

    def __init__(
        self,
        encode: Callable[[list[str]], list[T]],
        settings: BatchSettings | None = None,
        *,
        on_batch: Callable[[int], None] | None = None,
        name: str = "splade-os-batcher",
    ) -> None:
        self.encode = encode
        self.settings = settings or BatchSettings()
        self.on_batch = on_batch  # told each batch's size, for metrics
        self._queue: deque[_Waiting[T]] = deque()
        self._queued_texts = 0
        self._running = 0
        self._closed = False
        self._changed = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(self.settings.slots)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def depth(self) -> int:
        """Texts waiting for a batch."""
        with self._changed:
            return self._queued_texts

    def submit(self, texts: Sequence[str]) -> Future[list[T]]:
        """A future of `encode`'s results for `texts`; raises QueueFullError when the queue is full."""
        future: Future[list[T]] = Future()
        items = list(texts)
        if not items:
            future.set_result([])
            return future
        with self._changed:
            if self._closed:
                raise BatcherClosedError("the encoder is shutting down: send the request to another replica")
            if self._queued_texts and self._queued_texts + len(items) > self.settings.max_queue:
                raise QueueFullError(f"{self._queued_texts} texts are waiting (max_queue {self.settings.max_queue})")
            self._queue.append(_Waiting(items, future))
            self._queued_texts += len(items)
            self._changed.notify_all()
        return future

    def close(self, wait: bool = True) -> None:
        """Refuse new submissions; the queued and running batches finish first (when `wait`)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if wait:
            for worker in self._workers:
                worker.join()

    def _take(self) -> list[_Waiting[T]] | None:
        """The next batch, once a slot is free and something waits (None: closed and drained)."""
        with self._changed:
            while self._running >= self.settings.slots or not self._queue:
                if self._closed and not self._queue:
                    return None
                self._changed.wait()
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            # Company is worth waiting for only while another batch keeps the encoder busy anyway.
            deadline = time.monotonic() + self.settings.max_wait_ms / 1000 if self._running else 0.0
            while size < self.settings.max_batch:
                if self._queue:
                    if size + len(self._queue[0].texts) > self.settings.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    size += len(batch[-1].texts)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._changed.wait(left)
            self._queued_texts -= size
            self._running += 1
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Waiting[T]]) -> None:
        texts = [text for waiting in batch for text in waiting.texts]
        try:
            if self.on_batch is not None:
                self.on_batch(len(texts))
            results = self.encode(texts)
        except BaseException as err:  # each caller gets the error of the batch it was in
            for waiting in batch:
                waiting.future.set_exception(err)
        else:
            start = 0
            for waiting in batch:
                waiting.future.set_result(results[start : start + len(waiting.texts)])
                start += len(waiting.texts)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()
