from __future__ import annotations

import pytest

from splade_os.retrieval.fusion import linear_fusion, normalize, reciprocal_rank_fusion

BM25 = [("a", 12.0), ("b", 9.0), ("c", 3.0)]
SPLADE = [("c", 40.0), ("a", 30.0), ("d", 10.0)]


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([BM25, SPLADE], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 63)
    assert [d for d, _ in reciprocal_rank_fusion([BM25, SPLADE])] == ["a", "c", "b", "d"]


def test_rrf_weights() -> None:
    fused = reciprocal_rank_fusion([BM25, SPLADE], weights=[0.0, 1.0])
    assert [d for d, _ in fused][:3] == ["c", "a", "d"]
    with pytest.raises(ValueError, match="2 weights for 1"):
        reciprocal_rank_fusion([BM25], weights=[1, 2])


def test_min_max_and_l2_normalisation() -> None:
    assert normalize(BM25) == {"a": 1.0, "b": pytest.approx(6 / 9), "c": 0.0}
    assert normalize([("x", 5.0)]) == {"x": 1.0}
    l2 = normalize([("x", 3.0), ("y", 4.0)], "l2")
    assert l2 == {"x": pytest.approx(0.6), "y": pytest.approx(0.8)}
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(BM25, "z")


def test_linear_fusion_of_normalised_scores() -> None:
    fused = dict(linear_fusion([BM25, SPLADE], weights=[0.3, 0.7]))
    assert fused["a"] == pytest.approx(0.3 * 1.0 + 0.7 * (20 / 30))
    assert fused["c"] == pytest.approx(0.3 * 0.0 + 0.7 * 1.0)
    assert fused["d"] == pytest.approx(0.0)
    assert linear_fusion([[], []]) == []
