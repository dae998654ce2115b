"""OpenSearch reproduces exact SPLADE scoring: a generated collection with the bundled model, against brute force.

The collection (tests/synthetic_corpus.py, fixed seed): the 42 demo documents and 558 more that recombine their
sentences, 194 queries (the demo titles and word windows from every sentence) with graded judgements. Many
documents share sentences, so many scores lie close together: exactly where storing each weight in 9 bits could
reorder a ranking. The SciFact corpus runs in `benchmarks/exactness.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import delete_indices
from opensearchpy import OpenSearch
from synthetic_corpus import write_collection

from splade_os.evaluation.evaluate import Dataset, evaluate, exact_run, load_beir, stored_vectors
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "splade-tiny"
DOCUMENTS, QUERIES = 600, 194
PRECISION = 2.0**-8


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    dataset = load_beir(write_collection(tmp_path_factory.mktemp("synthetic"), documents=DOCUMENTS))
    assert len(dataset.queries) == QUERIES
    return dataset


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(MODEL)


@pytest.fixture(scope="module")
def collection_index(engine_client: OpenSearch, collection: Dataset, encoder: SpladeEncoder) -> Iterator[str]:
    name = f"test-exactness-{uuid.uuid4().hex[:8]}"
    # evaluate() indexes the corpus because the index is missing; later calls reuse it.
    report = evaluate(collection.root, encoder, client=engine_client, index=name, modes=("splade",), exact=True)
    assert [m.mode for m in report.modes] == ["splade", "exact"]
    yield name
    delete_indices(engine_client, f"{name}*")


def test_top_10_and_scores_match_brute_force(
    engine_client: OpenSearch, collection_index: str, collection: Dataset, encoder: SpladeEncoder
) -> None:
    searcher = Searcher(collection_index, encoder, client=engine_client)
    texts = list(collection.queries.values())
    queries = dict(zip(collection.queries, encoder.encode_queries(texts), strict=True))
    vectors = list(stored_vectors(engine_client, collection_index))
    assert len(vectors) == DOCUMENTS
    exact = exact_run(vectors, queries, depth=10)
    assert len(exact) == QUERIES

    overlap = total = 0
    for query_id, text in collection.queries.items():
        hits = searcher.search(text, k=10).hits
        expected = exact[query_id]
        overlap += len({h.id for h in hits} & set(expected))
        total += len(expected)
        for hit in hits:
            if hit.id in expected:
                assert abs(hit.score - expected[hit.id]) <= PRECISION * expected[hit.id], (query_id, hit.id)
    assert total == 10 * QUERIES  # every query has ten hits, so the overlap covers whole top-10 lists
    assert overlap / total >= 0.99, f"top-10 overlap {overlap / total:.4f}"  # measured 0.997


def test_eval_metrics_through_the_engine_equal_exact_in_memory_metrics(
    engine_client: OpenSearch, collection_index: str, collection: Dataset, encoder: SpladeEncoder
) -> None:
    report = evaluate(
        collection.root,
        encoder,
        client=engine_client,
        index=collection_index,
        modes=("splade", "two-phase"),
        exact=True,
    )
    by_mode = {m.mode: m for m in report.modes}
    for metric in ("nDCG@10", "R@100", "RR@10"):
        assert by_mode["splade"].metrics[metric] == pytest.approx(by_mode["exact"].metrics[metric], abs=0.005)
        assert by_mode["two-phase"].metrics[metric] == pytest.approx(by_mode["exact"].metrics[metric], abs=0.02)
    # A working model, not an empty run: measured 0.95 here (word windows find their sentences; 0.644 on SciFact).
    assert by_mode["splade"].metrics["nDCG@10"] > 0.8
    assert by_mode["splade"].queries == QUERIES and by_mode["splade"].latency_ms_p95 >= by_mode["splade"].latency_ms_p50
