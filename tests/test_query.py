"""Query builders, dict in and dict out, checked against golden JSON (regenerate with UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from splade_os.engines import OpenSearchEngine
from splade_os.retrieval.options import SearchOptions
from splade_os.retrieval.query import (
    Pruning,
    build_bm25_query,
    build_splade_query,
    build_two_phase_query,
    build_two_step_query,
    fit_to_clause_limit,
)
from splade_os.vectors import SparseVector

GOLDEN = Path(__file__).parent / "golden"
QUERY = SparseVector({"heart": 2.5, "attack": 1.75, "u.s.": 1.0, "cause": 0.5, "the": 0.05})
FILTER = {"term": {"year": 2020}}
OPENSEARCH = OpenSearchEngine()


def _check_golden(name: str, body: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review the file"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text)


def test_exact_query_golden() -> None:
    plan = build_splade_query(QUERY, size=5, engine=OPENSEARCH)
    _check_golden("splade_exact", plan.body)
    assert plan.dropped == () and plan.notes == ()


def test_pruned_filtered_paged_query_golden() -> None:
    plan = build_splade_query(
        QUERY,
        pruning=Pruning(top_k=3, min_weight=0.1),
        filters=[FILTER],
        size=3,
        from_=6,
        source=["title"],
        engine=OPENSEARCH,
    )
    _check_golden("splade_pruned_filtered", plan.body)
    assert set(plan.terms) == {"heart", "attack", "u.s."}


def test_max_ratio_pruning() -> None:
    plan = build_splade_query(QUERY, pruning=Pruning(max_ratio=0.5), engine=OPENSEARCH)
    assert set(plan.terms) == {"heart", "attack"}


def test_two_phase_query_golden() -> None:
    plan = build_two_phase_query(QUERY, size=10, engine=OPENSEARCH)
    _check_golden("two_phase", plan.body)
    heavy = {c["rank_feature"]["field"] for c in plan.body["query"]["bool"]["should"]}
    light = {c["rank_feature"]["field"] for c in plan.body["rescore"]["query"]["rescore_query"]["bool"]["should"]}
    assert heavy | light == {f"splade.{k}" for k in QUERY.to_field()} and not heavy & light
    assert plan.body["rescore"]["window_size"] == 50


def test_two_step_query_golden() -> None:
    plan = build_two_step_query(QUERY, terms=2, size=10, engine=OPENSEARCH)
    _check_golden("two_step", plan.body)
    first = {c["rank_feature"]["field"] for c in plan.body["query"]["bool"]["should"]}
    rescore = plan.body["rescore"]["query"]
    exact = {c["rank_feature"]["field"] for c in rescore["rescore_query"]["bool"]["should"]}
    # Phase one: the query's two heaviest terms on the pruned field; the window: every term on the full field, the
    # phase-one score dropped, so a hit's score is its exact dot product.
    assert first == {"splade_first.heart", "splade_first.attack"}
    assert exact == {f"splade.{k}" for k in QUERY.to_field()}
    assert (rescore["query_weight"], rescore["rescore_query_weight"], rescore["score_mode"]) == (0.0, 1.0, "total")
    assert plan.body["rescore"]["window_size"] == 300


def test_two_step_window_holds_the_page_and_an_empty_query_is_exact() -> None:
    plan = build_two_step_query(QUERY, window=5, size=10, from_=20, engine=OPENSEARCH)
    assert plan.body["rescore"]["window_size"] == 30
    empty = build_two_step_query(SparseVector(), engine=OPENSEARCH)
    assert "rescore" not in empty.body and empty.body["track_total_hits"] is False


def test_no_request_counts_every_match_unless_asked() -> None:
    bodies = [
        build_splade_query(QUERY, engine=OPENSEARCH).body,
        build_two_phase_query(QUERY, engine=OPENSEARCH).body,
        build_two_step_query(QUERY, engine=OPENSEARCH).body,
        build_bm25_query("heart attack"),
    ]
    assert all(body["track_total_hits"] is False for body in bodies)
    asked = [
        build_splade_query(QUERY, engine=OPENSEARCH, totals=True).body,
        build_two_phase_query(QUERY, engine=OPENSEARCH, totals=True).body,
        build_two_step_query(QUERY, engine=OPENSEARCH, totals=True).body,
        build_bm25_query("heart attack", totals=True),
    ]
    assert not any("track_total_hits" in body for body in asked)


def test_bm25_query_golden() -> None:
    _check_golden("bm25", build_bm25_query("heart attack", filters=[FILTER], size=10))


def test_clause_limit_keeps_the_heaviest_and_says_so() -> None:
    big = SparseVector({f"t{i}": 1.0 + i for i in range(30)})
    plan = build_splade_query(big, max_clauses=10, filters=[FILTER], engine=OPENSEARCH)
    clauses = plan.body["query"]["bool"]["should"]
    assert len(clauses) + 1 == 10  # one clause is the filter
    assert {c["rank_feature"]["boost"] for c in clauses} == {float(30 - i) for i in range(9)}
    assert len(plan.dropped) == 21 and "dropped 21" in plan.notes[0]
    with pytest.raises(ValueError, match="no room"):
        fit_to_clause_limit(big, 1, reserved=1)


def test_every_boost_is_positive_and_no_field_has_a_raw_dot() -> None:
    plan = build_splade_query(SparseVector({"u.s.": 1.0, "...": 2.0, "x": 0.0}), engine=OPENSEARCH)
    for clause in plan.body["query"]["bool"]["should"]:
        feature = clause["rank_feature"]
        assert feature["boost"] > 0 and feature["linear"] == {}
        assert feature["field"].count(".") == 1


class _FixedEncoder:
    manifest = {"name": "fixed", "sha256": "0" * 64}

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [QUERY for _ in texts]


@pytest.mark.parametrize("mode", ["splade", "bm25", "hybrid", "two-phase"])
def test_requests_of_each_search_mode_golden(mode: str) -> None:
    from splade_os.retrieval.search import _SearchLogic

    logic = _SearchLogic("docs", _FixedEncoder(), options=SearchOptions(pruning=Pruning(top_k=4)), engine=OPENSEARCH)
    prepared = logic.prepare("heart attack", 5, mode, [FILTER], explain=False)  # type: ignore[arg-type]
    _check_golden(f"requests_{mode.replace('-', '_')}", {"requests": prepared.requests})
    assert len(prepared.requests) == (2 if mode == "hybrid" else 1)
    assert all(body["track_total_hits"] is False for body in prepared.requests)


def _short(body: dict[str, Any], found: int) -> dict[str, Any]:
    return {"hits": {"hits": [{"_id": f"d{i}", "_score": 10.0 - i} for i in range(found)]}}


def test_two_phase_on_an_index_with_the_pruned_field_is_two_step_with_an_exact_fallback() -> None:
    from splade_os.retrieval.search import _SearchLogic

    logic = _SearchLogic("docs", _FixedEncoder(), options=SearchOptions(pruning=Pruning(top_k=4)), engine=OPENSEARCH)
    logic.use_stored({"first_phase": {"field": "splade_first", "top_k": 128}})
    prepared = logic.prepare("heart attack", 5, "two-phase", [FILTER], explain=False)
    _check_golden("requests_two_step", {"requests": prepared.requests})
    assert any(n.startswith("two-step:") for n in prepared.notes)
    # Phase one filled the page: nothing is sent again.
    assert logic.fall_back(prepared, [_short(prepared.requests[0], 6)]) == []
    # Phase one came back short: the exact query on the full field takes its place, once, and the notes say so.
    prepared = logic.prepare("heart attack", 5, "two-phase", [FILTER], explain=False)
    assert logic.fall_back(prepared, [_short(prepared.requests[0], 2)]) == [0]
    exact = prepared.requests[0]
    assert "rescore" not in exact and exact["size"] == 6 and exact["track_total_hits"] is False
    assert {c["rank_feature"]["field"] for c in exact["query"]["bool"]["should"]} <= {
        f"splade.{k}" for k in QUERY.to_field()
    }
    assert "fewer than asked for" in prepared.notes[-1]
    assert logic.fall_back(prepared, [_short(exact, 2)]) == []


def test_an_index_without_the_pruned_field_keeps_two_phase() -> None:
    from splade_os.retrieval.search import _SearchLogic

    logic = _SearchLogic("docs", _FixedEncoder(), engine=OPENSEARCH)
    logic.use_stored({"first_phase": {"field": "other", "top_k": 128}})
    prepared = logic.prepare("heart attack", 5, "two-phase", None, explain=False)
    assert logic.first_phase_k is None
    # Phase one on the full field; should it find fewer hits than the page, exact search answers instead.
    assert list(prepared.fallbacks) == [0] and "rescore" not in prepared.fallbacks[0]
    assert prepared.requests[0]["rescore"]["query"]["query_weight"] == 1.0
