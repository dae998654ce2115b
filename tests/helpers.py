"""Helpers the test modules share (kept here so no test file copies another's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from conftest import delete_indices
from synthetic_corpus import DEMO_CORPUS

from splade_os.indexing import index_corpus
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


def indexed_demo(client: Any, encoder: Any, prefix: str) -> Iterator[str]:
    """For a fixture: the 42 demo documents in a fresh index named `prefix-<random>`, deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    summary = index_corpus(client, DEMO_CORPUS, index=name, encoder=encoder, replicas=0)
    assert summary.problems() == [] and summary.counters.indexed == 42
    yield name
    delete_indices(client, f"{name}*")
