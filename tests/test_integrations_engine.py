"""The LangChain and LlamaIndex retrievers against a real node: they return exactly what `Searcher.search` returns,
in every mode, sync and async, and leave a caller's searcher as they found it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from conftest import BUNDLED_MODEL
from helpers import indexed_demo

from splade_os.connection import ConnectionSettings
from splade_os.engines import Engine
from splade_os.integrations import langchain, llamaindex
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import MODES, AsyncSearcher, Mode, Searcher

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

pytestmark = pytest.mark.engine

QUERIES = ["what causes a heart attack", "renewable electricity", "U.S. founding documents"]
FIELDS = ["doc_id", "not-a-field"]  # a field the documents lack comes back as None
Row = tuple[str, float, str, dict[str, Any]]  # what `_expected`, `_from_documents` and `_from_nodes` give per hit


@pytest.fixture(scope="module")
def encoder() -> Iterator[SpladeEncoder]:
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        yield encoder


@pytest.fixture(scope="module")
def demo_index(engine_client: Any, engine: Engine, encoder: SpladeEncoder) -> Iterator[str]:
    yield from indexed_demo(engine_client, encoder, f"test-integrations-{engine.name}")


@pytest.fixture(scope="module")
def searcher(engine_client: Any, demo_index: str, encoder: SpladeEncoder) -> Searcher:
    return Searcher(demo_index, encoder, client=engine_client)


def _expected(searcher: Searcher, text: str, mode: Mode, k: int = 5) -> list[tuple[str, float, str, dict[str, Any]]]:
    """What a retriever must give: the searcher's hits, each with its text and the promised metadata."""
    out = []
    for hit in searcher.search(text, k=k, mode=mode).hits:
        metadata = {"id": hit.id, "score": hit.score, "title": hit.title, "doc_id": hit.id, "not-a-field": None}
        out.append((hit.id, hit.score, hit.source["text"], metadata))
    return out


def _from_documents(documents: list[Any]) -> list[tuple[str, float, str, dict[str, Any]]]:
    assert all(d.id == d.metadata["id"] for d in documents)
    return [(d.metadata["id"], d.metadata["score"], d.page_content, d.metadata) for d in documents]


def _from_nodes(nodes: list[Any]) -> list[tuple[str, float, str, dict[str, Any]]]:
    assert all(n.node.metadata["score"] == n.score for n in nodes)
    return [(n.node.id_, n.score, n.node.text, n.node.metadata) for n in nodes]


@pytest.mark.parametrize("mode", MODES)
def test_langchain_returns_the_searchers_hits(searcher: Searcher, mode: Mode) -> None:
    retriever = langchain.SpladeRetriever(searcher=searcher, k=5, mode=mode, fields=FIELDS)
    for text in QUERIES:
        expected = _expected(searcher, text, mode)
        assert expected, (mode, text)
        assert _from_documents(retriever.invoke(text)) == expected, (mode, text)


@pytest.mark.parametrize("mode", MODES)
def test_llamaindex_returns_the_searchers_hits(searcher: Searcher, mode: Mode) -> None:
    retriever = llamaindex.SpladeRetriever(searcher, k=5, mode=mode, fields=FIELDS)
    for text in QUERIES:
        expected = _expected(searcher, text, mode)
        assert expected, (mode, text)
        assert _from_nodes(retriever.retrieve(text)) == expected, (mode, text)


def test_filters_reach_the_search(searcher: Searcher) -> None:
    only = {"terms": {"doc_id": ["sleep", "coffee"]}}
    for mode in MODES:
        documents = langchain.SpladeRetriever(searcher=searcher, mode=mode, filter=only).invoke("heart attack")
        nodes = llamaindex.SpladeRetriever(searcher, mode=mode, filter=only).retrieve("heart attack")
        assert documents and {d.id for d in documents} <= {"sleep", "coffee"}, mode
        assert [(n.node.id_, n.score) for n in nodes] == [(d.id, d.metadata["score"]) for d in documents], mode


