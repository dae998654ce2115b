"""Query vectors become search requests: dict in, dict out, for any engine.

The engine turns a vector into clauses whose summed score is sum(q_t * d_t), the SPLADE dot product (up to the 9
significant bits Lucene keeps of each stored weight): on OpenSearch a `bool.should` of linear `rank_feature`
clauses, on Elasticsearch one `sparse_vector` query. Pruning, two-phase rescoring and clause limits are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from splade_os.engines import Engine, OpenSearchEngine, engine_for
from splade_os.engines.base import DEFAULT_MAX_CLAUSES
from splade_os.engines.refusals import is_refusal
from splade_os.mappings import VECTOR_FIELD
from splade_os.vectors import SparseVector

# OpenSearch's own two-phase default: phase one keeps tokens of at least 0.4 x the largest weight.
DEFAULT_TWO_PHASE_RATIO = 0.4
DEFAULT_TWO_PHASE_WINDOW_FACTOR = 5


@dataclass(frozen=True)
class Pruning:
    """Which query terms to keep: top-k, an absolute floor, and a floor relative to the largest weight."""

    top_k: int | None = None
    min_weight: float = 0.0
    max_ratio: float = 0.0

    def apply(self, vector: SparseVector) -> SparseVector:
        pruned = vector.prune(min_weight=self.min_weight, max_ratio=self.max_ratio)
        return pruned.top_k(self.top_k) if self.top_k is not None else pruned


@dataclass(frozen=True)
class QueryPlan:
    """A request body plus what the builder had to change to make it acceptable."""

    body: dict[str, Any]
    terms: SparseVector
    dropped: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def rank_feature_clauses(vector: Mapping[str, float], field_name: str = VECTOR_FIELD) -> list[dict[str, Any]]:
    """OpenSearch's clauses: one `rank_feature` clause per token, heaviest first, keys escaped."""
    return OpenSearchEngine().vector_clauses(SparseVector(vector), field_name)


def _bool_query(clauses: list[dict[str, Any]], filters: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    query: dict[str, Any] = {"should": clauses}
    if filters:
        query["filter"] = [dict(f) for f in filters]
        # With filters present, should clauses become optional; keep SPLADE's "match at least one token".
        query["minimum_should_match"] = 1
    return {"bool": query}


def fit_to_clause_limit(
    vector: SparseVector, max_clauses: int, reserved: int = 0
) -> tuple[SparseVector, tuple[str, ...], tuple[str, ...]]:
    """Keep the heaviest tokens the cluster accepts; return kept vector, dropped tokens and a note."""
    room = max_clauses - reserved
    if room < 1:
        raise ValueError(f"max_clauses={max_clauses} leaves no room for query terms")
    if len(vector) <= room:
        return vector, (), ()
    items = vector.sorted_items()
    kept, dropped = items[:room], tuple(t for t, _ in items[room:])
    note = (
        f"query has {len(items)} terms but the cluster accepts {max_clauses} clauses: "
        f"kept the {room} heaviest, dropped {len(dropped)}"
    )
    return SparseVector(dict(kept)), dropped, (note,)


def _page(body: dict[str, Any], size: int, from_: int, source: bool | Sequence[str] | None) -> dict[str, Any]:
    body["size"] = size
    if from_:
        body["from"] = from_
    if source is not None:
        body["_source"] = source if isinstance(source, bool) else list(source)
    return body


def build_splade_query(
    vector: SparseVector,
    *,
    field_name: str = VECTOR_FIELD,
    pruning: Pruning | None = None,
    filters: Sequence[Mapping[str, Any]] | None = None,
    size: int = 10,
    from_: int = 0,
    source: bool | Sequence[str] | None = None,
    max_clauses: int = DEFAULT_MAX_CLAUSES,
    engine: Engine,
) -> QueryPlan:
    """The exact SPLADE query: every (kept) query term scored against the vector field."""
    terms = (pruning or Pruning()).apply(vector)
    reserved = len(filters or ())
    terms, dropped, notes = fit_to_clause_limit(terms, max_clauses, reserved)
    body = {"query": _bool_query(engine.vector_clauses(terms, field_name), filters)}
    return QueryPlan(_page(body, size, from_, source), terms, dropped, notes)


def build_two_phase_query(
    vector: SparseVector,
    *,
    field_name: str = VECTOR_FIELD,
    pruning: Pruning | None = None,
    ratio: float = DEFAULT_TWO_PHASE_RATIO,
    window: int | None = None,
    filters: Sequence[Mapping[str, Any]] | None = None,
    size: int = 10,
    from_: int = 0,
    source: bool | Sequence[str] | None = None,
    max_clauses: int = DEFAULT_MAX_CLAUSES,
    engine: Engine,
) -> QueryPlan:
    """Phase one matches only the heavy tokens; a `rescore` adds the light tokens' scores on a window.

    The rescore's `total` score mode adds both phases, so every document in the window gets its exact dot
    product; only documents that match no heavy token can be missed.
    """
    terms = (pruning or Pruning()).apply(vector)
    terms, dropped, notes = fit_to_clause_limit(terms, max_clauses, len(filters or ()))
    if not terms:
        return build_splade_query(
            terms,
            field_name=field_name,
            filters=filters,
            size=size,
            from_=from_,
            source=source,
            max_clauses=max_clauses,
            engine=engine,
        )
    threshold = ratio * max(terms.values())
    heavy = SparseVector({t: w for t, w in terms.items() if w >= threshold})
    light = SparseVector({t: w for t, w in terms.items() if w < threshold})
    body = {"query": _bool_query(engine.vector_clauses(heavy, field_name), filters)}
    if light:
        body["rescore"] = {
            "window_size": max(window or (size + from_) * DEFAULT_TWO_PHASE_WINDOW_FACTOR, size + from_),
            "query": {
                "rescore_query": {"bool": {"should": engine.vector_clauses(light, field_name)}},
                "query_weight": 1.0,
                "rescore_query_weight": 1.0,
                "score_mode": "total",
            },
        }
    return QueryPlan(_page(body, size, from_, source), terms, dropped, notes)


def build_bm25_query(
    text: str,
    *,
    fields: Sequence[str] = ("title", "text"),
    filters: Sequence[Mapping[str, Any]] | None = None,
    size: int = 10,
    from_: int = 0,
    source: bool | Sequence[str] | None = None,
) -> dict[str, Any]:
    """The BM25 baseline on the analysed text fields."""
    match = {"multi_match": {"query": text, "fields": list(fields), "type": "best_fields"}}
    query: dict[str, Any] = {"bool": {"must": [match]}}
    if filters:
        query["bool"]["filter"] = [dict(f) for f in filters]
    return _page({"query": query}, size, from_, source)


def cluster_max_clauses(client: Any) -> int:
    """The clause limit the cluster enforces, read live (see each engine's `clause_limit`).

    A user allowed to search but not to read cluster settings or nodes info (the searcher role of docs/security.md
    on OpenSearch) gets the default limit: queries are cut to it, which is right unless the cluster raised it.
    """
    engine = engine_for(client)
    try:
        return engine.clause_limit(engine.clause_limit_request(client))
    except Exception as err:
        if not is_refusal(err):
            raise
        return DEFAULT_MAX_CLAUSES
