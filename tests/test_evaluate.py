from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.cli.evaluate import evaluate as eval_command
from splade_os.errors import InputError
from splade_os.evaluation.evaluate import compute_metrics, exact_run, load_beir
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
    # RR@10 is ir-measures' name; MS MARCO's MRR@10 is accepted too, and answered under the name asked for.
    assert compute_metrics(qrels, run, ("MRR@10",)) == {"MRR@10": metrics["RR@10"]}


def test_a_query_without_hits_counts_as_zero() -> None:
    metrics = compute_metrics({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": {"d1": 1.0}})
    assert metrics["nDCG@10"] == pytest.approx(0.5)


def test_exact_run_is_the_brute_force_dot_product() -> None:
    docs = [("a", SparseVector({"x": 1.0, "y": 2.0})), ("b", SparseVector({"y": 3.0})), ("c", SparseVector({"z": 1.0}))]
    run = exact_run(docs, {"q": SparseVector({"y": 1.0, "x": 0.5})}, depth=10)
    assert run == {"q": {"b": 3.0, "a": 2.5}}
    assert list(exact_run(docs, {"q": SparseVector({"y": 1.0})}, depth=1)["q"]) == ["b"]


# ----------------------------------------------------------------------------------------------------------------
# Malformed BEIR files: blank lines are layout, a bad line is one clear error naming the file and line
# ----------------------------------------------------------------------------------------------------------------


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n" + queries.read_text().replace("\n", "\n\n", 1) + "   \n")
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("\n" + qrels.read_text() + "\n\n")
    dataset = load_beir(tmp_path)
    assert dataset.queries == {"q1": "one", "q2": "two"}
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ('{"_id": "q1", "text": "one"}\n{"_id": "q2", "text": \n', "queries.jsonl line 2 is not valid JSON (Expecting"),
        (
            '{"_id": "q1", "text": "one"}\n\n["q2"]\n',
            'queries.jsonl line 3 is a JSON list, expected {"_id": ..., "text": ...}',
        ),
        ('{"text": "no id"}\n', "queries.jsonl line 1 has no usable _id (a string or an integer), got None"),
        ('{"_id": "q1", "text": null}\n', "queries.jsonl line 1 (query 'q1'): text must be a string, got NoneType"),
        ('{"_id": "q1", "text": "caf\xe9"}\n', "queries.jsonl line 1: invalid UTF-8 at byte 26; fix or remove it"),
    ],
)
def test_a_malformed_query_line_is_an_input_error_naming_file_and_line(
    tmp_path: Path, queries: str, message: str
) -> None:
    _write_dataset(tmp_path)
    (tmp_path / "queries.jsonl").write_bytes(queries.encode("latin-1"))
    with pytest.raises(InputError) as caught:
        load_beir(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}{os.sep}{message}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n", "line 3: the score 'high' is not an integer"),
        ("q1\td1\t1.5\n", "line 1: the score '1.5' is not an integer"),
        ("query-id\tcorpus-id\tscore\n\nq1 d1 1\n", "line 3 has 1 tab-separated field(s)"),
    ],
)
def test_a_malformed_qrels_line_is_an_input_error(tmp_path: Path, qrels: str, message: str) -> None:
    _write_dataset(tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text(qrels)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'qrels' / 'test.tsv'} {message}")):
        load_beir(tmp_path)


def test_the_eval_command_reports_a_malformed_file_in_one_line(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "one"}\n{oops\n')
    # The dataset is read before the model loads or the cluster is contacted: neither is needed to see the error.
    result = CliRunner().invoke(
        eval_command, [str(tmp_path), "--model", str(tmp_path / "no-model"), "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    expected = "line 2 is not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert result.stderr == f"Error: {tmp_path / 'queries.jsonl'} {expected}\n"
