from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splade_os.vectors import MIN_FEATURE_VALUE, SparseVector, escape_token, unescape_token

tokens = st.text(min_size=1, max_size=12)
weights = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(tokens)
def test_escape_round_trips_and_never_leaves_a_dot(token: str) -> None:
    key = escape_token(token)
    assert "." not in key
    assert unescape_token(key) == token


@given(tokens, tokens)
def test_escape_is_injective(a: str, b: str) -> None:
    if a != b:
        assert escape_token(a) != escape_token(b)


@given(st.dictionaries(tokens, weights, max_size=20))
def test_only_finite_positive_weights_survive(raw: dict[str, float]) -> None:
    vector = SparseVector(raw)
    assert all(math.isfinite(w) and w >= MIN_FEATURE_VALUE for w in vector.values())
    assert set(vector) == {t for t, w in raw.items() if math.isfinite(w) and w >= MIN_FEATURE_VALUE}
    assert SparseVector.from_field(vector.to_field()) == vector
    assert all("." not in k for k in vector.to_field())


def test_examples_of_dotted_and_special_tokens() -> None:
    vector = SparseVector({".": 1.0, "u.s.": 2.0, "##s": 0.5, "[unused0]": 0.25, "café": 3.0, "%": 1.5})
    assert vector.to_field() == {
        "%2E": 1.0,
        "u%2Es%2E": 2.0,
        "##s": 0.5,
        "[unused0]": 0.25,
        "café": 3.0,
        "%25": 1.5,
    }


def test_zero_negative_and_nan_weights_are_dropped() -> None:
    vector = SparseVector({"a": 0.0, "b": -1.0, "c": float("nan"), "d": float("inf"), "e": 1e-40, "f": 0.3})
    assert vector.to_dict() == {"f": 0.3}


def test_top_k_prune_dot_and_contributions() -> None:
    q = SparseVector({"heart": 2.0, "attack": 1.0, "the": 0.1})
    d = SparseVector({"heart": 1.5, "attack": 0.5, "cause": 1.0})
    assert q.top_k(2).to_dict() == {"heart": 2.0, "attack": 1.0}
    assert q.prune(min_weight=0.5).to_dict() == {"heart": 2.0, "attack": 1.0}
    assert q.prune(max_ratio=0.6).to_dict() == {"heart": 2.0}
    assert q.dot(d) == pytest.approx(2.0 * 1.5 + 1.0 * 0.5)
    assert q.contributions(d) == [("heart", 3.0), ("attack", 0.5)]
    assert q.decode(limit=2) == "heart:2.00 attack:1.00"
    with pytest.raises(ValueError, match="k >= 0"):
        q.top_k(-1)


def test_from_pairs_keeps_the_maximum_of_repeated_tokens() -> None:
    assert SparseVector.from_pairs([("a", 1.0), ("a", 3.0), ("b", 0.0)]).to_dict() == {"a": 3.0}
