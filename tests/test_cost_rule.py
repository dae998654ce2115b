"""Cost-aware query pruning without a node: the df rule, what phase one sends with it, the engine's own pruning as
a phase-one option, and the settings `tune` stores and searches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from splade_os.df import DfTable, table_from_answer
from splade_os.engines import ElasticsearchEngine, OpenSearchEngine, PruningConfig
from splade_os.errors import ConfigError
from splade_os.evaluation.tuning import default_grid
from splade_os.retrieval.options import SearchOptions
from splade_os.retrieval.query import build_two_phase_query, build_two_step_query
from splade_os.retrieval.two_phase import TwoPhaseSettings, stored_settings
from splade_os.vectors import SparseVector

OPENSEARCH, ELASTICSEARCH = OpenSearchEngine(), ElasticsearchEngine(version=(9, 2, 0))
# Mean df over the 5 tokens: (900 + 10 + 10 + 40 + 40) / 5 = 200, so 5 x the mean is 1000 and 2 x is 400.
TABLE = DfTable(
    "docs-v1", {"the": 900, "heart": 10, "attack": 10, "of": 40, "cause": 40}, 1000, "2026-12-04", 6, absent=("zebra",)
)
QUERY = SparseVector({"heart": 2.0, "attack": 1.8, "the": 0.5, "of": 0.3, "cause": 1.0})


def _phase_one(body: dict[str, Any]) -> list[str]:
    return [c["rank_feature"]["field"].removeprefix("splade_first.") for c in body["query"]["bool"]["should"]]


def test_the_rule_takes_frequent_light_terms_only() -> None:
    assert TABLE.field_mean == 200.0
    assert TABLE.costly(QUERY, ratio=2.0, weight=0.4) == {"the"}  # 900 > 400 and 0.5 < 0.8
    assert TABLE.costly(QUERY, ratio=5.0, weight=0.4) == set()  # 900 is under 5 x the mean
    assert TABLE.costly(QUERY, ratio=1.0, weight=0.2) == set()  # "the" weighs 0.25 of the heaviest, not under 0.2
    assert TABLE.costly(SparseVector(), ratio=1.0, weight=1.0) == set()
    assert TABLE.tokens == ["the", "heart", "attack", "of", "cause", "zebra"]


def test_a_table_reads_back_as_it_was_stored() -> None:
    answer = {"hits": {"hits": [{"_source": TABLE.to_document()}]}}
    assert table_from_answer("docs-v1", answer) == TABLE
    assert table_from_answer("docs-v1", {"hits": {"hits": []}}) is None


def test_two_step_phase_one_leaves_the_deferred_terms_to_the_rescore() -> None:
    plain = build_two_step_query(QUERY, terms=3, engine=OPENSEARCH).body
    assert _phase_one(plain) == ["heart", "attack", "cause"]
    body = build_two_step_query(QUERY, terms=3, deferred=frozenset({"cause", "attack"}), engine=OPENSEARCH).body
    assert _phase_one(body) == ["heart", "the", "of"]
    rescored = {c["rank_feature"]["field"] for c in body["rescore"]["query"]["rescore_query"]["bool"]["should"]}
    assert rescored == {f"splade.{t}" for t in QUERY}  # every term still scored: the window's scores stay exact
    everything = build_two_step_query(QUERY, terms=2, deferred=frozenset(QUERY), engine=OPENSEARCH).body
    assert _phase_one(everything) == ["heart", "attack"]  # the rule never leaves phase one with nothing


def test_two_phase_moves_a_deferred_heavy_term_to_the_rescore() -> None:
    body = build_two_phase_query(QUERY, ratio=0.4, deferred=frozenset({"attack"}), engine=OPENSEARCH).body
    heavy = [c["rank_feature"]["field"] for c in body["query"]["bool"]["should"]]
    light = [c["rank_feature"]["field"] for c in body["rescore"]["query"]["rescore_query"]["bool"]["should"]]
    assert heavy == ["splade.heart", "splade.cause"]
    assert sorted(light) == ["splade.attack", "splade.of", "splade.the"]


def test_engine_pruning_is_elasticsearchs_pruning_config_on_phase_one_only() -> None:
    body = build_two_step_query(QUERY, terms=3, engine=ELASTICSEARCH, engine_pruning=PruningConfig()).body
    first = body["query"]["bool"]["should"][0]["sparse_vector"]
    assert first["prune"] is True and first["pruning_config"] == {
        "tokens_freq_ratio_threshold": 5.0,
        "tokens_weight_threshold": 0.4,
        "only_score_pruned_tokens": False,
    }
    rescore = body["rescore"]["query"]["rescore_query"]["bool"]["should"][0]["sparse_vector"]
    assert rescore["prune"] is False and "pruning_config" not in rescore
    with pytest.raises(ConfigError, match="no query-time token pruning"):
        build_two_step_query(QUERY, terms=3, engine=OPENSEARCH, engine_pruning=PruningConfig())


def test_settings_with_the_rule_are_checked_described_and_stored() -> None:
    settings = TwoPhaseSettings(first_terms=16, window=300, df_ratio=5.0, engine_pruning=True)
    described = "first phase top 16 terms, df rule 5x/0.4, engine pruning, window 300, rescore all terms"
    assert settings.describe() == described
    record = {
        "ratio": 0.4,
        "window": 300,
        "first_terms": 16,
        "df_ratio": 5,
        "df_weight": 0.4,
        "engine_pruning": True,
        "documents": 10,
        "tuned_at": "2026-12-04T00:00:00+00:00",
    }
    stored = stored_settings({"two_phase": record})
    assert stored is not None and stored.settings == settings
    older = stored_settings({"two_phase": {"ratio": 0.4, "documents": 10, "tuned_at": "2026-01-01"}})
    assert older is not None and older.settings.df_ratio is None and not older.settings.engine_pruning
    with pytest.raises(ConfigError, match="ratio to the mean document frequency"):
        TwoPhaseSettings(df_ratio=0.5)
    with pytest.raises(ConfigError, match="weight share"):
        TwoPhaseSettings(df_ratio=5.0, df_weight=0.0)


def test_tunes_grid_tries_the_rule_and_the_engines_pruning_beside_each_plain_setting() -> None:
    plain = default_grid(10, two_step=True)
    full = default_grid(10, two_step=True, df_rule=True, engine_pruning=True)
    assert len(full) == 3 * len(plain) and len(set(full)) == len(full)
    assert {s.df_ratio for s in full} == {None, 5.0} and {s.engine_pruning for s in full} == {False, True}
    assert max(s.window or 0 for s in plain) == 1000  # 100 x k: a million documents need deep windows


def test_a_searcher_refuses_a_given_rule_without_a_table_and_drops_a_stored_one() -> None:
    from splade_os.retrieval.search import _SearchLogic

    class Encoder:
        manifest: dict[str, Any] = {}

        def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
            return [QUERY for _ in texts]

    meta = {"first_phase": {"field": "splade_first", "top_k": 128}}
    given = _SearchLogic("docs", Encoder(), SearchOptions(two_phase=TwoPhaseSettings(df_ratio=2.0)), engine=OPENSEARCH)
    given.use_stored(meta)
    with pytest.raises(ConfigError, match="has no df table for the cost rule: run `splade-os df docs`"):
        given.use_df(None)
    given.use_df(TABLE)
    first = _phase_one(given.prepare("q", 10, "two-phase", None, explain=False).requests[0])
    assert first == ["heart", "attack", "cause", "of"]  # "the" left to the rescore
    record = {"ratio": 0.4, "df_ratio": 2.0, "documents": 10, "tuned_at": "2026-12-04"}
    stored = _SearchLogic("docs", Encoder(), engine=OPENSEARCH)
    stored.use_stored({**meta, "two_phase": record})
    assert stored.wants_df
    stored.use_df(None)
    prepared = stored.prepare("q", 10, "two-phase", None, explain=False)
    assert "its df rule is off" in prepared.notes[-1] and "the" in _phase_one(prepared.requests[0])
