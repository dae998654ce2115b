"""The same idea on Elasticsearch, against a real node: the `sparse_vector` query scores the exact dot product.

Dotted tokens and `%` need no escaping here (they do on OpenSearch: tests/test_rank_features_engine.py), query-token
pruning is off in the mapping and in every query, and the stored vector comes back for explanations.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import RELATIVE_PRECISION, random_docs

from splade_os.engines import Engine
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.retrieval.query import build_splade_query, build_two_phase_query
from splade_os.retrieval.search import explain
from splade_os.vectors import SparseVector

pytestmark = [pytest.mark.engine, pytest.mark.elasticsearch_only]

VOCAB = [".", "u.s.", "##s", "[unused0]", "café", "heart", "attack", "cause", "disease", "%", "a.b.c"]


def _index(client: Any, engine: Engine, index: str, docs: list[SparseVector]) -> None:
    client.indices.create(index=index, body=index_body(replicas=0, engine=engine, analyzer="standard"))
    for i, doc in enumerate(docs):
        client.index(index=index, id=str(i), body={VECTOR_FIELD: engine.to_field(doc)})
    client.indices.refresh(index=index)


def _hits(client: Any, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.search(index=index, body=body)["hits"]["hits"])


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
    _index(engine_client, engine, index_name, random_docs(VOCAB, 5))
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
