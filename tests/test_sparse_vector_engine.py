"""The same idea on Elasticsearch, against a real node: the `sparse_vector` query scores the exact dot product.

Dotted tokens and `%` need no escaping here (they do on OpenSearch: tests/test_rank_features_engine.py), query-token
pruning is off in the mapping and in every query, and the stored vector comes back for explanations.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from splade_os.engines import Engine
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.retrieval.query import build_splade_query, build_two_phase_query
from splade_os.retrieval.search import explain
from splade_os.vectors import SparseVector

pytestmark = [pytest.mark.engine, pytest.mark.elasticsearch_only]

VOCAB = [".", "u.s.", "##s", "[unused0]", "café", "heart", "attack", "cause", "disease", "%", "a.b.c"]
RELATIVE_PRECISION = 2.0**-8  # Lucene keeps 9 significant bits of each stored feature value


def _random_docs(n: int, seed: int = 7) -> list[SparseVector]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        size = int(rng.integers(1, len(VOCAB) + 1))
        chosen = rng.choice(len(VOCAB), size=size, replace=False)
        weights = rng.uniform(-0.5, 3.0, size=size).round(3)  # zero and negative weights are dropped, never sent
        docs.append(SparseVector({VOCAB[i]: float(w) for i, w in zip(chosen, weights, strict=True)}))
    return docs


def _index(client: Any, engine: Engine, index: str, docs: list[SparseVector]) -> None:
    client.indices.create(index=index, body=index_body(replicas=0, engine=engine, analyzer="standard"))
    for i, doc in enumerate(docs):
        client.index(index=index, id=str(i), body={VECTOR_FIELD: engine.to_field(doc)})
    client.indices.refresh(index=index)


def _hits(client: Any, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.search(index=index, body=body)["hits"]["hits"])


def test_scores_equal_the_dot_product_and_ranking_equals_brute_force(
    engine_client: Any, engine: Engine, index_name: str
) -> None:
    docs = _random_docs(60)
    _index(engine_client, engine, index_name, docs)
    matrix = np.array([[d.get(t, 0.0) for t in VOCAB] for d in docs])
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        query = SparseVector({t: float(w) for t, w in zip(VOCAB, rng.uniform(0.05, 2.0, len(VOCAB)), strict=True)})
        expected = matrix @ np.array([query[t] for t in VOCAB])
        hits = _hits(engine_client, index_name, build_splade_query(query, size=len(docs), engine=engine).body)
        assert len(hits) == int((expected > 0).sum())
        for hit in hits:
            assert hit["_score"] == pytest.approx(expected[int(hit["_id"])], rel=RELATIVE_PRECISION)
        order = [int(h["_id"]) for h in hits]
        assert all(expected[a] >= expected[b] * (1 - 2 * RELATIVE_PRECISION) for a, b in pairwise(order))


@pytest.mark.parametrize("token", [".", "u.s.", "%", "a.b.c"])
def test_dotted_and_percent_tokens_round_trip_without_escaping(
    engine_client: Any, engine: Engine, index_name: str, token: str
) -> None:
    vector = SparseVector({token: 1.5, "heart": 0.5})
    assert engine.to_field(vector) == {token: 1.5, "heart": 0.5}  # stored as it is
    _index(engine_client, engine, index_name, [vector, SparseVector({"heart": 2.0})])
    hits = _hits(engine_client, index_name, build_splade_query(SparseVector({token: 2.0}), engine=engine).body)
    assert [h["_id"] for h in hits] == ["0"]
    assert hits[0]["_score"] == pytest.approx(3.0, rel=RELATIVE_PRECISION)
    stored = hits[0]["_source"][VECTOR_FIELD]  # kept in _source, also on 9.x, which leaves vectors out by default
    assert engine.from_field(stored) == vector
    assert explain(SparseVector({token: 2.0}), stored, engine) == [(token, 3.0)]


def test_query_token_pruning_is_off_in_the_mapping_and_in_every_query(
    engine_client: Any, engine: Engine, index_name: str
) -> None:
    _index(engine_client, engine, index_name, _random_docs(5))
    field = engine_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"][VECTOR_FIELD]
    assert field["type"] == "sparse_vector"
    if engine.version[:2] >= (9, 1) or (8, 19) <= engine.version[:2] < (9, 0):
        assert field["index_options"]["prune"] is False  # the default would prune ELSER-style
    query = SparseVector({"heart": 2.0, "cause": 0.1, "%": 0.01})
    for plan in (build_splade_query(query, engine=engine), build_two_phase_query(query, ratio=0.5, engine=engine)):
        clauses = plan.body["query"]["bool"]["should"]
        assert all(c["sparse_vector"]["prune"] is False for c in clauses)


def test_many_light_tokens_all_count(engine_client: Any, engine: Engine, index_name: str) -> None:
    """A frequent, light token is what the default pruning drops; here every one counts to the score."""
    common = {f"t{i}": 0.05 for i in range(40)}
    docs = [SparseVector({**common, f"rare{i}": 2.0}) for i in range(30)]
    _index(engine_client, engine, index_name, docs)
    query = SparseVector({**{t: 0.1 for t in common}, "rare3": 3.0})
    hits = _hits(engine_client, index_name, build_splade_query(query, size=30, engine=engine).body)
    assert len(hits) == 30
    for hit in hits:
        assert hit["_score"] == pytest.approx(docs[int(hit["_id"])].dot(query), rel=RELATIVE_PRECISION)
    assert hits[0]["_id"] == "3"
