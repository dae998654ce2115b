"""Two-step search on a real node with the bundled model: the pruned first-phase field as indexed, kept by
re-encodes, agreement with exact search, the exact fallback, and what doctor says."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, delete_indices
from helpers import assert_df_exact, assert_first_phase, index_tokens
from synthetic_corpus import write_collection

from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.df import build_df
from splade_os.doctor import OK, WARN, run_checks
from splade_os.engines import engine_for
from splade_os.errors import ConfigError
from splade_os.evaluation.tuning import default_grid, store, tune
from splade_os.indexing import LoadOptions, index_corpus, reencode_index
from splade_os.indexing.reindex import reindex
from splade_os.mappings import DEFAULT_FIRST_PHASE_K, FIRST_PHASE_FIELD, VECTOR_FIELD, read_index_meta
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.options import SearchOptions
from splade_os.retrieval.search import Searcher
from splade_os.retrieval.two_phase import TwoPhaseSettings, stored_settings
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

DEMO = BUNDLED_MODEL.parents[1] / "examples" / "demo-corpus.jsonl"


@pytest.fixture(scope="module")
def encoder() -> Iterator[SpladeEncoder]:
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        yield encoder


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_collection(tmp_path_factory.mktemp("two-step"), documents=600)


@pytest.fixture(scope="module")
def default_index(engine_client: Any, encoder: SpladeEncoder, collection: Path) -> Iterator[str]:
    """The synthetic collection indexed with the pruned field at the suggested k (`--first-phase-k 128`)."""
    name = f"test-two-step-{uuid.uuid4().hex[:8]}"
    summary = index_corpus(
        engine_client,
        collection / "corpus.jsonl",
        index=name,
        encoder=encoder,
        load=LoadOptions(
            replicas=0,
            first_phase_k=DEFAULT_FIRST_PHASE_K,
            checkpoint=collection / "cp.json",
            dead_letter=collection / "dead.jsonl",
        ),
    )
    assert summary.problems() == [] and summary.counters.indexed == 600
    yield name
    delete_indices(engine_client, f"{name}*")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _build(alias: str, tmp_path: Path, *extra: str) -> None:
    _cli(
        "index",
        str(DEMO),
        "--index",
        alias,
        "--model",
        str(BUNDLED_MODEL),
        "--replicas",
        "0",
        "--checkpoint",
        str(tmp_path / f"{alias}.cp"),
        "--dead-letter",
        str(tmp_path / f"{alias}.dead"),
        *extra,
    )


def test_two_step_agrees_with_exact_search_at_the_default_setting(
    engine_client: Any, encoder: SpladeEncoder, default_index: str, collection: Path
) -> None:
    assert assert_first_phase(engine_client, default_index, 128) == 600
    lines = (collection / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line)["text"] for line in lines]
    searcher = Searcher(default_index, encoder, client=engine_client)
    agreement = []
    for text in queries:
        exact = {h.id: h.score for h in searcher.search(text, k=10).hits}
        two_step = searcher.search(text, k=10, mode="two-phase")
        assert any(note.startswith("two-step:") for note in two_step.notes), two_step.notes
        agreement.append(len(exact.keys() & {h.id for h in two_step.hits}) / len(exact))
        for hit in two_step.hits:  # the window's scores are the exact dot products (query_weight 0)
            if hit.id in exact:
                assert hit.score == pytest.approx(exact[hit.id], rel=1e-5)
    assert len(queries) > 150 and sum(agreement) / len(agreement) >= 0.99


def test_the_cost_rule_defers_frequent_light_terms_and_keeps_the_exact_top_k(
    engine_client: Any, encoder: SpladeEncoder, default_index: str, collection: Path
) -> None:
    build_df(engine_client, default_index, index_tokens(engine_client, default_index))
    lines = (collection / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line)["text"] for line in lines]
    rule = TwoPhaseSettings(first_terms=8, df_ratio=2.0)
    searcher = Searcher(default_index, encoder, client=engine_client, options=SearchOptions(two_phase=rule))
    assert searcher.logic.df is not None and searcher.logic.df.documents == 600
    deferred, agreement = 0, []
    for text in queries:
        vector = encoder.encode_queries([text])[0]
        # Queries for which the rule changes what phase one sends: a deferred term among the 8 heaviest.
        deferred += bool(searcher.logic.df.costly(vector, 2.0, 0.4) & set(vector.top_k(8)))
        exact = {h.id: h.score for h in searcher.search(text, k=10).hits}
        found = searcher.search(text, k=10, mode="two-phase")
        assert "df rule 2x/0.4" in found.notes[-1] or "answered by exact search" in found.notes[-1], found.notes
        agreement.append(len(exact.keys() & {h.id for h in found.hits}) / len(exact))
        for hit in found.hits:
            if hit.id in exact:
                assert hit.score == pytest.approx(exact[hit.id], rel=1e-5)
    assert deferred >= 20 and sum(agreement) / len(agreement) >= 0.99, (deferred, sum(agreement) / len(agreement))


def test_the_engines_own_pruning_in_phase_one_where_the_engine_has_it(
    engine_client: Any, encoder: SpladeEncoder, default_index: str
) -> None:
    searcher = Searcher(
        default_index,
        encoder,
        client=engine_client,
        options=SearchOptions(two_phase=TwoPhaseSettings(engine_pruning=True)),
    )
    if engine_for(engine_client).name == "opensearch":
        with pytest.raises(ConfigError, match="no query-time token pruning of its own"):
            searcher.search("what causes a heart attack", k=10, mode="two-phase")
        return
    exact = {h.id: h.score for h in searcher.search("what causes a heart attack", k=10).hits}
    pruned = searcher.search("what causes a heart attack", k=10, mode="two-phase")
    assert "engine pruning" in pruned.notes[-1] and len(pruned.hits) == 10
    assert all(h.score == pytest.approx(exact[h.id], rel=1e-5) for h in pruned.hits if h.id in exact)


class _FixedQuery:
    """The bundled model's manifest with a query vector chosen by the test."""

    def __init__(self, manifest: Any, vector: SparseVector) -> None:
        self.manifest, self.vector = manifest, vector

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self.vector for _ in texts]


