"""Search at the edges, on a real node: deep pages against the index's `max_rescore_window`, tuning at a large k,
and a query whose every term was pruned away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BUNDLED_MODEL, delete_indices
from helpers import indexed_demo
from synthetic_corpus import DEMO_CORPUS

from splade_os.errors import InputError
from splade_os.evaluation.tuning import store, tune
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.options import SearchOptions
from splade_os.retrieval.query import NO_TERMS_NOTE, Pruning
from splade_os.retrieval.search import Searcher
from splade_os.retrieval.two_phase import TwoPhaseSettings

pytestmark = pytest.mark.engine

QUERY = "what causes a heart attack"


@pytest.fixture(scope="module")
def encoder() -> Iterator[SpladeEncoder]:
    with SpladeEncoder(BUNDLED_MODEL) as model:
        yield model


@pytest.fixture(scope="module")
def demo_index(engine_client: Any, encoder: SpladeEncoder) -> Iterator[str]:
    """The demo corpus with the pruned first-phase field (two-step search)."""
    yield from indexed_demo(engine_client, encoder, "edges", first_phase_k=128)


@pytest.fixture(scope="module")
def plain_index(engine_client: Any, encoder: SpladeEncoder) -> Iterator[str]:
    """The demo corpus without the pruned field (two-phase search on the full field)."""
    name = f"edges-plain-{uuid.uuid4().hex[:8]}"
    summary = index_corpus(
        engine_client,
        DEMO_CORPUS,
        index=name,
        encoder=encoder,
        load=LoadOptions(replicas=0, first_phase_k=0),
    )
    assert summary.problems() == []
    yield name
    delete_indices(engine_client, f"{name}*")


def _ids(result: Any) -> list[str]:
    return [h.id for h in result.hits]


@pytest.mark.parametrize("which", ["demo_index", "plain_index"])
def test_two_phase_at_k_500_and_deep_pages_stay_under_max_rescore_window(
    engine_client: Any, encoder: SpladeEncoder, request: pytest.FixtureRequest, which: str
) -> None:
    index = request.getfixturevalue(which)
    with Searcher(index, encoder, client=engine_client) as searcher:
        exact = searcher.search(QUERY, k=500)
        result = searcher.search(QUERY, k=500, mode="two-phase")  # window 30 (or 5) x 500: over 10,000 untold
        deep = searcher.search(QUERY, k=10, from_=340, mode="two-phase")
    # Every hit rescored exactly (on the full field, documents matching no heavy term are not found at all).
    assert _ids(result) == [i for i in _ids(exact) if i in set(_ids(result))] and len(result.hits) > 20
    wanted = "15,000" if which == "demo_index" else "2,500"  # 30 x k for two-step, 5 x k on the full field
    if which == "demo_index":
        cut = f"rescore window cut from {wanted} to 10,000, the index's index.max_rescore_window"
        assert any(cut in n for n in result.notes), result.notes
        assert any("cut from 10,500 to 10,000" in n for n in deep.notes), deep.notes
    assert deep.hits == []


def test_an_index_s_own_max_rescore_window_is_read_and_kept(
    engine_client: Any, encoder: SpladeEncoder, plain_index: str
) -> None:
    engine_client.indices.put_settings(index=plain_index, body={"index": {"max_rescore_window": 40}})
    try:
        with Searcher(plain_index, encoder, client=engine_client) as searcher:
            exact = searcher.search(QUERY, k=20)
            result = searcher.search(QUERY, k=20, mode="two-phase")  # 5 x 20 = 100 > 40
            page = searcher.search(QUERY, k=15, from_=20, mode="two-phase")  # never below from + size
            with pytest.raises(InputError, match=r"^hits up to 50 go past the index's index.max_rescore_window \(40\)"):
                searcher.search(QUERY, k=30, from_=20, mode="two-phase")
    finally:
        engine_client.indices.put_settings(index=plain_index, body={"index": {"max_rescore_window": None}})
    assert any("rescore window cut from 100 to 40, the index's index.max_rescore_window" in n for n in result.notes)
    assert [h.id for h in result.hits[:5]] == _ids(exact)[:5]
    # Only 23 documents match phase one: exact search fills the page instead of a short one.
    assert any("cut from 175 to 40" in n for n in page.notes) and len(page.hits) == 15
    assert "fewer than asked for: answered by exact search" in page.notes[-1]


def test_tune_at_k_101_skips_windows_over_the_cap_and_a_tuned_window_scales_with_k(
    engine_client: Any, encoder: SpladeEncoder, demo_index: str
) -> None:
    queries = {"1": QUERY, "2": "renewable electricity", "3": "how do vaccines work"}
    with Searcher(demo_index, encoder, client=engine_client) as searcher:
        result = tune(searcher, queries, k=101, repeat=1, warmup=0, target=0.5)
    windows = [t.settings.window or 0 for t in result.trials if t.settings is not None]
    assert windows and max(windows) <= 10_000 and 5 * 101 in windows
    assert any(n.startswith("skipped ") and "index.max_rescore_window (10,000)" in n for n in result.notes)
    assert result.chosen is not None and result.chosen.settings is not None
    try:
        store(engine_client, demo_index, result)
        tuned = result.chosen.settings
        with Searcher(demo_index, encoder, client=engine_client) as searcher:
            at_20 = searcher.search(QUERY, k=20, mode="two-phase")
        assert tuned.window is not None
        scaled = -(-tuned.window * 20 // 101)  # the window tuned at k 101, for a page of 20
        assert any(f"window {max(scaled, 20)}," in n for n in at_20.notes), at_20.notes
    finally:
        from splade_os.mappings import META_KEY, read_index_meta

        meta = read_index_meta(engine_client, demo_index)
        meta.pop("two_phase", None)
        for concrete in engine_client.indices.get_mapping(index=demo_index):
            engine_client.indices.put_mapping(index=concrete, body={"_meta": {META_KEY: meta}})


@pytest.mark.parametrize("mode", ["splade", "two-phase", "hybrid"])
@pytest.mark.parametrize("which", ["demo_index", "plain_index"])
def test_a_query_with_no_term_left_matches_nothing(
    engine_client: Any, encoder: SpladeEncoder, request: pytest.FixtureRequest, which: str, mode: str
) -> None:
    index = request.getfixturevalue(which)
    nothing = Pruning(min_weight=1_000.0)  # prunes every term of every query
    with Searcher(index, encoder, client=engine_client, options=SearchOptions(pruning=nothing)) as searcher:
        result = searcher.search(QUERY, k=5, mode=mode)  # type: ignore[arg-type]
        bm25 = searcher.search(QUERY, k=5, mode="bm25")
        filtered = searcher.search(QUERY, k=5, mode=mode, filter={"exists": {"field": "text"}})  # type: ignore[arg-type]
    assert NO_TERMS_NOTE in result.notes and NO_TERMS_NOTE in filtered.notes
    assert not any("answered by exact search" in n for n in result.notes)
    if mode == "hybrid":  # the BM25 side alone: no document of the SPLADE side, at any score
        assert _ids(result) == _ids(bm25) and _ids(filtered) == _ids(bm25)
    else:
        assert result.hits == [] and filtered.hits == []


def test_an_explicit_window_is_clamped_but_never_below_the_page(
    engine_client: Any, encoder: SpladeEncoder, demo_index: str
) -> None:
    settings = TwoPhaseSettings(first_terms=16, window=50_000)
    with Searcher(demo_index, encoder, client=engine_client, options=SearchOptions(two_phase=settings)) as searcher:
        result = searcher.search(QUERY, k=10, mode="two-phase")
    assert "cut from 50,000 to 10,000" in result.notes[-1] and len(result.hits) == 10
