"""The service's encoder: one `SpladeEncoder` behind two batchers (queries, documents), and the shapes it answers in.

`/encode` answers `{token: weight}` maps, exactly the vectors `splade-os encode` writes. `/embed_sparse` answers in
the shape of Hugging Face text-embeddings-inference (`[[{"index": token_id, "value": weight}, ...], ...]`), or, for
the engines' connectors, `{token: weight}` maps keyed as the engine stores them (`format=opensearch` escapes the
tokens OpenSearch's `rank_features` cannot hold as they are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from splade_os.model.encoder import SpladeEncoder
from splade_os.serve.batcher import Batcher, BatchSettings
from splade_os.vectors import SparseVector

Encode = Callable[[list[str]], list[SparseVector]]
KINDS = ("query", "document")
# What one more encoder run costs, in padded token rows: on CPU a run has a fixed cost (about 1.7 ms for splade-tiny,
# packing the vocabulary projection) and each token row about 0.11 ms more, so a batch is split where keeping its
# shorter texts together would pad more rows than a run costs.
RUN_COST_TOKENS = 16
FORMATS = ("tei", "tokens", "opensearch", "elasticsearch")


class BatchedEncoder:
    """A `SpladeEncoder` whose concurrent callers share encoder runs, one batcher per kind of text."""

    def __init__(self, encoder: SpladeEncoder, settings: BatchSettings, *, on_batch: Any = None) -> None:
        self.encoder = encoder
        self.settings = settings
        self.batchers: dict[str, Batcher[SparseVector]] = {
            "query": Batcher(
                self._by_length(encoder.encode_queries), settings, on_batch=on_batch, name="splade-os-queries"
            ),
            "document": Batcher(
                self._by_length(encoder.encode_documents), settings, on_batch=on_batch, name="splade-os-documents"
            ),
        }

    def _by_length(self, encode: Encode) -> Encode:
        """`encode` over groups of texts of similar token length: a batch padded to its longest text would cost
        more than the runs it saves (see RUN_COST_TOKENS)."""
        tokenizer, longest = self.encoder.tokenizer, self.encoder.max_length

        def run(texts: list[str]) -> list[SparseVector]:
            if len(texts) == 1:
                return encode(texts)
            lengths = [min(len(e.ids), longest) for e in tokenizer.encode_batch(texts)]
            out: list[SparseVector] = [SparseVector()] * len(texts)
            for group in length_groups(lengths, RUN_COST_TOKENS):
                for i, vector in zip(group, encode([texts[i] for i in group]), strict=True):
                    out[i] = vector
            return out

        return run

    @property
    def depth(self) -> int:
        """Texts waiting for a batch, both kinds together."""
        return sum(b.depth for b in self.batchers.values())

    def submit(self, texts: Sequence[str], kind: str) -> Future[list[SparseVector]]:
        return self.batchers[kind].submit(texts)

    def close(self) -> None:
        """Finish what is queued and running, then refuse; the encoder stays the caller's."""
        for batcher in self.batchers.values():
            batcher.close()

    def query_encoder(self) -> QueriesThroughBatcher:
        return QueriesThroughBatcher(self)

    def token_id(self, token: str) -> int:
        index = self.encoder.tokenizer.token_to_id(token)
        assert index is not None, f"{token!r} is not in the tokenizer's vocabulary"
        return int(index)


class QueriesThroughBatcher:
    """What `Searcher` needs from an encoder, with queries encoded through the batcher (called from a worker thread,
    so waiting on the batch blocks no event loop)."""

    def __init__(self, batched: BatchedEncoder) -> None:
        self._batched = batched
        self.tokenizer = batched.encoder.tokenizer  # for the query's expansion terms

    @property
    def manifest(self) -> Mapping[str, Any]:
        return self._batched.encoder.manifest

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._batched.submit(texts, "query").result()

    def encode_documents(self, texts: Sequence[str], **cut: Any) -> list[SparseVector]:
        # Explanations on an index without vectors in _source re-encode hits as the index recorded: not batched.
        return self._batched.encoder.encode_documents(texts, **cut)


def length_groups(lengths: Sequence[int], run_cost: int) -> list[list[int]]:
    """Indices of `lengths` in groups of similar length, shortest first: a text starts a new group when padding
    the group's texts to its length would add more than `run_cost` token rows."""
    groups: list[list[int]] = []
    top = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if not groups or len(groups[-1]) * (lengths[i] - top) > run_cost:
            groups.append([])
        groups[-1].append(i)
        top = lengths[i]
    return groups


def as_tei(vectors: Sequence[SparseVector], token_id: Any) -> list[list[dict[str, Any]]]:
    """text-embeddings-inference's `/embed_sparse` answer: per text, `{index, value}` by ascending token id."""
    out = []
    for vector in vectors:
        pairs = sorted((token_id(token), weight) for token, weight in vector.items())
        out.append([{"index": index, "value": weight} for index, weight in pairs])
    return out


def as_maps(vectors: Sequence[SparseVector], fmt: str = "tokens") -> list[dict[str, float]]:
    """Per text `{token: weight}`; `fmt="opensearch"` keys each token as OpenSearch's `rank_features` field holds it."""
    if fmt == "opensearch":
        return [v.to_field() for v in vectors]
    return [v.to_dict() for v in vectors]