def test_a_query_whose_terms_are_all_pruned_away_gets_the_exact_top_k(
    engine_client: Any, encoder: SpladeEncoder, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--first-phase-k", "4")
    assert_first_phase(engine_client, index_name, 4)
    engine = engine_for(engine_client)
    full: dict[str, int] = {}
    heads: set[str] = set()
    for hit in engine.scan(engine_client, index_name, {"query": {"match_all": {}}}):
        for token in engine.from_field(hit["_source"][VECTOR_FIELD]):
            full[token] = full.get(token, 0) + 1
        heads |= set(engine.from_field(hit["_source"][FIRST_PHASE_FIELD]))
    # Terms many documents hold, none among its 4 heaviest: phase one on the pruned field finds nothing.
    pruned_away = sorted((t for t in full if t not in heads), key=lambda t: (-full[t], t))[:6]
    assert sum(full[t] for t in pruned_away) >= 12, pruned_away
    query = SparseVector({t: 1.0 + i / 10 for i, t in enumerate(pruned_away)})
    searcher = Searcher(index_name, _FixedQuery(encoder.manifest, query), client=engine_client)
    for k in (3, 10):
        exact = searcher.search("q", k=k)
        two_step = searcher.search("q", k=k, mode="two-phase")
        assert len(exact.hits) == k
        assert [(h.id, h.score) for h in two_step.hits] == [(h.id, h.score) for h in exact.hits]
        assert "answered by exact search on the full field" in two_step.notes[-1]


def test_a_lean_index_keeps_the_pruned_field_out_of_source(
    engine_client: Any, encoder: SpladeEncoder, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--no-vectors-in-source", "--first-phase-k", "16")
    for body in engine_client.indices.get_mapping(index=index_name).values():
        assert body["mappings"]["_source"] == {"excludes": [VECTOR_FIELD, FIRST_PHASE_FIELD]}
    assert read_index_meta(engine_client, index_name)["first_phase"] == {"field": FIRST_PHASE_FIELD, "top_k": 16}
    source = engine_client.get(index=index_name, id="heart-attack")["_source"]
    assert VECTOR_FIELD not in source and FIRST_PHASE_FIELD not in source
    searcher = Searcher(index_name, encoder, client=engine_client)
    result = searcher.search("what causes a heart attack", k=3, mode="two-phase")
    assert result.hits[0].id == "heart-attack" and result.notes[-1].startswith("two-step:")
    assert [h.id for h in result.hits] == [h.id for h in searcher.search("what causes a heart attack", k=3).hits]


def test_re_encode_and_reindex_keep_the_pruned_field_its_k_and_the_df_table(
    engine_client: Any, encoder: SpladeEncoder, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--first-phase-k", "8")
    build_df(engine_client, index_name, [*index_tokens(engine_client, index_name), "[unused7]"])
    copy = f"{index_name}-copy"
    summary = reencode_index(
        engine_client,
        index_name,
        index=copy,
        encoder=encoder,
        load=LoadOptions(replicas=0, dead_letter=tmp_path / "copy.dead"),
    )
    assert summary.problems() == []
    assert assert_first_phase(engine_client, copy, 8) == 42  # made from the new vectors, not copied as data
    table = assert_df_exact(engine_client, copy)  # counted on the copy, over the tokens the source's table counts
    assert table.documents == 42 and "[unused7]" in table.absent
    assert any("df table of" in note for note in summary.notes), summary.notes

    result = reindex(engine_client, index_name, encoder, load=LoadOptions(replicas=0, dead_letter=tmp_path / "r.d"))
    assert result.swapped and result.summary.index == f"{index_name}-v2"
    assert assert_first_phase(engine_client, index_name, 8) == 42
    assert assert_df_exact(engine_client, index_name).index == f"{index_name}-v2"

    # An index without the field re-encodes without it; the option adds it (what doctor's fix says to run).
    _cli(
        "index",
        "--from-index",
        index_name,
        "--index",
        f"{index_name}-none",
        "--model",
        str(BUNDLED_MODEL),
        "--replicas",
        "0",
        "--no-first-phase",
        "--dead-letter",
        str(tmp_path / "none.dead"),
    )
    assert "first_phase" not in read_index_meta(engine_client, f"{index_name}-none")
    reindex(engine_client, f"{index_name}-none", encoder, load=LoadOptions(replicas=0, dead_letter=tmp_path / "n.d"))
    mapping = engine_client.indices.get_mapping(index=f"{index_name}-none").values()
    assert all(FIRST_PHASE_FIELD not in body["mappings"]["properties"] for body in mapping)
    _cli(
        "reindex",
        f"{index_name}-none",
        "--from-index",
        "--model",
        str(BUNDLED_MODEL),
        "--replicas",
        "0",
        "--first-phase-k",
        "16",
        "--dead-letter",
        str(tmp_path / "n2.dead"),
    )
    assert assert_first_phase(engine_client, f"{index_name}-none", 16) == 42
    # A load into the index counts its table again: one more document, and its tokens.
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "extra", "title": "Heart attack", "text": "what causes a heart attack"}) + "\n")
    summary = index_corpus(
        engine_client,
        more,
        index=index_name,
        encoder=encoder,
        load=LoadOptions(replicas=0, dead_letter=tmp_path / "more.dead"),
    )
    assert summary.problems() == [] and assert_df_exact(engine_client, index_name).documents == 43