def test_async_gives_what_sync_gives(searcher: Searcher, demo_index: str, encoder: SpladeEncoder) -> None:
    lc_sync = {
        m: _from_documents(langchain.SpladeRetriever(searcher=searcher, k=5, mode=m).invoke(QUERIES[0])) for m in MODES
    }

    async def run() -> list[tuple[Mode, list[Row], list[Row]]]:
        asearcher = await AsyncSearcher.create(demo_index, encoder)
        got = []
        try:
            for mode in MODES:
                # Through the caller's AsyncSearcher, and with a caller's Searcher alone (searched in a thread).
                for given in ({"async_searcher": asearcher}, {"searcher": searcher}):
                    lc = langchain.SpladeRetriever(**given, k=5, mode=mode)
                    li = llamaindex.SpladeRetriever(**given, k=5, mode=mode)
                    got.append(
                        (
                            mode,
                            _from_documents(await lc.ainvoke(QUERIES[0])),
                            _from_nodes(await li.aretrieve(QUERIES[0])),
                        )
                    )
        finally:
            await asearcher.close()
        return got

    for mode, documents, nodes in asyncio.run(run()):
        assert documents == lc_sync[mode], mode
        assert nodes == documents, mode


def test_the_callers_searcher_stays_open_and_unchanged(searcher: Searcher, demo_index: str) -> None:
    before = dict(vars(searcher.logic))
    expected = [(h.id, h.score) for h in searcher.search(QUERIES[1], k=5, mode="hybrid").hits]
    lc = langchain.SpladeRetriever(searcher=searcher, k=3, mode="two-phase", fields=["doc_id"], text_field="title")
    li = llamaindex.SpladeRetriever(searcher, k=3, mode="two-phase", fields=["doc_id"], text_field="title")
    assert lc.invoke(QUERIES[1]) and asyncio.run(lc.ainvoke(QUERIES[1]))
    assert li.retrieve(QUERIES[1]) and asyncio.run(li.aretrieve(QUERIES[1]))
    for retriever in (lc, li):
        retriever.close()
        asyncio.run(retriever.aclose())
    assert dict(vars(searcher.logic)) == before
    assert isinstance(searcher.logic.encoder, SpladeEncoder)  # the `searcher` fixture's encoder
    assert not searcher.logic.encoder.closed
    assert [(h.id, h.score) for h in searcher.search(QUERIES[1], k=5, mode="hybrid").hits] == expected


def test_text_field_chooses_the_text(searcher: Searcher) -> None:
    documents = langchain.SpladeRetriever(searcher=searcher, k=3, text_field="title").invoke(QUERIES[0])
    nodes = llamaindex.SpladeRetriever(searcher, k=3, text_field="title").retrieve(QUERIES[0])
    titles = [h.title for h in searcher.search(QUERIES[0], k=3).hits]
    # Each node the adapter makes is a TextNode (splade_os.integrations.llamaindex._node).
    assert [d.page_content for d in documents] == [cast("TextNode", n.node).text for n in nodes] == titles


@pytest.mark.parametrize("adapter", ["langchain", "llamaindex"])
def test_a_retriever_built_from_an_index_owns_its_searcher(searcher: Searcher, demo_index: str, adapter: str) -> None:
    settings = ConnectionSettings.from_env()
    retriever: Any
    if adapter == "langchain":
        retriever = langchain.SpladeRetriever.from_index(
            demo_index, BUNDLED_MODEL, settings=settings, k=5, mode="hybrid", fields=FIELDS
        )
        sync, run_async = (lambda q: _from_documents(retriever.invoke(q))), retriever.ainvoke
        owned = retriever._searchers
    else:
        retriever = llamaindex.SpladeRetriever.from_index(
            demo_index, BUNDLED_MODEL, settings=settings, k=5, mode="hybrid", fields=FIELDS
        )
        sync, run_async = (lambda q: _from_nodes(retriever.retrieve(q))), retriever.aretrieve
        owned = retriever._searchers
    convert = _from_documents if adapter == "langchain" else _from_nodes
    expected = _expected(searcher, QUERIES[0], "hybrid")
    assert sync(QUERIES[0]) == expected
    # Two event loops one after the other (two asyncio.run calls): each gets a searcher of its own.
    assert convert(asyncio.run(run_async(QUERIES[0]))) == expected
    assert convert(asyncio.run(run_async(QUERIES[0]))) == expected

    async def last_query_then_close() -> list[Any]:
        try:
            return list(await run_async(QUERIES[0]))
        finally:
            await retriever.aclose()

    assert convert(asyncio.run(last_query_then_close())) == expected
    assert owned.searcher.logic.encoder.closed
    assert isinstance(searcher.logic.encoder, SpladeEncoder)  # the `searcher` fixture's encoder
    assert not searcher.logic.encoder.closed  # another searcher's encoder of the same model is not touched
