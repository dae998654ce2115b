"""The engine interface without a node: request shapes, mappings, field values, and which client means which engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splade_os.engines import ElasticsearchEngine, OpenSearchEngine, is_elasticsearch, make_engine, parse_version
from splade_os.errors import ConfigError
from splade_os.mappings import index_body
from splade_os.retrieval.query import build_splade_query, build_two_phase_query
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
QUERY = SparseVector({"u.s.": 2.0, "heart": 1.0, "%": 0.1})


@pytest.mark.parametrize(
    ("engine", "readable"),
    [(OpenSearchEngine(), "index.json"), (ElasticsearchEngine(version=(9, 2, 0)), "elasticsearch.json")],
)
def test_the_readable_mappings_are_what_splade_os_creates(engine: OpenSearchEngine, readable: str) -> None:
    # A new index holds no pruned first-phase field unless asked (`index --first-phase-k`).
    body = index_body(engine=engine, analyzer="english")
    assert body == json.loads((REPO / "mappings" / readable).read_text())


def test_elasticsearch_turns_pruning_off_where_it_exists_and_keeps_vectors_in_source() -> None:
    for version, prune_option, exclude_setting in [
        ((8, 15, 0), False, False),
        ((8, 19, 21), True, False),
        ((9, 0, 0), False, False),
        ((9, 2, 0), True, True),
    ]:
        engine = ElasticsearchEngine(version=version)
        assert ("index_options" in engine.vector_mapping()) is prune_option, version
        assert ("mapping" in engine.index_settings()) is exclude_setting, version


def test_elasticsearch_requests_use_the_sparse_vector_query_without_escaping() -> None:
    engine = ElasticsearchEngine(version=(9, 2, 0))
    plan = build_splade_query(QUERY, engine=engine, filters=[{"term": {"lang": "en"}}])
    assert plan.body["query"] == {
        "bool": {
            "should": [
                {
                    "sparse_vector": {
                        "field": "splade",
                        "query_vector": {"u.s.": 2.0, "heart": 1.0, "%": 0.1},
                        "prune": False,
                    }
                }
            ],
            "filter": [{"term": {"lang": "en"}}],
            "minimum_should_match": 1,
        }
    }
    two_phase = build_two_phase_query(QUERY, ratio=0.4, engine=engine, size=10).body
    assert two_phase["query"]["bool"]["should"][0]["sparse_vector"]["query_vector"] == {"u.s.": 2.0, "heart": 1.0}
    rescore = two_phase["rescore"]
    assert rescore["query"]["rescore_query"]["bool"]["should"][0]["sparse_vector"]["query_vector"] == {"%": 0.1}
    assert rescore["window_size"] == 50 and rescore["query"]["score_mode"] == "total"
    assert build_splade_query(SparseVector(), engine=engine).body["query"] == {"match_none": {}}  # never match-all


def test_field_values_round_trip_on_each_engine() -> None:
    opensearch, elasticsearch = OpenSearchEngine(), ElasticsearchEngine()
    assert set(opensearch.to_field(QUERY)) == {"u%2Es%2E", "heart", "%25"}
    assert elasticsearch.to_field(QUERY) == QUERY.to_dict()
    for engine in (opensearch, elasticsearch):
        assert engine.from_field(engine.to_field(QUERY)) == QUERY


def test_versions_and_names() -> None:
    assert parse_version("9.2.0") == (9, 2, 0) and parse_version("8.19.21-SNAPSHOT") == (8, 19, 21)
    assert parse_version("garbage") == (0,)
    assert make_engine("elasticsearch", (8, 19)).label == "Elasticsearch 8.19"
    with pytest.raises(ConfigError, match="unknown engine 'solr'"):
        make_engine("solr", (9,))


def test_the_client_type_names_the_engine() -> None:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch

    assert is_elasticsearch(Elasticsearch("http://127.0.0.1:1")) and not is_elasticsearch(OpenSearch())