def test_doctor_says_whether_the_index_has_the_pruned_field(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--first-phase-k", "64")
    _build(f"{index_name}-plain", tmp_path, "--no-first-phase")
    settings = ConnectionSettings.from_env()
    found = {c.name: c for c in run_checks(settings, index=index_name)}["first-phase"]
    assert found.status == OK and "top 64 terms" in found.detail
    missing = {c.name: c for c in run_checks(settings, index=f"{index_name}-plain")}["first-phase"]
    assert missing.status == OK and FIRST_PHASE_FIELD in missing.detail  # the default layout is no warning
    assert f"reindex {index_name}-plain --from-index --model MODEL --first-phase-k 128" in missing.detail


def test_tune_chooses_the_pruned_fields_k_among_the_candidate_fields(
    engine_client: Any, encoder: SpladeEncoder, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--first-phase-k", "16", "--first-phase-candidates", "4,64")
    assert assert_first_phase(engine_client, index_name, 16, (4, 64)) == 42
    settings = ConnectionSettings.from_env()
    untuned = {c.name: c for c in run_checks(settings, index=index_name)}["first-phase"]
    assert untuned.status == WARN and "no tuned setting chooses among them" in untuned.detail
    assert untuned.fix == f"splade-os tune {index_name} --model MODEL"
    queries = {
        "q1": "what causes a heart attack",
        "q2": "signs of a stroke",
        "q3": "how vaccines work",
        "q4": "insulin and blood sugar",
        "q5": "high blood pressure and kidneys",
    }

    # The pruned fields' grid alone (the full field's settings, also in the default grid, are tested below).
    grid = [g for g in default_grid(10, two_step=True, pruned_ks=(16, 4, 64)) if not g.full_field]
    result = tune(
        Searcher(index_name, encoder, client=engine_client), queries, k=10, target=0.9, repeat=1, warmup=0, grid=grid
    )

    # Every two-step setting ran on every pruned field: the field's k is part of what tune chooses.
    assert {t.settings.first_phase_k for t in result.trials if t.settings} == {16, 4, 64}
    assert result.chosen is not None and result.chosen.settings is not None, result.reason
    chosen = result.chosen.settings.first_phase_k
    store(engine_client, index_name, result)
    field = FIRST_PHASE_FIELD if chosen == 16 else f"{FIRST_PHASE_FIELD}_k{chosen}"
    found = Searcher(index_name, encoder, client=engine_client).search(queries["q1"], k=3, mode="two-phase")
    assert f"on {field} (top {chosen} terms" in found.notes[-1], found.notes
    tuned = {c.name: c for c in run_checks(settings, index=index_name)}["first-phase"]
    assert tuned.status == OK and f"tune chose the top-{chosen} field" in tuned.detail
    # A setting given for a candidate field runs on it (and falls back to exact search where its phase one is short).
    on_four = Searcher(
        index_name,
        encoder,
        client=engine_client,
        options=SearchOptions(two_phase=TwoPhaseSettings(first_phase_k=4)),
    )
    hits = on_four.search(queries["q1"], k=3, mode="two-phase")
    assert any(f"on {FIRST_PHASE_FIELD}_k4 (top 4 terms" in note for note in hits.notes), hits.notes
    assert [h.id for h in hits.hits] == [h.id for h in on_four.search(queries["q1"], k=3).hits]
    on_missing = Searcher(
        index_name, encoder, client=engine_client, options=SearchOptions(two_phase=TwoPhaseSettings(first_phase_k=32))
    )
    with pytest.raises(ConfigError, match="has no pruned field of the top 32 terms"):
        on_missing.search(queries["q1"], k=3, mode="two-phase")


def test_re_encode_reindex_and_loads_keep_the_candidate_fields_until_told(
    engine_client: Any, encoder: SpladeEncoder, index_name: str, tmp_path: Path
) -> None:
    _build(index_name, tmp_path, "--first-phase-k", "8", "--first-phase-candidates", "2,32")
    copy = f"{index_name}-copy"
    summary = reencode_index(
        engine_client,
        index_name,
        index=copy,
        encoder=encoder,
        load=LoadOptions(replicas=0, dead_letter=tmp_path / "copy.dead"),
    )
    assert summary.problems() == []
    assert assert_first_phase(engine_client, copy, 8, (2, 32)) == 42  # made from the new vectors
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "extra", "title": "Heart attack", "text": "what causes a heart attack"}) + "\n")
    summary = index_corpus(
        engine_client,
        more,
        index=copy,
        encoder=encoder,
        load=LoadOptions(replicas=0, dead_letter=tmp_path / "more.dead"),
    )
    assert summary.problems() == [] and assert_first_phase(engine_client, copy, 8, (2, 32)) == 43  # in place

    result = reindex(engine_client, index_name, encoder, load=LoadOptions(replicas=0, dead_letter=tmp_path / "r.d"))
    assert result.swapped and assert_first_phase(engine_client, index_name, 8, (2, 32)) == 42
    # Told to keep one field only (what doctor says once tune has chosen): the candidates are gone.
    _cli(
        "reindex",
        index_name,
        "--from-index",
        "--model",
        str(BUNDLED_MODEL),
        "--replicas",
        "0",
        "--first-phase-k",
        "32",
        "--first-phase-candidates",
        "",
        "--dead-letter",
        str(tmp_path / "r2.dead"),
    )
    assert assert_first_phase(engine_client, index_name, 32) == 42
    mapping = engine_client.indices.get_mapping(index=index_name).values()
    names = [name for body in mapping for name in body["mappings"]["properties"]]
    assert FIRST_PHASE_FIELD in names and not any(name.startswith(f"{FIRST_PHASE_FIELD}_k") for name in names)


