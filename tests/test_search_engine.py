"""Search modes, explanations, encoder checks and the CLI, against a real node with the bundled model."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import indexed_demo
from opensearchpy import OpenSearch

from splade_os.cli import main
from splade_os.engines import Engine
from splade_os.engines.refusals import http_status
from splade_os.errors import EncoderMismatchError, EngineError, InputError
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.mappings import META_KEY, VECTOR_FIELD
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.query import build_splade_query, cluster_max_clauses
from splade_os.retrieval.search import AsyncSearcher, Searcher
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "splade-tiny"
GOLDEN = Path(__file__).parent / "golden"
QUERIES = ["what causes a heart attack", "renewable electricity", "U.S. founding documents", "planets of other stars"]
PRECISION = 2.0**-8


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(MODEL)


@pytest.fixture(scope="module")
def demo_index(engine_client: OpenSearch, encoder: SpladeEncoder) -> Iterator[str]:
    yield from indexed_demo(engine_client, encoder, "test-search")


@pytest.fixture(scope="module")
def searcher(engine_client: OpenSearch, demo_index: str, encoder: SpladeEncoder) -> Searcher:
    return Searcher(demo_index, encoder, client=engine_client)


def _stored(engine_client: OpenSearch, index: str, doc_id: str) -> dict[str, float]:
    return dict(engine_client.get(index=index, id=doc_id)["_source"][VECTOR_FIELD])


@pytest.mark.parametrize("text", QUERIES)
def test_splade_scores_are_exact_dot_products(
    searcher: Searcher, engine_client: OpenSearch, demo_index: str, text: str
) -> None:
    result = searcher.search(text, k=10, explain=True)
    assert result.hits, text
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    for hit in result.hits:
        explained = sum(c for _, c in hit.explanation or [])
        from_store = result.query_vector.dot(
            {k: v for k, v in _unescaped(_stored(engine_client, demo_index, hit.id)).items()}
        )
        assert explained == pytest.approx(from_store, rel=1e-9)
        assert abs(hit.score - explained) <= PRECISION * explained
        contributions = [c for _, c in hit.explanation or []]
        assert contributions == sorted(contributions, reverse=True)
        assert "splade" not in hit.source and hit.title


def _unescaped(field: dict[str, float]) -> dict[str, float]:
    from conftest import node

    return node()[1].from_field(field).to_dict()


def test_the_right_document_comes_first(searcher: Searcher) -> None:
    assert searcher.search("what causes a heart attack", k=1).hits[0].id == "heart-attack"
    assert searcher.search("U.S. founding documents", k=1).hits[0].id == "u-s-constitution"
    result = searcher.search("what causes a heart attack", k=3)
    assert {"cause", "disease"} <= result.expansions and "heart" not in result.expansions


@pytest.mark.parametrize("text", QUERIES)
def test_two_phase_scores_are_exact_and_the_head_agrees(searcher: Searcher, text: str) -> None:
    exact = {h.id: h.score for h in searcher.search(text, k=42).hits}
    two_phase = searcher.search(text, k=10, mode="two-phase")
    # Every document the rescore window holds gets its full dot product ...
    for hit in two_phase.hits:
        assert hit.score == pytest.approx(exact[hit.id], rel=1e-5)
    # ... and only documents matching no heavy token can be missed, which never happens near the top.
    assert [h.id for h in two_phase.hits][:5] == list(exact)[:5]


@pytest.mark.parametrize("text", QUERIES)
def test_hybrid_is_the_rrf_of_bm25_and_splade(searcher: Searcher, text: str) -> None:
    params = searcher.logic.hybrid
    assert (params.fusion, params.rrf_k, params.weights) == ("rrf", 60, (1.0, 1.0))
    bm25 = [h.id for h in searcher.search(text, k=params.depth, mode="bm25").hits]
    splade = [h.id for h in searcher.search(text, k=params.depth).hits]
    assert bm25 and splade, "both rankings must hold documents for the fusion to mean anything"
    # Reciprocal rank fusion written out here: each list gives a document 1 / (60 + its rank there).
    fused: dict[str, float] = {}
    for ranking in (bm25, splade):
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (60 + rank)
    hybrid = searcher.search(text, k=10, mode="hybrid").hits
    assert len({h.id for h in hybrid}) == len(hybrid) == min(10, len(fused))
    for hit in hybrid:
        assert hit.score == pytest.approx(fused[hit.id], rel=1e-12), hit.id
    # The ten best fused scores, best first (documents with equal scores may come in either order).
    assert [h.score for h in hybrid] == pytest.approx(sorted(fused.values(), reverse=True)[:10], rel=1e-12)


def test_hybrid_ranks_what_neither_list_ranks_alone(searcher: Searcher) -> None:
    text = "what causes a heart attack"
    bm25 = [h.id for h in searcher.search(text, k=5, mode="bm25").hits]
    splade = [h.id for h in searcher.search(text, k=5).hits]
    hybrid = [h.id for h in searcher.search(text, k=5, mode="hybrid").hits]
    assert hybrid[:2] == bm25[:2] == splade[:2] == ["heart-attack", "blood-pressure"]
    # Each list lifts a document into the fused top 5 that the other list's top 5 lacks.
    assert set(hybrid) - set(splade) and set(hybrid) - set(bm25), (bm25, splade, hybrid)


def test_filters_restrict_hits(searcher: Searcher) -> None:
    only = {"terms": {"doc_id": ["sleep", "coffee"]}}
    for mode in ("splade", "bm25", "two-phase", "hybrid"):
        hits = searcher.search("what causes a heart attack", k=10, mode=mode, filter=only).hits
        assert hits and {h.id for h in hits} <= {"sleep", "coffee"}, mode


def test_bad_queries_give_clear_errors(searcher: Searcher) -> None:
    with pytest.raises(InputError, match="empty"):
        searcher.search("   ")
    with pytest.raises(InputError, match="unknown mode"):
        searcher.search("heart", mode="dense")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k must be"):
        searcher.search("heart", k=0)


def test_missing_index_and_other_encoder_are_refused(
    engine_client: OpenSearch, demo_index: str, encoder: SpladeEncoder
) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        Searcher("no-such-index-here", encoder, client=engine_client)
    concrete = next(iter(engine_client.indices.get_alias(index=demo_index)))
    meta = engine_client.indices.get_mapping(index=concrete)[concrete]["mappings"]["_meta"]
    assert meta[META_KEY]["encoder"]["sha256"] == encoder.manifest["sha256"]

    class OtherEncoder:
        manifest = {"name": "other", "sha256": "f" * 64}

        def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
            return encoder.encode_queries(texts)

    with pytest.raises(EncoderMismatchError, match="built with encoder"):
        Searcher(demo_index, OtherEncoder(), client=engine_client)
    forced = Searcher(demo_index, OtherEncoder(), client=engine_client, force=True)
    assert forced.search("heart attack", k=1).hits[0].id == "heart-attack"


@pytest.mark.opensearch_only  # Elasticsearch sizes its clause limit from the heap; the setting is not dynamic
def test_clause_limit_is_read_from_the_cluster(
    engine_client: OpenSearch, demo_index: str, encoder: SpladeEncoder
) -> None:
    setting = "indices.query.bool.max_clause_count"
    engine_client.cluster.put_settings(body={"transient": {setting: 8}})
    try:
        limited = Searcher(demo_index, encoder, client=engine_client)
        result = limited.search("what causes a heart attack", k=3)
        assert len(result.query_vector) == 8 and "kept the 8 heaviest" in result.notes[0]
        assert result.hits[0].id == "heart-attack"
    finally:
        engine_client.cluster.put_settings(body={"transient": {setting: None}})


@pytest.mark.elasticsearch_only
def test_clause_limit_is_the_one_elasticsearch_enforces(engine_client: Any, demo_index: str, engine: Engine) -> None:
    # Each node computes its limit from heap and search threads; the deprecated setting still says 4096.
    limit = cluster_max_clauses(engine_client)
    terms = SparseVector({f"term{i}": 1.0 + i / 1e5 for i in range(limit + 1)})
    plan = build_splade_query(terms, max_clauses=limit, engine=engine, size=1)
    assert len(plan.terms) == limit  # the heaviest `limit` terms are kept...
    engine_client.search(index=demo_index, body=plan.body)  # ...and the cluster takes them all
    uncut = build_splade_query(terms, max_clauses=limit + 1, engine=engine, size=1)
    with pytest.raises(Exception, match="maxClauseCount is set to") as refused:
        engine_client.search(index=demo_index, body=uncut.body)  # one more it refuses
    assert http_status(refused.value) == 400


def test_tied_hits_come_back_in_id_order_however_the_documents_were_indexed(
    engine_client: OpenSearch, encoder: SpladeEncoder, tmp_path: Path, index_name: str
) -> None:
    # Seven copies of one text tie on every score; k and from_ cut through the tie on both sides of the page.
    docs = [{"_id": f"tie{i}", "text": "warning signs of a heart attack"} for i in range(7)]
    docs += [{"_id": f"other{i}", "text": text} for i, text in enumerate(["heart attack care", "solar panels"])]
    built = []
    for order, listed in (("forward", docs), ("backward", docs[::-1])):
        corpus = tmp_path / f"{order}.jsonl"
        corpus.write_text("".join(json.dumps(d) + "\n" for d in listed))
        name = f"{index_name}-{order}"
        summary = index_corpus(
            engine_client,
            corpus,
            index=name,
            encoder=encoder,
            load=LoadOptions(replicas=0, dead_letter=tmp_path / f"{order}.dl.jsonl"),
        )
        assert summary.problems() == []
        built.append(Searcher(name, encoder, client=engine_client))
    for mode in ("splade", "bm25", "two-phase", "hybrid"):
        for k, from_ in ((3, 0), (3, 2), (4, 5), (20, 0)):
            forward, backward = (s.search("heart attack warning", k=k, mode=mode, from_=from_).hits for s in built)
            assert [(h.id, h.score) for h in forward] == [(h.id, h.score) for h in backward], (mode, k, from_)
            tied = [h.id for h in forward if h.id.startswith("tie")]
            assert tied == sorted(tied) and tied, (mode, k, from_)
    exact = [h.id for h in built[1].search("heart attack warning", k=20).hits]
    assert exact[exact.index("tie0") : exact.index("tie0") + 7] == [f"tie{i}" for i in range(7)]


def test_async_searcher_returns_the_same_hits(searcher: Searcher, demo_index: str, encoder: SpladeEncoder) -> None:
    async def run() -> list[list[tuple[str, float]]]:
        asearcher = await AsyncSearcher.create(demo_index, encoder)
        try:
            results = [await asearcher.search(q, k=5, mode=m) for q in QUERIES for m in ("splade", "hybrid")]
        finally:
            await asearcher.close()
        return [[(h.id, h.score) for h in r.hits] for r in results]

    expected = [
        [(h.id, h.score) for h in searcher.search(q, k=5, mode=m).hits] for q in QUERIES for m in ("splade", "hybrid")
    ]
    assert asyncio.run(run()) == expected


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_search_cli_table_and_json_golden(demo_index: str) -> None:
    common = ["--index", demo_index, "--model", str(MODEL), "--k", "3"]
    table = _cli("search", "what causes a heart attack", *common)
    _golden("search_table.txt", table)
    # The default mode is two-phase: the same hits and exact scores as `--mode splade`, with a note saying so.
    note = "note: two-phase: ratio 0.4, window 5 x k, all terms (default)\n"
    exact = _cli("search", "what causes a heart attack", *common, "--mode", "splade")
    assert note in table and table.replace(note, "") == exact
    _golden("search_explain.txt", _cli("search", "U.S. founding documents", *common, "--explain"))
    output = json.loads(_cli("search", "renewable electricity", *common, "--json", "--explain"))
    assert output.pop("took_ms") >= 0
    for hit in output["hits"]:
        hit["score"] = round(hit["score"], 3)
        for item in hit["explanation"]:
            item["contribution"] = round(item["contribution"], 4)
    output["query_terms"] = {t: round(w, 4) for t, w in output["query_terms"].items()}
    _golden("search.json", json.dumps(output, indent=2, ensure_ascii=False) + "\n")


def test_search_cli_errors_are_one_line(demo_index: str) -> None:
    result = CliRunner().invoke(main, ["search", "heart", "--index", "nope-missing", "--model", str(MODEL)])
    assert result.exit_code == 1
    assert (
        result.output.strip() == "Error: index 'nope-missing' does not exist: create it with "
        "`splade-os index CORPUS --index nope-missing`"
    )


@pytest.mark.parametrize("mode", ["splade", "bm25", "hybrid", "two-phase"])
def test_pages_follow_each_other_and_fields_limit_the_source(searcher: Searcher, mode: str) -> None:
    text = "what causes a heart attack"
    whole = [h.id for h in searcher.search(text, k=6, mode=mode).hits]  # type: ignore[arg-type]
    first = searcher.search(text, k=3, mode=mode, fields=["title"]).hits  # type: ignore[arg-type]
    second = searcher.search(text, k=3, mode=mode, from_=3).hits  # type: ignore[arg-type]
    assert [h.id for h in first] + [h.id for h in second] == whole
    assert all(set(h.source) == {"title"} for h in first)
    assert all({"title", "text", "doc_id"} <= set(h.source) for h in second)
    with pytest.raises(InputError, match="from_"):
        searcher.search(text, from_=-1)
