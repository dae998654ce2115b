"""The engines' connectors of docs/serving.md, as far as a local test node allows: the request each connector's
template renders is sent to a real `splade-os serve`, the answer is read the way the engine reads it (ML Commons'
`response` list of token maps; the Elasticsearch custom service's `token_path`/`weight_path`), and the query the
engine then builds must find exactly what `Searcher` finds. The nodes have no ml-commons plugin and no inference
plugin, so the engine's own call is the one step not run here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from serve_process import Service, running_service

from splade_os.mappings import VECTOR_FIELD
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher

pytestmark = pytest.mark.engine

QUERY = "what causes a heart attack"
# The ML Commons connector's request_body and the custom service's request, with the input placeholder filled as
# each engine fills it: a JSON array of the query texts.
ML_COMMONS_BODY = '{ "inputs": ${parameters.input}, "truncate": true }'
CUSTOM_SERVICE_BODY = '{"inputs": ${input}, "truncate": true}'
TOKEN_PATH = "$.sparse_embeddings[*].embedding[*].token"
WEIGHT_PATH = "$.sparse_embeddings[*].embedding[*].weight"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, serve_index: str) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("connectors"), "--index", serve_index) as svc:
        yield svc


def _rendered(service: Service, template: str, placeholder: str, fmt: str) -> Any:
    """The answer to the request a connector's template renders for QUERY."""
    body = template.replace(placeholder, json.dumps([QUERY]))
    answer = service.post(f"/embed_sparse?format={fmt}", data=body.encode())
    assert answer.status_code == 200, answer.text
    return answer


def _expected(engine_client: Any, serve_index: str, serve_encoder: SpladeEncoder) -> list[tuple[str, float]]:
    with Searcher(serve_index, serve_encoder, client=engine_client) as searcher:
        return [(h.id, h.score) for h in searcher.search(QUERY, k=10).hits]


def _hits(answer: dict[str, Any]) -> list[tuple[str, float]]:
    hits = [(h["_id"], float(h["_score"])) for h in answer["hits"]["hits"]]
    return sorted(hits, key=lambda h: (-h[1], h[0]))


def _json_path(document: Any, path: str) -> list[Any]:
    """The subset of JSONPath the custom service's parser reads: `$.name`, `[*]`."""
    found = [document]
    for step in path.removeprefix("$").replace("[*]", ".[*]").strip(".").split("."):
        found = [item for node in found for item in node] if step == "[*]" else [node[step] for node in found]
    return found


@pytest.mark.opensearch_only
def test_an_ml_commons_connector_gets_what_neural_sparse_reads(
    service: Service, engine_client: Any, serve_index: str, serve_encoder: SpladeEncoder
) -> None:
    answer = _rendered(service, ML_COMMONS_BODY, "${parameters.input}", "opensearch")
    # A JSON array becomes the remote model's `response`: one {token: weight} map per text, keyed as the
    # rank_features field holds tokens (escaped by splade-os), which neural_sparse turns into rank_feature clauses.
    [weights] = answer.json()
    assert all(isinstance(t, str) and "." not in t and isinstance(w, float) for t, w in weights.items())
    clauses = [
        {"rank_feature": {"field": f"{VECTOR_FIELD}.{token}", "linear": {}, "boost": weight}}
        for token, weight in weights.items()
    ]
    found = engine_client.search(
        index=serve_index, body={"query": {"bool": {"should": clauses}}, "size": 11, "_source": False}
    )
    assert _hits(found)[:10] == _expected(engine_client, serve_index, serve_encoder)


@pytest.mark.elasticsearch_only
def test_a_custom_inference_service_gets_what_sparse_vector_reads(
    service: Service, engine_client: Any, serve_index: str, serve_encoder: SpladeEncoder
) -> None:
    answer = _rendered(service, CUSTOM_SERVICE_BODY, "${input}", "elasticsearch")
    tokens, weights = _json_path(answer.json(), TOKEN_PATH), _json_path(answer.json(), WEIGHT_PATH)
    assert len(tokens) == len(weights) > 0
    vector = dict(zip(tokens, weights, strict=True))
    assert vector == serve_encoder.encode_queries([QUERY])[0].to_dict()
    query = {"sparse_vector": {"field": VECTOR_FIELD, "query_vector": vector, "prune": False}}
    found = engine_client.search(index=serve_index, query=query, size=11, source=False)
    assert _hits(found)[:10] == _expected(engine_client, serve_index, serve_encoder)
