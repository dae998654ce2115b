"""Helpers the test modules share (kept here so no test file copies another's)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from splade_os.vectors import SparseVector

RELATIVE_PRECISION = 2.0**-8  # Lucene keeps 9 significant bits of each stored feature value


def random_docs(vocab: Sequence[str], n: int, seed: int = 7) -> list[SparseVector]:
    """n vectors over `vocab` with some zero and negative weights: those must be dropped before indexing."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        size = int(rng.integers(1, len(vocab) + 1))
        chosen = rng.choice(len(vocab), size=size, replace=False)
        weights = rng.uniform(-0.5, 3.0, size=size).round(3)
        docs.append(SparseVector({vocab[i]: float(w) for i, w in zip(chosen, weights, strict=True)}))
    return docs
