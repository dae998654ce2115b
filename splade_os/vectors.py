"""Sparse vectors and their `rank_features` field form.

OpenSearch's `rank_feature` query splits its field name at the last `.`, so a token such as `.` or `u.s.` used
as a raw key silently matches nothing. Every key that reaches the engine goes through `escape_token`, at index
time and at query time alike, and comes back through `unescape_token`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# Lucene's FeatureField rejects values below Float.MIN_NORMAL; anything smaller is dropped, never sent.
MIN_FEATURE_VALUE = 1.17549435e-38

_ESCAPES = (("%", "%25"), (".", "%2E"))


def escape_token(token: str) -> str:
    """Return the `rank_features` key for a vocabulary token (reversible, never contains a dot)."""
    for raw, escaped in _ESCAPES:
        token = token.replace(raw, escaped)
    return token


def unescape_token(key: str) -> str:
    """Inverse of `escape_token`."""
    for raw, escaped in reversed(_ESCAPES):
        key = key.replace(escaped, raw)
    return key


def _valid_weight(weight: float) -> bool:
    return math.isfinite(weight) and weight >= MIN_FEATURE_VALUE


@dataclass(frozen=True)
class SparseVector(Mapping[str, float]):
    """An immutable token -> weight map holding only finite, positive weights."""

    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {str(t): float(w) for t, w in self.weights.items() if _valid_weight(float(w))}
        object.__setattr__(self, "weights", clean)

    # Mapping interface
    def __getitem__(self, token: str) -> float:
        return self.weights[token]

    def __iter__(self) -> Iterator[str]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def __hash__(self) -> int:
        return hash(frozenset(self.weights.items()))

    @classmethod
    def from_dict(cls, weights: Mapping[str, float]) -> SparseVector:
        return cls(weights)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, float]]) -> SparseVector:
        merged: dict[str, float] = {}
        for token, weight in pairs:
            merged[token] = max(merged.get(token, 0.0), float(weight))
        return cls(merged)

    def to_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def to_field(self) -> dict[str, float]:
        """The `rank_features` field value: escaped keys, only weights the engine accepts."""
        return {escape_token(t): w for t, w in self.weights.items()}

    @classmethod
    def from_field(cls, value: Mapping[str, float]) -> SparseVector:
        return cls({unescape_token(k): float(w) for k, w in value.items()})

    def sorted_items(self) -> list[tuple[str, float]]:
        """Items by descending weight, ties broken by token so the order is deterministic."""
        return sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0]))

    def top_k(self, k: int) -> SparseVector:
        if k < 0:
            raise ValueError(f"top_k needs k >= 0, got {k}")
        return SparseVector(dict(self.sorted_items()[:k]))

    def prune(self, min_weight: float = 0.0, max_ratio: float = 0.0) -> SparseVector:
        """Drop weights below `min_weight` and below `max_ratio` x the largest weight."""
        if not self.weights:
            return self
        threshold = max(min_weight, max_ratio * max(self.weights.values()))
        return SparseVector({t: w for t, w in self.weights.items() if w >= threshold})

    def dot(self, other: Mapping[str, float]) -> float:
        small, large = (self, other) if len(self) <= len(other) else (other, self)
        return float(sum(w * large.get(t, 0.0) for t, w in small.items()))

    def contributions(self, other: Mapping[str, float]) -> list[tuple[str, float]]:
        """Per-token products with `other`, largest first: the explanation of a dot product."""
        shared = [(t, w * other[t]) for t, w in self.weights.items() if t in other]
        return sorted(shared, key=lambda kv: (-kv[1], kv[0]))

    def decode(self, limit: int | None = None) -> str:
        """A readable `token:weight` listing, heaviest first."""
        items = self.sorted_items()[: limit if limit is not None else len(self.weights)]
        return " ".join(f"{t}:{w:.2f}" for t, w in items)
