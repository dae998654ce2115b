"""Client-side fusion of ranked lists (BM25 and SPLADE), so hybrid search needs no cluster plugin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Ranking = Sequence[tuple[str, float]]  # (doc id, score), best first

RRF_K = 60  # the constant of Cormack et al. (2009), used by most engines' RRF


def reciprocal_rank_fusion(
    rankings: Sequence[Ranking], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """sum_i w_i / (k + rank_i(d)), ranks from 1; documents missing from a list get nothing from it."""
    weights = _weights(rankings, weights)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (doc_id, _) in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return _sorted(fused)


def normalize(ranking: Ranking, method: str = "min_max") -> dict[str, float]:
    """Scores mapped to [0, 1] (`min_max`) or divided by the sum of scores (`l2` uses the Euclidean norm)."""
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    if method == "min_max":
        low, high = min(scores), max(scores)
        span = high - low
        return {d: (s - low) / span if span > 0 else 1.0 for d, s in ranking}
    if method == "l2":
        norm = sum(s * s for s in scores) ** 0.5
        return {d: s / norm if norm > 0 else 0.0 for d, s in ranking}
    raise ValueError(f"unknown normalization {method!r}: use 'min_max' or 'l2'")


def linear_fusion(
    rankings: Sequence[Ranking],
    *,
    weights: Sequence[float] | None = None,
    normalization: str = "min_max",
) -> list[tuple[str, float]]:
    """sum_i w_i * norm_i(score_i(d)) with each list normalised first; missing documents score 0 there."""
    weights = _weights(rankings, weights)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for doc_id, score in normalize(ranking, normalization).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * score
    return _sorted(fused)


def _weights(rankings: Sequence[Ranking], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} rankings")
    return [float(w) for w in weights]


def _sorted(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
