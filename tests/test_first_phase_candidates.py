"""Candidate pruned fields, without a node: what the mapping and `_meta` hold, which field each two-step setting's
phase one queries, how tune's grid covers every field, and the option that asks for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

from splade_os.cli import main
from splade_os.engines import ElasticsearchEngine, OpenSearchEngine
from splade_os.errors import ConfigError
from splade_os.evaluation.tuning import default_grid, pruned_ks
from splade_os.indexing import LoadOptions
from splade_os.mappings import (
    FIRST_PHASE_FIELD,
    VECTOR_FIELD,
    index_body,
    is_vector_field,
    recorded_candidates,
    vector_fields,
)
from splade_os.retrieval.search import _SearchLogic
from splade_os.retrieval.two_phase import TwoPhaseSettings, stored_settings
from splade_os.vectors import SparseVector

QUERY = SparseVector({"heart": 2.5, "attack": 1.75, "cause": 0.5})
MANIFEST = {"name": "fixed", "sha256": "0" * 64}


class _Encoder:
    manifest = MANIFEST

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [QUERY for _ in texts]


def _first_field(body: dict[str, Any]) -> set[str]:
    """The fields phase one of a two-step request scores (rank_feature clauses on OpenSearch)."""
    clauses = body["query"]["bool"]["should"]
    return {c["rank_feature"]["field"].split(".")[0] for c in clauses if "rank_feature" in c}


@pytest.mark.parametrize("engine", [OpenSearchEngine(), ElasticsearchEngine()], ids=["opensearch", "elasticsearch"])
def test_the_mapping_source_and_meta_hold_each_candidate_field(engine: Any) -> None:
    body = index_body(
        engine=engine,
        manifest=MANIFEST,
        first_phase_k=128,
        first_phase_candidates=(256, 64, 128, 64),
        vectors_in_source=False,
    )
    properties = body["mappings"]["properties"]
    pruned = [FIRST_PHASE_FIELD, f"{FIRST_PHASE_FIELD}_k64", f"{FIRST_PHASE_FIELD}_k256"]
    assert all(properties[field] == engine.vector_mapping() for field in pruned)
    assert body["mappings"]["_source"] == {"excludes": [VECTOR_FIELD, *pruned]}
    meta = body["mappings"]["_meta"]["splade_os"]
    # Sorted, once each, never the main field's own k.
    assert meta["first_phase"] == {"field": FIRST_PHASE_FIELD, "top_k": 128, "candidates": [64, 256]}
    assert recorded_candidates(meta) == (64, 256)
    plain = index_body(engine=engine, manifest=MANIFEST, first_phase_k=128)["mappings"]
    assert "candidates" not in plain["_meta"]["splade_os"]["first_phase"]
    assert not any(name.startswith(f"{FIRST_PHASE_FIELD}_k") for name in plain["properties"])


def test_each_field_holds_its_top_k_and_is_never_data() -> None:
    vector = SparseVector({f"t{i}": float(10 - i) for i in range(10)})
    fields = vector_fields(OpenSearchEngine(), vector, 4, (2, 6))
    assert set(fields) == {VECTOR_FIELD, FIRST_PHASE_FIELD, f"{FIRST_PHASE_FIELD}_k2", f"{FIRST_PHASE_FIELD}_k6"}
    assert fields[f"{FIRST_PHASE_FIELD}_k2"] == {"t0": 10.0, "t1": 9.0} and len(fields[FIRST_PHASE_FIELD]) == 4
    assert all(is_vector_field(name) for name in fields)
    assert not any(is_vector_field(name) for name in ("splade_first_kx", "splade_first_k0", "splade2", "title"))


def test_meta_written_by_hand_is_read_safely() -> None:
    record = {"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128, "candidates": [64, "x", -3, True, 128]}}
    assert recorded_candidates(record) == (64,)
    assert recorded_candidates({"first_phase": {"field": "other", "top_k": 128, "candidates": [64]}}) == ()
    assert recorded_candidates({"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128, "candidates": 64}}) == ()


def test_phase_one_queries_the_field_of_the_settings_k() -> None:
    logic = _SearchLogic("docs", _Encoder(), engine=OpenSearchEngine())
    logic.use_stored({"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128, "candidates": [16]}})
    assert _first_field(logic.request_for(QUERY, 10, TwoPhaseSettings())) == {FIRST_PHASE_FIELD}
    assert _first_field(logic.request_for(QUERY, 10, TwoPhaseSettings(first_phase_k=128))) == {FIRST_PHASE_FIELD}
    assert _first_field(logic.request_for(QUERY, 10, TwoPhaseSettings(first_phase_k=16))) == {"splade_first_k16"}
    with pytest.raises(ConfigError, match="no pruned field of the top 32 terms .*k 128, 16"):
        logic.request_for(QUERY, 10, TwoPhaseSettings(first_phase_k=32))
    # Nothing reads a pruned field back: every one stays out of the hits' `_source`.
    logic.two_phase = TwoPhaseSettings(first_phase_k=16)
    prepared = logic.prepare("heart attack", 5, "two-phase", None, explain=False)
    assert _first_field(prepared.requests[0]) == {"splade_first_k16"}
    assert "on splade_first_k16 (top 16" in prepared.notes[-1]
    assert prepared.requests[0]["_source"] == {"excludes": [VECTOR_FIELD, FIRST_PHASE_FIELD, "splade_first_k16"]}


def test_a_stored_setting_on_a_field_the_index_lost_runs_on_its_own_field() -> None:
    tuned = {"ratio": 0.4, "first_terms": 8, "first_phase_k": 16, "documents": 10, "tuned_at": "2026-12-05"}
    assert stored_settings({"two_phase": tuned}).settings.first_phase_k == 16  # type: ignore[union-attr]
    logic = _SearchLogic("docs", _Encoder(), engine=OpenSearchEngine())
    logic.use_stored({"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128}, "two_phase": tuned})
    prepared = logic.prepare("heart attack", 5, "two-phase", None, explain=False)
    assert _first_field(prepared.requests[0]) == {FIRST_PHASE_FIELD}
    assert "no top-16 field any more" in prepared.notes[-1]


def test_tunes_grid_runs_every_two_step_setting_on_every_pruned_field() -> None:
    one = [s for s in default_grid(10, two_step=True) if not s.full_field]
    every = [s for s in default_grid(10, two_step=True, df_rule=True, pruned_ks=(128, 64, 256)) if not s.full_field]
    assert len(every) == 3 * 2 * len(one) and len(set(every)) == len(every)
    assert {s.first_phase_k for s in every} == {128, 64, 256} and {s.first_phase_k for s in one} == {None}
    # The full field's settings come once (twice with the df rule) however many pruned fields there are.
    full = [s for s in default_grid(10, two_step=True, df_rule=True, pruned_ks=(128, 64, 256)) if s.full_field]
    assert len(full) == 2 * 4 and {s.first_phase_k for s in full} == {None}
    assert "on the top-64 field" in next(s for s in every if s.first_phase_k == 64).describe()
    logic = _SearchLogic("docs", _Encoder(), engine=OpenSearchEngine())
    logic.use_stored({"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128}})
    assert pruned_ks(logic) == ()  # one pruned field: the grid leaves the field to the index
    logic.use_stored({"first_phase": {"field": FIRST_PHASE_FIELD, "top_k": 128, "candidates": [64]}})
    assert pruned_ks(logic) == (128, 64)


def test_the_option_is_a_list_of_k_and_needs_the_pruned_field(tmp_path: Any) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    bad = CliRunner().invoke(main, ["index", str(corpus), "--index", "x", "--first-phase-candidates", "64,abc"])
    assert bad.exit_code == 2 and "is not a comma-separated list of k of at least 1, such as 64,256" in bad.output
    with pytest.raises(ConfigError, match="need the pruned field: leave out --no-first-phase"):
        LoadOptions(first_phase_k=0, first_phase_candidates=(64,))
    with pytest.raises(ConfigError, match="must be at least 1"):
        LoadOptions(first_phase_candidates=(0,))
    with pytest.raises(ConfigError, match="first-phase k must be at least 1"):
        TwoPhaseSettings(first_phase_k=0)
