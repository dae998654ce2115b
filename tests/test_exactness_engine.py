"""OpenSearch reproduces exact SPLADE scoring on real data: a fixed SciFact subset with the bundled model.

The subset (documented so figures can be reproduced): every SciFact test query with a judgement, and the
corpus documents judged for those queries plus the first 600 lines of corpus.jsonl. The whole corpus runs in
`benchmarks/exactness.py`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from splade_os.encoder import SpladeEncoder
from splade_os.evaluate import Dataset, evaluate, exact_run, load_beir, stored_vectors
from splade_os.search import Searcher

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "splade-tiny"
FIRST_LINES = 600
PRECISION = 2.0**-8


def _subset(source: Path, target: Path) -> None:
    dataset = load_beir(source)
    judged = {doc for judgements in dataset.qrels.values() for doc in judgements}
    (target / "qrels").mkdir(parents=True)
    with (source / "corpus.jsonl").open(encoding="utf-8") as src, (target / "corpus.jsonl").open("w") as dst:
        for number, line in enumerate(src):
            if number < FIRST_LINES or json.loads(line)["_id"] in judged:
                dst.write(line)
    (target / "queries.jsonl").write_text((source / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (target / "qrels" / "test.tsv").write_text((source / "qrels" / "test.tsv").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def scifact_subset(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("scifact-subset")
    _subset(shared_dir / "data" / "scifact", root)
    return load_beir(root)


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(MODEL)


@pytest.fixture(scope="module")
def subset_index(os_client: OpenSearch, scifact_subset: Dataset, encoder: SpladeEncoder) -> Iterator[str]:
    name = f"test-exactness-{uuid.uuid4().hex[:8]}"
    # evaluate() indexes the corpus because the index is missing; later calls reuse it.
    report = evaluate(scifact_subset.root, encoder, client=os_client, index=name, modes=("splade",), exact=True)
    assert [m.mode for m in report.modes] == ["splade", "exact"]
    yield name
    os_client.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)


def test_top_10_and_scores_match_brute_force(
    os_client: OpenSearch, subset_index: str, scifact_subset: Dataset, encoder: SpladeEncoder
) -> None:
    searcher = Searcher(subset_index, encoder, client=os_client)
    texts = list(scifact_subset.queries.values())
    queries = dict(zip(scifact_subset.queries, encoder.encode_queries(texts), strict=True))
    exact = exact_run(stored_vectors(os_client, subset_index), queries, depth=10)
    assert len(exact) == 300

    overlap = total = 0
    for query_id, text in scifact_subset.queries.items():
        hits = searcher.search(text, k=10).hits
        expected = exact[query_id]
        overlap += len({h.id for h in hits} & set(expected))
        total += len(expected)
        for hit in hits:
            if hit.id in expected:
                assert abs(hit.score - expected[hit.id]) <= PRECISION * expected[hit.id], (query_id, hit.id)
    assert overlap / total >= 0.99, f"top-10 overlap {overlap / total:.4f}"


def test_eval_metrics_through_the_engine_equal_exact_in_memory_metrics(
    os_client: OpenSearch, subset_index: str, scifact_subset: Dataset, encoder: SpladeEncoder
) -> None:
    report = evaluate(
        scifact_subset.root, encoder, client=os_client, index=subset_index, modes=("splade", "two-phase"), exact=True
    )
    by_mode = {m.mode: m for m in report.modes}
    for metric in ("nDCG@10", "R@100", "RR@10"):
        assert by_mode["splade"].metrics[metric] == pytest.approx(by_mode["exact"].metrics[metric], abs=0.005)
        assert by_mode["two-phase"].metrics[metric] == pytest.approx(by_mode["exact"].metrics[metric], abs=0.02)
    assert by_mode["splade"].metrics["nDCG@10"] > 0.3  # a working model on SciFact, not an empty run
    assert by_mode["splade"].queries == 300 and by_mode["splade"].latency_ms_p95 >= by_mode["splade"].latency_ms_p50
