"""On either engine, the vector field scores the exact SPLADE dot product and ranks as brute force does, with the
awkward tokens a WordPiece vocabulary holds (dots, percent signs, unused slots, accents)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from helpers import RELATIVE_PRECISION, random_docs

from splade_os.engines import Engine
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.retrieval.query import build_splade_query
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

VOCAB = [".", "u.s.", "##s", "[unused0]", "café", "heart", "attack", "cause", "disease", "%", "a.b.c"]


def test_scores_equal_the_dot_product_and_ranking_equals_brute_force(
    engine_client: Any, engine: Engine, index_name: str
) -> None:
    docs = random_docs(VOCAB, 60)
    engine_client.indices.create(index=index_name, body=index_body(replicas=0, engine=engine, analyzer="standard"))
    for i, doc in enumerate(docs):
        engine_client.index(index=index_name, id=str(i), body={VECTOR_FIELD: engine.to_field(doc)})
    engine_client.indices.refresh(index=index_name)
    matrix = np.array([[d.get(t, 0.0) for t in VOCAB] for d in docs])
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        query = SparseVector({t: float(w) for t, w in zip(VOCAB, rng.uniform(0.05, 2.0, len(VOCAB)), strict=True)})
        expected = matrix @ np.array([query[t] for t in VOCAB])
        body = build_splade_query(query, size=len(docs), engine=engine).body
        hits = engine_client.search(index=index_name, body=body)["hits"]["hits"]
        assert len(hits) == int((expected > 0).sum())
        for hit in hits:
            assert hit["_score"] == pytest.approx(expected[int(hit["_id"])], rel=RELATIVE_PRECISION)
        # The same ranking as brute force, but for swaps between scores closer than the stored precision.
        order = [int(h["_id"]) for h in hits]
        assert all(expected[a] >= expected[b] * (1 - 2 * RELATIVE_PRECISION) for a, b in pairwise(order))
