"""One SpladeEncoder shared by many threads gives exactly the serial results; close() and `with` end its pool.

A `Searcher` shares one encoder across a web server's threads and `AsyncSearcher` encodes in worker threads, so
documents and queries, long and short, split and truncated, arrive at the same encoder at the same time. A
`threading.Barrier` releases every thread into each round of calls together, so the calls overlap as much as the
machine allows; the assertions hold whatever the interleaving.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from splade_os.errors import EncoderClosedError
from splade_os.model.encoder import SpladeEncoder
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "splade-tiny"
BUNDLED_INT8 = REPO / "models" / "splade-tiny-int8"

THREADS = 8
ROUNDS = 6
# About 700 tokens: over the model's 512 positions, so a document that escaped truncation fails in onnxruntime.
SENTENCE = "Aspirin lowers the risk of a second heart attack in patients with coronary artery disease {}. "
IDF = {"heart": 3.5, "attack": 2.0, "risk": 1.25, "artery": 2.75, "disease": 0.5, "vitamin": 1.0}


def _long(n: int) -> str:
    return "".join(SENTENCE.format(n + i) for i in range(45))


def _inference_free_model(root: Path) -> Path:
    """A copy of splade-tiny whose queries are encoded inference-free (tokenizer plus idf weights)."""
    folder = root / "splade-tiny-inference-free"
    if not folder.exists():
        shutil.copytree(BUNDLED, folder)
        (folder / "idf.json").write_text(json.dumps(IDF))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["query_mode"] = "inference-free"
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


Call = tuple[str, list[str]]


def _calls(thread: int) -> list[Call]:
    """Each thread's own mix: long and short documents and queries, interleaved, different texts per thread."""
    calls: list[Call] = []
    for step in range(ROUNDS):
        n = thread * ROUNDS + step
        if (thread + step) % 2 == 0:
            calls.append(("documents", [_long(n), f"vitamin d and bone loss {n}", ""]))
        else:
            calls.append(("queries", [_long(n), f"what causes a heart attack {n}"]))
    return calls


def _run(encoder: SpladeEncoder, call: Call) -> list[SparseVector]:
    kind, texts = call
    return encoder.encode_documents(texts) if kind == "documents" else encoder.encode_queries(texts)


# Only a guard against a deadlock: a healthy run takes seconds, and nothing is asserted about time.
DEADLOCK_S = 600


def _concurrently(work: Callable[[int], object], barrier: threading.Barrier, threads: int = THREADS) -> list[object]:
    """work(i) on `threads` threads at once; each thread's return value, or the exception it raised.

    A thread that fails breaks `barrier`, so that the others stop at their next `wait()` instead of waiting for it
    forever; the first real error is then the one reported.
    """
    results: list[object] = [None] * threads

    def target(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as err:  # reported by the assertions of the caller
            results[i] = err
            barrier.abort()

    workers = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLOCK_S)
    hung = [i for i, worker in enumerate(workers) if worker.is_alive()]
    assert not hung, f"threads {hung} still running after {DEADLOCK_S} s: a deadlock"
    return results


def _first_error(results: list[object]) -> BaseException | None:
    errors = [r for r in results if isinstance(r, BaseException)]
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    found = real or errors
    return found[0] if found else None


MODELS = {
    "fp32": lambda root: BUNDLED,
    "int8": lambda root: BUNDLED_INT8,
    "inference-free": _inference_free_model,
}


