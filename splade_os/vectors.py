"""Sparse vectors and their `rank_features` field form.

OpenSearch's `rank_feature` query splits its field name at the last `.`, so a token such as `.` or `u.s.` used
as a raw key silently matches nothing. Every key that reaches the engine goes through `escape_token`, at index
time and at query time alike, and comes back through `unescape_token`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Lucene's FeatureField rejects values below Float.MIN_NORMAL; anything smaller is dropped, never sent.
MIN_FEATURE_VALUE = 1.17549435e-38
# Weights are stored as 32-bit floats: a larger one overflows to infinity, which both engines refuse.
MAX_FEATURE_VALUE = 3.4028234663852886e38
# Lucene refuses a term (a vector key, as the engine writes it) longer than this in UTF-8.
MAX_KEY_BYTES = 32766

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


def vector_problem(value: Any) -> str | None:
    """Why a vector made elsewhere (`{token: weight}` as read from JSON) cannot be indexed as it is; None if it can.

    The encoder drops weights the engines refuse because a model never makes useful ones; a user's vector is kept
    whole or refused with the reason, never silently changed.
    """
    if not isinstance(value, Mapping):
        return f"a JSON object of token: weight, got {_json_type(value)}"
    for token, weight in value.items():
        if not isinstance(token, str) or not token:
            return "an empty token"
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return f"token {token[:50]!r} has a weight that is not a number ({_json_type(weight)})"
        try:
            weight = float(weight)
        except OverflowError:  # a JSON integer past the range of a float
            weight = math.inf
        if not math.isfinite(weight):
            return f"token {token[:50]!r} has the weight {weight}: weights must be finite"
        if weight <= 0:
            return f"token {token[:50]!r} has the weight {weight}: weights must be positive (leave the token out)"
        if weight < MIN_FEATURE_VALUE or weight > MAX_FEATURE_VALUE:
            return (
                f"token {token[:50]!r} has the weight {weight}, outside what a 32-bit float stores "
                f"({MIN_FEATURE_VALUE:.3g} to {MAX_FEATURE_VALUE:.3g})"
            )
        if not valid_unicode(token):
            return f"token {token[:50]!r} is not valid Unicode (a lone surrogate escape)"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return next((n for kind, n in names.items() if isinstance(value, kind)), "a number")


def valid_unicode(value: str) -> bool:
    # A JSON `\ud800` escape decodes to a lone surrogate that the tokenizer and the engines both reject.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def long_key(field_value: Mapping[str, float]) -> str | None:
    """The first key of a vector field value (keys as the engine writes them) that is too long for the engine."""
    return next((key for key in field_value if len(key.encode("utf-8")) > MAX_KEY_BYTES), None)


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
