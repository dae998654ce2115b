from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from splade_os.errors import InputError
from splade_os.evaluate import compute_metrics, exact_run, load_beir
from splade_os.vectors import SparseVector


def _write_dataset(root: Path) -> None:
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(4)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": "q1", "text": "one"}, {"_id": "q2", "text": "two"}, {"_id": "q3", "text": "unjudged"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t1\n")


def test_load_beir_keeps_only_judged_queries(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    dataset = load_beir(tmp_path)
    assert dataset.queries == {"q1": "one", "q2": "two"}
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}


def test_load_beir_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corpus.jsonl is missing"):
        load_beir(tmp_path)


def test_metrics_match_a_hand_computation() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}
    run = {"q1": {"d0": 3.0, "d1": 2.0}, "q2": {"d3": 5.0, "d2": 4.0}}
    metrics = compute_metrics(qrels, run)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    # trec_eval's nDCG uses the relevance grade itself as the gain (not 2^rel - 1).
    ideal_q2 = 2 / math.log2(2) + 1 / math.log2(3)
    ndcg_q2 = (1 / math.log2(2) + 2 / math.log2(3)) / ideal_q2
    assert metrics["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert metrics["RR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["R@100"] == pytest.approx(1.0)


def test_a_query_without_hits_counts_as_zero() -> None:
    metrics = compute_metrics({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": {"d1": 1.0}})
    assert metrics["nDCG@10"] == pytest.approx(0.5)


def test_exact_run_is_the_brute_force_dot_product() -> None:
    docs = [("a", SparseVector({"x": 1.0, "y": 2.0})), ("b", SparseVector({"y": 3.0})), ("c", SparseVector({"z": 1.0}))]
    run = exact_run(docs, {"q": SparseVector({"y": 1.0, "x": 0.5})}, depth=10)
    assert run == {"q": {"b": 3.0, "a": 2.5}}
    assert list(exact_run(docs, {"q": SparseVector({"y": 1.0})}, depth=1)["q"]) == ["b"]