@pytest.mark.parametrize("long_documents", ["split", "truncate"])
@pytest.mark.parametrize("model", list(MODELS))
def test_threads_get_exactly_the_serial_results(
    model: str, long_documents: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = MODELS[model](tmp_path_factory.getbasetemp())
    options = {"threads": 2, "max_length": 32, "long_documents": long_documents, "stride": 8}
    plan = {t: _calls(t) for t in range(THREADS)}

    with SpladeEncoder(folder, **options) as serial:  # type: ignore[arg-type]
        expected = {t: [_run(serial, call) for call in calls] for t, calls in plan.items()}
        serial_truncated = serial.truncated

    shared = SpladeEncoder(folder, **options)  # type: ignore[arg-type]
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> list[list[SparseVector]]:
        out = []
        for call in plan[t]:
            barrier.wait()  # every thread starts its next call together
            out.append(_run(shared, call))
        return out

    with shared:
        results = _concurrently(work, barrier)
    error = _first_error(results)
    assert error is None, f"a thread failed: {type(error).__name__}: {error}"
    for t in range(THREADS):
        got = results[t]
        assert isinstance(got, list)
        for step, (vectors, want) in enumerate(zip(got, expected[t], strict=True)):
            assert [v.to_dict() for v in vectors] == [w.to_dict() for w in want], f"thread {t}, call {step}"
    # Every truncated text counted once, as in the serial run.
    assert shared.truncated == serial_truncated
    # One long text per call; queries run the model (and are truncated) unless the model is inference-free.
    kinds = [kind for calls in plan.values() for kind, _ in calls]
    counted = [kind for kind in kinds if kind == "queries" or long_documents == "truncate"]
    assert serial_truncated == sum(kind == "documents" or model != "inference-free" for kind in counted)


def test_inference_free_queries_are_not_truncated_and_documents_are(tmp_path: Path) -> None:
    with SpladeEncoder(_inference_free_model(tmp_path), max_length=32) as encoder:
        # "artery" first appears after the 32nd token: only an untruncated query tokenizer sees it.
        text = "the " * 40 + "artery heart"
        [query] = encoder.encode_queries([text])
        assert query.to_dict() == {"artery": 2.75, "heart": 3.5}
        encoder.encode_documents([text])
        assert encoder.truncated == 1
        [again] = encoder.encode_queries([text])
        assert again == query


# ----------------------------------------------------------------------------------------------------------------
# close() and the context manager
# ----------------------------------------------------------------------------------------------------------------


def _pool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("splade-os-encode")}


def test_with_block_closes_the_pool_and_later_calls_raise() -> None:
    before = _pool_threads()
    with SpladeEncoder(BUNDLED, threads=2, max_length=32) as encoder:
        encoder.encode_documents([_long(0), _long(1), "short"])
        started = _pool_threads() - before
        assert started, "the encoder's workers should be running"
        assert not encoder.closed
    assert encoder.closed
    assert not any(t.is_alive() for t in started)
    for call in (encoder.encode_documents, encoder.encode_queries, encoder.encode_weights):
        with pytest.raises(EncoderClosedError, match="was closed; create a new SpladeEncoder to encode again"):
            call(["heart attack"])
    encoder.close()  # idempotent
    assert encoder.closed


@pytest.mark.parametrize("threads", [1, 2])
def test_close_is_idempotent_and_works_without_a_pool(threads: int) -> None:
    encoder = SpladeEncoder(BUNDLED, threads=threads)
    vector = encoder.encode_documents(["heart attack"])[0]
    encoder.close()
    encoder.close()
    with pytest.raises(EncoderClosedError):
        encoder.encode_documents(["heart attack"])
    with SpladeEncoder(BUNDLED, threads=threads) as fresh:
        assert fresh.encode_documents(["heart attack"])[0] == vector


def test_close_while_other_threads_encode() -> None:
    """Each call in flight when close() runs either completes with the right vectors or raises EncoderClosedError."""
    texts = [_long(i) for i in range(4)]
    with SpladeEncoder(BUNDLED, threads=2, max_length=32, long_documents="split", stride=8) as serial:
        expected = [v.to_dict() for v in serial.encode_documents(texts)]
    shared = SpladeEncoder(BUNDLED, threads=2, max_length=32, long_documents="split", stride=8)
    barrier = threading.Barrier(THREADS + 1)

    def work(i: int) -> object:
        if i == THREADS:
            barrier.wait()
            shared.close()
            return "closed"
        barrier.wait()
        outcomes: list[list[dict[str, float]] | str] = []
        for _ in range(3):
            try:
                outcomes.append([v.to_dict() for v in shared.encode_documents(texts)])
            except EncoderClosedError:
                outcomes.append("closed")
        return outcomes

    results = _concurrently(work, barrier, THREADS + 1)
    assert _first_error(results) is None, _first_error(results)
    assert results[THREADS] == "closed"
    for outcomes in results[:THREADS]:
        assert isinstance(outcomes, list), outcomes
        assert all(o == expected or o == "closed" for o in outcomes)
        if "closed" in outcomes:  # once closed, it stays closed
            assert all(o == "closed" for o in outcomes[outcomes.index("closed") :])
    with pytest.raises(EncoderClosedError):
        shared.encode_documents(texts)
