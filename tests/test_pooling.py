"""SPLADE pooling as plain numpy: the reference the exported graph is checked against."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from splade_os.model.pooling import splade_pool, splade_pool_max_first


def test_hand_computed_weights() -> None:
    # One text, three tokens (the last is padding), vocabulary of four.
    logits = np.array([[[1.0, -2.0, 0.0, 3.0], [2.0, -1.0, 0.5, -4.0], [9.0, 9.0, 9.0, 9.0]]])
    mask = np.array([[1, 1, 0]])
    expected = np.log1p(np.array([[2.0, 0.0, 0.5, 3.0]]))
    np.testing.assert_allclose(splade_pool(logits, mask), expected, rtol=1e-6)
    np.testing.assert_allclose(splade_pool_max_first(logits, mask), expected, rtol=1e-6)


def test_padding_never_contributes_even_with_huge_logits() -> None:
    logits = np.full((2, 4, 3), -1.0, dtype=np.float32)
    logits[:, 2:, :] = 1e6  # padded positions
    mask = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    assert not splade_pool(logits, mask).any()


def test_fully_masked_row_is_zero_not_nan() -> None:
    weights = splade_pool(np.ones((1, 2, 5)), np.zeros((1, 2)))
    assert weights.dtype == np.float32
    assert not weights.any()


def test_no_tokens_gives_zero_vector() -> None:
    assert splade_pool(np.zeros((3, 0, 7)), np.zeros((3, 0))).shape == (3, 7)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5)])
def test_wrong_rank_is_a_clear_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"logits must be \[batch, tokens, vocab\]"):
        splade_pool(np.zeros(shape), np.ones(shape[:2]))


def test_mask_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="attention_mask must be"):
        splade_pool(np.zeros((2, 3, 4)), np.ones((2, 4)))


@settings(max_examples=60, deadline=None)
@given(
    logits=arrays(np.float32, (3, 5, 6), elements=st.floats(-50, 50, width=32)),
    mask=arrays(np.int64, (3, 5), elements=st.integers(0, 1)),
)
def test_max_first_equals_splade_order(logits: np.ndarray, mask: np.ndarray) -> None:
    # The ONNX graph reduces first and applies log(1 + relu) last; monotonicity makes that exact.
    a, b = splade_pool(logits, mask), splade_pool_max_first(logits, mask)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert (a >= 0).all()
    assert not a[mask.sum(axis=1) == 0].any()


@settings(max_examples=30, deadline=None)
@given(
    logits=arrays(np.float32, (2, 4, 5), elements=st.floats(-50, 50, width=32)),
    mask=arrays(np.int64, (2, 4), elements=st.integers(0, 1)),
)
def test_pooling_in_the_logits_own_memory_gives_the_same_weights(logits: np.ndarray, mask: np.ndarray) -> None:
    expected = splade_pool(logits, mask)
    kept = logits.copy()
    np.testing.assert_allclose(splade_pool_max_first(logits, mask), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(logits, kept)  # without overwrite the caller's array is left as it was
    np.testing.assert_allclose(splade_pool_max_first(logits, mask, overwrite=True), expected, rtol=1e-6, atol=1e-7)
