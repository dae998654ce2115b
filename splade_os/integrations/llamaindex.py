"""LlamaIndex adapters (`pip install 'splade-os[llamaindex]'`): a retriever over a splade-os index, and SPLADE
sparse embedding functions for LlamaIndex vector stores that take them.

`SpladeRetriever` encodes the query on the client with the index's model and searches it in any mode (splade,
two-phase, hybrid, bm25); each hit becomes a `NodeWithScore` whose `TextNode` holds the indexed text, the hit's id
as `id_`, and metadata with `id`, `score`, `title` and the requested source fields.

`sparse_doc_fn(encoder)` / `sparse_query_fn(encoder)` have the shape of LlamaIndex's `SparseEncoderCallable`
(`QdrantVectorStore(sparse_doc_fn=..., sparse_query_fn=...)`): texts in, `(indices, values)` out, one list each per
text, the indices being the model's vocabulary ids. See docs/frameworks.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from splade_os.errors import MissingDependencyError
from splade_os.integrations.searchers import Filter, Passage, Query, Retriever, Searchers
from splade_os.retrieval.search import AsyncSearcher, Mode, Searcher
from splade_os.vectors import SparseVector

if TYPE_CHECKING:
    from splade_os.model.encoder import SpladeEncoder

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError:
    raise MissingDependencyError(
        "the LlamaIndex retriever needs llama-index-core: pip install 'splade-os[llamaindex]'"
    ) from None

SparseEncoding = tuple[list[list[int]], list[list[float]]]
"""(indices, values) for a batch of texts: LlamaIndex's `BatchSparseEncoding`."""


class SpladeRetriever(Retriever, BaseRetriever):
    """Nodes for a query from a splade-os index, best first, exactly the hits of `Searcher.search`.

    `SpladeRetriever(searcher=...)` wraps a `Searcher` (and optionally an `AsyncSearcher`) that stays the caller's:
    the retriever never changes or closes it. `SpladeRetriever.from_index(index, model, settings=...)` builds its
    own searcher, which `close()` (or `await aclose()`, which also closes the asyncio one) releases.

    `aretrieve` goes through the `AsyncSearcher` given or built; with a caller's `Searcher` alone it runs its
    search in a worker thread.
    """

    def __init__(
        self,
        searcher: Searcher | None = None,
        async_searcher: AsyncSearcher | None = None,
        *,
        k: int = 10,
        mode: Mode = "splade",
        filter: Filter = None,
        fields: Sequence[str] = (),
        text_field: str | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.query = Query(k, mode, filter, fields, text_field)
        self._searchers = Searchers(searcher, async_searcher)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_node(p) for p in self._searchers.search(query_bundle.query_str, self.query)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_node(p) for p in await self._searchers.asearch(query_bundle.query_str, self.query)]


def _node(passage: Passage) -> NodeWithScore:
    # The score changes with every query: keep it out of what an LLM reads and what an embedding model encodes.
    node = TextNode(
        id_=passage.id,
        text=passage.text,
        metadata=passage.metadata,
        excluded_llm_metadata_keys=["score"],
        excluded_embed_metadata_keys=["score"],
    )
    return NodeWithScore(node=node, score=passage.score)


def sparse_doc_fn(encoder: SpladeEncoder) -> Callable[[list[str]], SparseEncoding]:
    """A LlamaIndex `sparse_doc_fn` backed by a `SpladeEncoder`: document vectors (with the encoder's cut and
    pruning) as vocabulary ids and weights."""
    ids = encoder.tokenizer.get_vocab(with_added_tokens=True)
    return lambda texts: _ids_and_weights(ids, encoder.encode_documents(texts))


def sparse_query_fn(encoder: SpladeEncoder) -> Callable[[list[str]], SparseEncoding]:
    """A LlamaIndex `sparse_query_fn` backed by a `SpladeEncoder`: query vectors as vocabulary ids and weights."""
    ids = encoder.tokenizer.get_vocab(with_added_tokens=True)
    return lambda texts: _ids_and_weights(ids, encoder.encode_queries(texts))


def _ids_and_weights(ids: dict[str, int], vectors: list[SparseVector]) -> SparseEncoding:
    indices, values = [], []
    for vector in vectors:
        pairs = sorted((ids[token], weight) for token, weight in vector.items())
        indices.append([i for i, _ in pairs])
        values.append([w for _, w in pairs])
    return indices, values
