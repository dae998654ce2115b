"""The batcher: concurrent submissions share encoder runs, each result is what encoding alone gives, a full queue is
refused, and closing finishes what was accepted. Batches are held open with events, never with sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import BUNDLED_MODEL
from starlette.testclient import TestClient
from synthetic_corpus import demo_documents

from splade_os.connection import ConnectionSettings
from splade_os.model.encoder import SpladeEncoder
from splade_os.serve.app import build_app
from splade_os.serve.batcher import Batcher, BatcherClosedError, BatchSettings, QueueFullError
from splade_os.serve.encoding import BatchedEncoder, length_groups
from splade_os.serve.settings import ServeSettings
from splade_os.vectors import SparseVector


@pytest.fixture(scope="module")
def encoder() -> Iterator[SpladeEncoder]:
    with SpladeEncoder(BUNDLED_MODEL) as enc:
        yield enc


class Gate:
    """Wraps an encode function: the first batch waits until `release()`, and every batch's size is kept."""

    def __init__(self, encode: Callable[[list[str]], list[SparseVector]]) -> None:
        self.encode = encode
        self.started = threading.Event()
        self.opened = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, texts: list[str]) -> list[SparseVector]:
        self.sizes.append(len(texts))
        self.started.set()
        self.opened.wait(timeout=60)
        return self.encode(texts)

    def release(self) -> None:
        self.opened.set()


def _texts() -> list[str]:
    docs = demo_documents()
    return [d["title"] for d in docs] + [d["text"][: 40 + 7 * i] for i, d in enumerate(docs)]


def test_every_result_is_bit_identical_to_encoding_alone(encoder: SpladeEncoder) -> None:
    texts = _texts()
    alone = [encoder.encode_queries([t])[0].to_dict() for t in texts]
    batcher: Batcher[SparseVector] = Batcher(encoder.encode_queries, BatchSettings(max_batch=16, slots=2))
    try:
        with ThreadPoolExecutor(64) as pool:
            batched = list(pool.map(lambda t: batcher.submit([t]).result().pop().to_dict(), texts))
    finally:
        batcher.close()
    assert batched == alone  # == on floats: bit for bit


def test_submissions_waiting_for_a_busy_slot_run_as_one_batch(encoder: SpladeEncoder) -> None:
    gate = Gate(encoder.encode_queries)
    batcher = Batcher(gate, BatchSettings(max_batch=8, slots=1))
    texts = _texts()[:12]
    first = batcher.submit(texts[:1])
    assert gate.started.wait(timeout=60)
    waiting = [batcher.submit([t]) for t in texts[1:]]  # 11 texts wait while the first batch runs
    assert batcher.depth == 11
    gate.release()
    results = [first.result()] + [f.result() for f in waiting]
    batcher.close()
    assert gate.sizes == [1, 8, 3]  # the waiting texts ran as full batches of max_batch, in submission order
    assert [r[0].to_dict() for r in results] == [v.to_dict() for v in encoder.encode_queries(texts)]


def test_a_full_queue_refuses_and_what_was_accepted_still_runs(encoder: SpladeEncoder) -> None:
    gate = Gate(encoder.encode_queries)
    batcher = Batcher(gate, BatchSettings(max_batch=32, max_queue=4, slots=1))
    running = batcher.submit(["heart"])
    assert gate.started.wait(timeout=60)
    queued = batcher.submit(["sleep", "rain", "wind", "sun"])
    with pytest.raises(QueueFullError, match=r"4 texts are waiting \(max_queue 4\)"):
        batcher.submit(["one more"])
    gate.release()
    assert len(running.result()) == 1 and len(queued.result()) == 4
    assert batcher.submit(["accepted again"]).result()[0]  # the queue drained
    batcher.close()


def test_close_finishes_queued_batches_then_refuses(encoder: SpladeEncoder) -> None:
    gate = Gate(encoder.encode_queries)
    batcher = Batcher(gate, BatchSettings(slots=1))
    running = batcher.submit(["heart"])
    assert gate.started.wait(timeout=60)
    queued = batcher.submit(["sleep", "rain"])
    closing = threading.Thread(target=batcher.close)
    closing.start()
    gate.release()
    closing.join(timeout=60)
    assert not closing.is_alive()
    assert running.done() and queued.done() and len(queued.result()) == 2
    with pytest.raises(BatcherClosedError):
        batcher.submit(["late"])


def test_an_error_reaches_every_caller_of_its_batch() -> None:
    def broken(texts: list[str]) -> list[int]:
        raise RuntimeError(f"failed on {len(texts)} texts")

    batcher = Batcher(broken, BatchSettings(slots=1))
    with pytest.raises(RuntimeError, match="failed on 1 texts"):
        batcher.submit(["a"]).result()
    assert batcher.submit([]).result() == []
    batcher.close()


def test_a_full_queue_is_a_503_with_retry_after(encoder: SpladeEncoder) -> None:
    settings = ServeSettings(batching=BatchSettings(max_queue=1, slots=1))
    app = build_app(encoder, ConnectionSettings(urls=("http://127.0.0.1:9",)), settings)
    batched = app.state.service.batched
    gate = Gate(encoder.encode_queries)
    batched.batchers["query"].encode = gate  # hold the running batch open
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/encode", json={"texts": ["heart"]})
        assert gate.started.wait(timeout=60)
        queued = pool.submit(client.post, "/encode", json={"texts": ["sleep"]})
        while batched.depth < 1:  # the second request is in the queue
            threading.Event().wait(0.01)
        refused = client.post("/encode", json={"texts": ["rain"]})
        gate.release()
        assert running.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"].startswith("the encoder queue is full (1 texts are waiting (max_queue 1))")


def test_length_groups_split_where_padding_costs_more_than_a_run() -> None:
    assert length_groups([5, 5, 6, 5], run_cost=16) == [[0, 1, 3, 2]]  # one row of padding each: one run
    assert length_groups([4, 30, 5, 31], run_cost=16) == [[0, 2], [1, 3]]  # 2 x 25 rows would cost more
    assert length_groups([], run_cost=16) == []


def test_the_service_encoder_gives_what_encoding_alone_gives(encoder: SpladeEncoder) -> None:
    texts = _texts()
    batched = BatchedEncoder(encoder, BatchSettings(max_batch=64, slots=2))
    try:
        with ThreadPoolExecutor(64) as pool:
            queries = list(pool.map(lambda t: batched.submit([t], "query").result()[0].to_dict(), texts))
        documents = batched.submit(texts[:32], "document").result()
    finally:
        batched.close()
    assert queries == [encoder.encode_queries([t])[0].to_dict() for t in texts]
    assert [v.to_dict() for v in documents] == [encoder.encode_documents([t])[0].to_dict() for t in texts[:32]]
