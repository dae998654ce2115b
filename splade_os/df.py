"""Document frequencies: in how many documents of an index each token of the vector field occurs.

Counted exactly from the index itself, whatever loaded it (a resumed load, Ray workers, vectors made elsewhere):
one `size: 0` search per token with `track_total_hits`, built with the engine's own vector clauses (so tokens are
escaped as the documents were), sent `per_request` at a time in `_msearch`. The table is stored in a small side
index named after the concrete index (`docs-v1-df`, see `aliases.df_index_name`): one document holding the counts
of the tokens that occur (in an object the engine neither parses nor indexes), the document count they were
computed at, when, and the size of the token list asked about.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from splade_os import aliases
from splade_os.engines import engine_for
from splade_os.engines.refusals import is_refusal
from splade_os.errors import ConfigError, EngineError, IndexNotFoundError
from splade_os.mappings import VECTOR_FIELD
from splade_os.vectors import SparseVector

PER_REQUEST = 500  # searches in one _msearch: small enough for any node's queue, large enough to cut round trips
DOC_ID = "df"
STALE_SHARE = 0.1  # a table counted at a document count more than 10% away from today's is out of date
_MAPPING = {
    "dynamic": False,
    "properties": {
        "df": {"type": "object", "enabled": False},  # thousands of tokens: stored, never mapped field by field
        "absent": {"type": "keyword", "index": False, "doc_values": False},  # counted, found nowhere
        "field": {"type": "keyword"},
        "documents": {"type": "long"},
        "computed_at": {"type": "date"},
        "vocabulary_size": {"type": "integer"},
        "seconds": {"type": "float"},
        "partial": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class DfTable:
    """The document frequencies of one concrete index's vector field, as counted at `documents` documents."""

    index: str
    counts: Mapping[str, int]  # tokens with df > 0; any other token of the vocabulary asked about has df 0
    documents: int
    computed_at: str  # ISO 8601, UTC
    vocabulary_size: int  # how many tokens were counted
    field: str = VECTOR_FIELD
    seconds: float = 0.0  # how long the counting took
    absent: tuple[str, ...] = ()  # the tokens asked about that no document holds (counted again on a refresh)
    # Counted over a list that may miss tokens the documents hold (`df --tokens`, a resumed load): never complete
    partial: bool = False

    @property
    def tokens(self) -> list[str]:
        """Every token the table was counted over: what a refresh counts again."""
        return [*self.counts, *self.absent]

    def df(self, token: str) -> int:
        return int(self.counts.get(token, 0))

    @cached_property
    def field_mean(self) -> float:
        """The mean document frequency of the field's tokens (those found in at least one document)."""
        return sum(self.counts.values()) / len(self.counts) if self.counts else 0.0

    def costly(self, vector: Mapping[str, float], ratio: float, weight: float) -> frozenset[str]:
        """The cost rule: the terms of `vector` found in more than `ratio` x the field's mean number of documents
        and weighing under `weight` x its heaviest term, whose long posting lists phase one is better without."""
        if not vector:
            return frozenset()
        floor, limit = weight * max(vector.values()), ratio * self.field_mean
        return frozenset(t for t, w in vector.items() if w < floor and self.df(t) > limit)

    def mean(self, tokens: Iterable[str]) -> float:
        """The mean document frequency over `tokens` (0.0 for none)."""
        values = [self.df(t) for t in tokens]
        return sum(values) / len(values) if values else 0.0

    def drift(self, documents_now: int) -> float:
        """How far today's document count is from the one the table was counted at, as a share of today's."""
        if documents_now == self.documents:
            return 0.0
        return abs(documents_now - self.documents) / max(documents_now, 1)

    def is_stale(self, documents_now: int) -> bool:
        return self.drift(documents_now) > STALE_SHARE

    def to_document(self) -> dict[str, Any]:
        return {
            "df": dict(self.counts),
            "field": self.field,
            "documents": self.documents,
            "computed_at": self.computed_at,
            "vocabulary_size": self.vocabulary_size,
            "seconds": self.seconds,
            "absent": list(self.absent),
            "partial": self.partial,
        }


def concrete_index(client: Any, index: str) -> str:
    """The one concrete index behind `index` (an alias or an index); ConfigError when there is none or several."""
    found = aliases.resolve(client, index)
    if not found:
        raise IndexNotFoundError(f"no index or alias {index!r}")
    if len(found) > 1:
        raise ConfigError(f"{index!r} points at {len(found)} indices ({', '.join(found)}): name one of them")
    return found[0]


def _search(engine: Any, token: str, field_name: str) -> dict[str, Any]:
    clauses = engine.vector_clauses(SparseVector({token: 1.0}), field_name)
    query = clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses}}
    return {"size": 0, "track_total_hits": True, "query": query}


