"""A LangChain retriever over a splade-os index (`pip install 'splade-os[langchain]'`).

The query is encoded on the client with the index's SPLADE model and searched in any mode (splade, two-phase,
hybrid, bm25); each hit becomes a `Document` whose `page_content` is the indexed text and whose metadata holds
`id`, `score`, `title` and the requested source fields. See docs/frameworks.md."""

from __future__ import annotations

from typing import Any

from splade_os.errors import MissingDependencyError
from splade_os.integrations.searchers import Filter, Passage, Query, Retriever, Searchers
from splade_os.retrieval.search import AsyncSearcher, Mode, Searcher

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import PrivateAttr
except ImportError:
    raise MissingDependencyError(
        "the LangChain retriever needs langchain-core: pip install 'splade-os[langchain]'"
    ) from None


class SpladeRetriever(Retriever, BaseRetriever):
    """Documents for a query from a splade-os index, best first, exactly the hits of `Searcher.search`.

    `SpladeRetriever(searcher=...)` wraps a `Searcher` (and optionally an `AsyncSearcher`) that stays the caller's:
    the retriever never changes or closes it. `SpladeRetriever.from_index(index, model, settings=...)` builds its
    own searcher, which `close()` (or `await aclose()`, which also closes the asyncio one) releases.

    Async calls (`ainvoke`) go through the `AsyncSearcher` given or built; with a caller's `Searcher` alone they run
    its search in a worker thread.
    """

    searcher: Searcher | None = None
    async_searcher: AsyncSearcher | None = None
    k: int = 10
    mode: Mode = "splade"
    filter: Filter = None
    fields: list[str] = []
    """Source fields copied into each document's metadata, besides id, score and title."""
    text_field: str | None = None
    """The source field that becomes `page_content`; by default the text field the index's vectors encode."""

    _searchers: Searchers = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._query()  # bad settings fail here, before any query
        self._searchers = Searchers(self.searcher, self.async_searcher)

    def _query(self) -> Query:
        return Query(self.k, self.mode, self.filter, self.fields, self.text_field)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [_document(p) for p in self._searchers.search(query, self._query())]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [_document(p) for p in await self._searchers.asearch(query, self._query())]


def _document(passage: Passage) -> Document:
    return Document(page_content=passage.text, metadata=passage.metadata, id=passage.id)
