"""Re-encoding an index against a real node: every field of every document comes over unchanged under its own
name, whichever fields the vectors are encoded from; `_meta` of the new index records which fields those were,
and BM25 searches the new index as it searched the source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, state_file
from opensearchpy import OpenSearch
from synthetic_corpus import demo_documents
from test_indexing_engine import landed, write_jsonl

from splade_os import aliases
from splade_os.cli.index import index as index_command
from splade_os.engines import Engine
from splade_os.indexing import BulkOptions, LoadOptions
from splade_os.indexing.reindex import reindex
from splade_os.mappings import VECTOR_FIELD, VECTOR_FIELDS, read_index_meta
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.options import SearchOptions
from splade_os.retrieval.query import build_bm25_query
from splade_os.retrieval.search import Searcher

pytestmark = pytest.mark.engine

QUERIES = ["heart attack warning signs", "renewable electricity", "planets of other stars", "blood pressure"]
CUSTOM = ["--text-field", "body", "--title-field", "headline"]
# A mapping splade-os did not write: its own analyzer, keywords and a nested object that dynamic mapping would
# turn into a plain object (and break nested queries).
FOREIGN_MAPPING: dict[str, Any] = {
    "properties": {
        "headline": {"type": "text", "analyzer": "standard"},
        "body": {"type": "text", "analyzer": "folded"},
        "url": {"type": "keyword"},
        "lang": {"type": "keyword"},
        "meta": {"type": "nested", "properties": {"tags": {"type": "keyword"}}},
    }
}
FOREIGN_SETTINGS = {"analysis": {"analyzer": {"folded": {"tokenizer": "standard", "filter": ["lowercase"]}}}}


def documents() -> list[dict[str, Any]]:
    """The demo documents with a second text under other names, and fields of every JSON kind besides."""
    demo = demo_documents()
    docs = []
    for i, doc in enumerate(demo):
        other = demo[(i + 7) % len(demo)]
        meta = {
            "author": {"name": f"Autorin {i} é"},
            "tags": ["a", f"t{i % 4}"],
            "year": 2000 + i,
            "share": i / 7,
            "draft": i % 2 == 0,
            "note": None,
        }
        docs.append(
            {
                **doc,
                "headline": other["title"],
                "body": other["text"],
                "url": f"https://example.org/{i}",
                "lang": "en" if i % 3 else "de",
                "meta": meta,
                "empty": "",
            }
        )
    return docs


def _cli(*args: str) -> str:
    result = CliRunner().invoke(index_command, [*args, "--model", str(BUNDLED_MODEL), "--replicas", "0"])
    assert result.exit_code == 0, result.output
    return result.output


def _sources(client: OpenSearch, index: str) -> dict[str, dict[str, Any]]:
    return {i: {k: v for k, v in s.items() if k not in VECTOR_FIELDS} for i, s in landed(client, index).items()}


def _bm25(client: OpenSearch, index: str, query: str, fields: tuple[str, ...] = ("title", "text")) -> dict[str, float]:
    body = build_bm25_query(query, fields=fields, size=100, source=False)
    return {h["_id"]: h["_score"] for h in client.search(index=index, body=body)["hits"]["hits"]}


def _assert_encoded_from(
    client: OpenSearch, engine: Engine, index: str, encoder: SpladeEncoder, text: str, title: str
) -> None:
    """The new index says which fields its vectors came from, and its vectors are those fields' encoding."""
    assert read_index_meta(client, index)["encoded_from"] == {"text": text, "title": title}
    stored = landed(client, index)
    ids = sorted(stored)[:5] + (["no-body"] if "no-body" in stored else [])
    texts = [f"{stored[i].get(title) or ''} {stored[i].get(text) or ''}".strip() for i in ids]
    expected = encoder.encode_documents(texts)
    for doc_id, vector in zip(ids, expected, strict=True):
        assert engine.from_field(stored[doc_id][VECTOR_FIELD]).to_dict() == pytest.approx(vector.to_dict(), rel=1e-6)


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(BUNDLED_MODEL)