def count_tokens(
    client: Any,
    index: str,
    tokens: Iterable[str],
    *,
    field_name: str = VECTOR_FIELD,
    per_request: int = PER_REQUEST,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """{token: df} for the tokens of `tokens` that occur in `index` (those that do not are left out).

    `on_batch(done, total)` is called after each `_msearch`."""
    if per_request < 1:
        raise ConfigError(f"per_request must be at least 1, got {per_request}")
    engine = engine_for(client)
    wanted = list(dict.fromkeys(tokens))
    counts: dict[str, int] = {}
    for start in range(0, len(wanted), per_request):
        batch = wanted[start : start + per_request]
        body: list[dict[str, Any]] = []
        for token in batch:
            body += [{}, _search(engine, token, field_name)]
        answers = client.msearch(body=body, index=index)["responses"]
        for token, answer in zip(batch, answers, strict=True):
            if "error" in answer:
                raise EngineError(f"cannot count documents holding {token!r} in {index!r}: {answer['error']}")
            total = answer["hits"]["total"]
            n = int(total["value"] if isinstance(total, Mapping) else total)
            if n:
                counts[token] = n
        if on_batch is not None:
            on_batch(start + len(batch), len(wanted))
    return counts


def compute_df(
    client: Any,
    index: str,
    tokens: Iterable[str],
    *,
    field_name: str = VECTOR_FIELD,
    partial: bool = False,
    **counting: Any,
) -> DfTable:
    """Count the document frequency of every token of `tokens` (the model's vocabulary, or the tokens seen) in
    the concrete index behind `index`, at its current document count. `partial`: `tokens` may miss tokens the
    documents hold (recorded, so nothing takes the table for complete). `counting`: `per_request`, `on_batch` of
    `count_tokens`."""
    wanted = list(dict.fromkeys(tokens))
    if not wanted:
        raise ConfigError("no tokens to count: give the model's vocabulary (--model) or a non-empty token list")
    concrete = concrete_index(client, index)
    started = time.monotonic()
    documents = int(client.count(index=concrete)["count"])
    computed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    counts = count_tokens(client, concrete, wanted, field_name=field_name, **counting)
    absent = tuple(t for t in wanted if t not in counts)
    return DfTable(
        concrete, counts, documents, computed_at, len(wanted), field_name, time.monotonic() - started, absent, partial
    )


def store_df(client: Any, table: DfTable) -> str:
    """Write `table` to its side index (created when missing; the previous table replaced) and return its name."""
    name = aliases.df_index_name(table.index)
    if not client.indices.exists(index=name):
        body = {"settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}}, "mappings": _MAPPING}
        try:
            client.indices.create(index=name, body=body)
        except Exception as err:
            if is_refusal(err) or "already_exists" not in str(err):  # another run created it meanwhile: fine
                raise
    client.index(index=name, id=DOC_ID, body=table.to_document(), refresh=True)
    return name


def build_df(client: Any, index: str, tokens: Iterable[str], **counting: Any) -> DfTable:
    """`compute_df` (with its keywords) then `store_df`: the table `read_df` returns from now on."""
    table = compute_df(client, index, tokens, **counting)
    store_df(client, table)
    return table


def read_df(client: Any, index: str) -> DfTable | None:
    """The stored table of the concrete index behind `index`; None when none was computed.

    Read with a search (the privilege every searcher has), not a get."""
    concrete = concrete_index(client, index)
    return table_from_answer(concrete, client.search(**df_request(concrete)))


def df_request(concrete: str) -> dict[str, Any]:
    """The search (keywords of `client.search`) that reads the table of `concrete`: sync and async clients alike."""
    body = {"query": {"ids": {"values": [DOC_ID]}}, "size": 1}
    return {"index": aliases.df_index_name(concrete), "body": body, "ignore_unavailable": True}


def table_from_answer(concrete: str, answer: Mapping[str, Any]) -> DfTable | None:
    """The table in the answer to `df_request(concrete)`; None when there is none."""
    hits = answer["hits"]["hits"]
    if not hits:
        return None
    doc = hits[0]["_source"]
    counts = doc.get("df") or {}
    return DfTable(
        concrete,
        {str(t): int(n) for t, n in counts.items()},
        int(doc.get("documents", 0)),
        str(doc.get("computed_at", "")),
        int(doc.get("vocabulary_size", 0)),
        str(doc.get("field", VECTOR_FIELD)),
        float(doc.get("seconds", 0.0)),
        tuple(str(t) for t in doc.get("absent") or ()),
        bool(doc.get("partial")),
    )
