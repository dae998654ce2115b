"""The core idea, proven against a real node: linear rank_feature clauses score the exact dot product."""

from __future__ import annotations

import pytest
from helpers import RELATIVE_PRECISION
from opensearchpy import OpenSearch, RequestError

from splade_os.engines import OpenSearchEngine
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.retrieval.query import build_splade_query
from splade_os.vectors import SparseVector

pytestmark = [pytest.mark.engine, pytest.mark.opensearch_only]

# Tokens that trip naive stores: dots (the rank_feature query splits at the last one), sub-words, unused
# slots, non-ASCII.
VOCAB = [".", "u.s.", "##s", "[unused0]", "café", "heart", "attack", "cause", "disease", "%"]
OPENSEARCH = OpenSearchEngine()  # rank_features is OpenSearch's field


def _index(client: OpenSearch, index: str, fields: list[dict[str, float]]) -> None:
    client.indices.create(index=index, body=index_body(replicas=0, engine=OPENSEARCH))
    for i, field_value in enumerate(fields):
        client.index(index=index, id=str(i), body={VECTOR_FIELD: field_value})
    client.indices.refresh(index=index)


def _hits(client: OpenSearch, index: str, body: dict) -> list[tuple[str, float]]:
    response = client.search(index=index, body=body)
    return [(h["_id"], h["_score"]) for h in response["hits"]["hits"]]


def test_raw_dotted_keys_match_nothing_and_escaped_keys_match(engine_client: OpenSearch, index_name: str) -> None:
    tricky = {".": 1.0, "u.s.": 2.0, "##s": 0.5, "[unused0]": 0.25, "café": 3.0}
    _index(engine_client, index_name, [dict(tricky), SparseVector(tricky).to_field()])  # doc 0 raw, doc 1 escaped

    for token, weight in tricky.items():
        query = SparseVector({token: 1.0})
        escaped_hits = _hits(engine_client, index_name, build_splade_query(query, engine=OPENSEARCH).body)
        raw_clause = {"rank_feature": {"field": f"{VECTOR_FIELD}.{token}", "linear": {}, "boost": 1.0}}
        raw_hits = _hits(engine_client, index_name, {"query": {"bool": {"should": [raw_clause]}}})
        if "." in token:
            assert raw_hits == [], f"raw key {token!r} should silently match nothing"
            assert [d for d, _ in escaped_hits] == ["1"]
        else:
            assert sorted(d for d, _ in raw_hits) == ["0", "1"]
            assert sorted(d for d, _ in escaped_hits) == ["0", "1"]
        score = dict(escaped_hits)["1"]
        assert abs(score - weight) <= RELATIVE_PRECISION * weight


def test_a_non_positive_weight_would_reject_the_document(engine_client: OpenSearch, index_name: str) -> None:
    """Why the value type drops them: the engine refuses the whole document over one zero weight."""
    engine_client.indices.create(index=index_name, body=index_body(replicas=0, engine=OPENSEARCH))
    with pytest.raises(RequestError) as refused:
        engine_client.index(index=index_name, id="bad", body={VECTOR_FIELD: {"heart": 0.0, "attack": 1.0}})
    assert (refused.value.status_code, refused.value.error) == (400, "mapper_parsing_exception")
    info = refused.value.info
    assert isinstance(info, dict), info  # the engine's JSON error body
    cause = info["error"]["caused_by"]
    assert cause["type"] == "illegal_argument_exception"
    assert cause["reason"].startswith("featureValue must be a positive normal float, got: 0.0 for feature heart")
    assert not engine_client.exists(index=index_name, id="bad")  # the whole document, "attack" included, is refused
    vector = SparseVector({"heart": 0.0, "attack": 1.0, "cause": -2.0})
    engine_client.index(index=index_name, id="good", body={VECTOR_FIELD: vector.to_field()}, refresh=True)
    stored = engine_client.get(index=index_name, id="good")["_source"][VECTOR_FIELD]
    assert stored == {"attack": 1.0}