@pytest.mark.parametrize("fields", [[], CUSTOM], ids=["default-fields", "body-headline"])
def test_a_re_encode_carries_every_field_over_unchanged(
    engine_client: OpenSearch,
    engine: Engine,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encoder: SpladeEncoder,
    fields: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    source, copy = f"{index_name}-src", f"{index_name}-new"
    _cli(str(write_jsonl(tmp_path / "c.jsonl", documents())), "--index", source)
    output = _cli("--from-index", source, "--index", copy, *fields)
    assert f"verified: {copy}-v1 holds 42 documents" in output

    before = _sources(engine_client, source)
    assert len(before) == 42 and before["stroke"]["meta"]["author"]["name"] == "Autorin 1 é"
    assert _sources(engine_client, copy) == before
    text, title = ("body", "headline") if fields else ("text", "title")
    _assert_encoded_from(engine_client, engine, copy, encoder, text, title)
    # BM25 searches `title` and `text`, which came over unchanged with their analyzer: it ranks as it did.
    for query in QUERIES:
        assert _bm25(engine_client, copy, query) == pytest.approx(_bm25(engine_client, source, query), rel=1e-6)
    assert ("BM25 (bm25 and hybrid modes) searches 'title' and 'text'" in output) == bool(fields)


def test_a_re_encode_of_a_foreign_index_keeps_its_fields_and_their_mappings(
    engine_client: OpenSearch,
    engine: Engine,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encoder: SpladeEncoder,
) -> None:
    """An index splade-os did not build, with no `text` or `title`: the vectors come from `body` and `headline`,
    and a later re-encode (`reindex --from-index`) reads the same fields again without being told."""
    monkeypatch.chdir(tmp_path)
    source, copy = f"{index_name}-src", f"{index_name}-new"
    engine_client.indices.create(index=source, body={"settings": FOREIGN_SETTINGS, "mappings": FOREIGN_MAPPING})
    for doc in documents():
        body = {k: v for k, v in doc.items() if k not in ("_id", "title", "text")}
        engine_client.index(index=source, id=doc["_id"], body=body)
    # Copied too, with the vector of its headline alone.
    engine_client.index(index=source, id="no-body", body={"headline": "Heart attack", "lang": "en"})
    engine_client.indices.refresh(index=source)
    before = _sources(engine_client, source)

    output = _cli("--from-index", source, "--index", copy, *CUSTOM)
    assert f"verified: {copy}-v1 holds 43 documents" in output
    assert _sources(engine_client, copy) == before
    _assert_encoded_from(engine_client, engine, copy, encoder, "body", "headline")
    mappings = [next(iter(engine_client.indices.get_mapping(index=i).values()))["mappings"] for i in (source, copy)]
    assert mappings[0]["properties"]["meta"]["type"] == "nested"
    assert {k: mappings[1]["properties"][k] for k in mappings[0]["properties"]} == mappings[0]["properties"]
    nested = {"query": {"nested": {"path": "meta", "query": {"term": {"meta.tags": "t3"}}}}, "_source": False}
    hits = [{h["_id"] for h in engine_client.search(index=i, body=nested)["hits"]["hits"]} for i in (source, copy)]
    assert hits[0] == hits[1] and len(hits[0]) == 10

    # No `title` or `text` in these documents: BM25 on them finds nothing, on the source as on the copy; BM25 on
    # the fields the vectors came from ranks as it did on the source, and SPLADE finds the documents.
    with Searcher(
        copy,
        encoder,
        client=engine_client,
        options=SearchOptions(bm25_fields=("headline", "body")),
    ) as on_fields:
        for query in QUERIES:
            assert _bm25(engine_client, copy, query) == _bm25(engine_client, source, query) == {}
            on_source = _bm25(engine_client, source, query, ("headline", "body"))
            assert on_source and _bm25(engine_client, copy, query, ("headline", "body")) == pytest.approx(on_source)
            assert {h.id for h in on_fields.search(query, k=100, mode="bm25").hits} == set(on_source)
            assert on_fields.search(query, k=3, mode="splade").hits

    again = reindex(
        engine_client,
        copy,
        encoder,
        load=LoadOptions(replicas=0, dead_letter=tmp_path / "dl.jsonl", bulk=BulkOptions(batch_size=16)),
    )
    assert again.problems == [] and again.swapped and again.summary.index == f"{copy}-v2"
    assert again.summary.index_count == 43
    assert _sources(engine_client, copy) == before
    _assert_encoded_from(engine_client, engine, copy, encoder, "body", "headline")


def test_a_re_encode_from_a_field_no_document_has_is_refused(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _cli(str(write_jsonl(tmp_path / "c.jsonl", documents()[:3])), "--index", index_name)
    result = CliRunner().invoke(
        index_command,
        [
            "--from-index",
            index_name,
            "--index",
            f"{index_name}-new",
            "--text-field",
            "bdoy",
            "--model",
            str(BUNDLED_MODEL),
            "--replicas",
            "0",
        ],
    )
    assert result.exit_code == 1
    assert "no document of" in result.output and "'bdoy'" in result.output and "--text-field" in result.output
    assert not aliases.resolve(engine_client, f"{index_name}-new")


def test_a_re_encode_joins_array_texts_and_a_failure_is_one_failed_document_with_its_source(
    engine_client: OpenSearch,
    engine: Engine,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encoder: SpladeEncoder,
) -> None:
    monkeypatch.chdir(tmp_path)
    source, copy = f"{index_name}-src", f"{index_name}-new"
    _cli(str(write_jsonl(tmp_path / "c.jsonl", documents()[:5])), "--index", source)
    (concrete,) = aliases.resolve(engine_client, source)
    arrays = {"title": ["Heart", "attack"], "text": ["The heart muscle", "is starved of blood."], "doc_id": "arrays"}
    engine_client.index(index=concrete, id="arrays", body=arrays, refresh=True)  # what an index may really hold
    engine_client.index(index=concrete, id="number", body={"text": 5, "doc_id": "number"}, refresh=True)
    result = CliRunner().invoke(
        index_command, ["--from-index", source, "--index", copy, "--model", str(BUNDLED_MODEL), "--replicas", "0"]
    )
    assert result.exit_code == 1
    assert "read 7, indexed 6, failed 1, skipped 0" in result.output and "count mismatch" not in result.output
    assert (
        f"verified: {copy}-v1 holds 6 documents; expected read 7 - failed 1 - skipped 0 = 6, and the source "
        "held 7" in result.output
    )
    dead = state_file(engine_client, copy, "dead-letter.jsonl")
    assert result.output.strip().splitlines()[-1] == (
        f"Error: 1 documents failed; see {dead} (pass --allow-failures to accept)"
    )
    (letter,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["doc_id"] == "number" and letter["reason"] == "text field 'text' must be a string, got int"
    assert letter["record"] == {"_id": "number", "text": 5, "doc_id": "number"}  # replayable as it was
    landed_arrays = _sources(engine_client, copy)["arrays"]
    assert {k: landed_arrays[k] for k in arrays} == arrays  # stored as it was
    expected = encoder.encode_documents(["Heart attack The heart muscle is starved of blood."])[0]
    stored = engine_client.get(index=f"{copy}-v1", id="arrays")["_source"][VECTOR_FIELD]
    assert engine.from_field(stored) == pytest.approx(expected, rel=2**-8)
