"""Explanations: which tokens a hit shares with the query and what each adds to its score, and the document
vectors an index without vectors in `_source` has to rebuild for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splade_os.engines import Engine
from splade_os.vectors import SparseVector


def explain(query: SparseVector, document_field: Mapping[str, float], engine: Engine) -> list[tuple[str, float]]:
    """The tokens a hit shares with the query and their contributions q x d, largest first."""
    return query.contributions(engine.from_field(document_field))


def expansion_terms(encoder: object, text: str, vector: SparseVector) -> frozenset[str]:
    """The terms of `vector` that the query text's own tokens do not contain (needs the encoder's tokenizer)."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None or not vector:
        return frozenset()
    return frozenset(vector) - set(tokenizer.encode(text).tokens)


def prune_like_index(vector: SparseVector, pruning: Mapping[str, Any]) -> SparseVector:
    """Apply the document pruning an index recorded in `_meta` (see `SpladeEncoder`): thresholds, then top-k."""
    pruned = vector.prune(float(pruning.get("min_weight") or 0.0), float(pruning.get("max_ratio") or 0.0))
    top_k = pruning.get("top_k")
    return pruned.top_k(int(top_k)) if top_k else pruned


def explain_hit(
    query: SparseVector, document_field: Mapping[str, float] | None, engine: Engine
) -> list[tuple[str, float]]:
    return explain(query, document_field, engine) if document_field else []