def test_phase_one_on_the_full_field_of_an_index_with_the_pruned_field(
    engine_client: Any, encoder: SpladeEncoder, default_index: str
) -> None:
    setting = TwoPhaseSettings(ratio=0.4, full_field=True)
    with Searcher(default_index, encoder, client=engine_client, options=SearchOptions(two_phase=setting)) as searcher:
        assert searcher.logic.first_phase_k  # the index has the pruned field
        text = "what causes a heart attack"
        found = searcher.search(text, k=5, mode="two-phase")
        assert found.notes[-1] == "two-phase: ratio 0.4, window 5 x k, all terms on the full field (given)"
        exact = searcher.search(text, k=5).hits
        assert [h.id for h in found.hits] == [h.id for h in exact]  # the rescore sums the same terms in two parts
        assert [h.score for h in found.hits] == pytest.approx([h.score for h in exact], rel=1e-6)
        body = json.dumps(searcher.logic.request_for(encoder.encode_queries([text])[0], 10, setting))
        assert FIRST_PHASE_FIELD not in body and '"window_size": 50' in body
    grid = default_grid(10, two_step=True)
    assert [g.describe() for g in grid if g.full_field] == [
        f"ratio {r}, window {w}, all terms on the full field" for r in (0.2, 0.4) for w in (50, 200)
    ]
    stored = stored_settings({"two_phase": {**asdict(setting), "documents": 42, "tuned_at": "2026-12-07"}})
    assert stored is not None and stored.settings == setting
