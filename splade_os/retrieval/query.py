"""Query vectors become search requests: dict in, dict out, for any engine.

The engine turns a vector into clauses whose summed score is sum(q_t * d_t), the SPLADE dot product (up to the 9
significant bits Lucene keeps of each stored weight): on OpenSearch a `bool.should` of linear `rank_feature`
clauses, on Elasticsearch one `sparse_vector` query. Pruning, two-phase rescoring and clause limits are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from splade_os.engines import Engine, engine_for
from splade_os.engines.base import DEFAULT_MAX_CLAUSES, PruningConfig
from splade_os.engines.refusals import is_refusal
from splade_os.mappings import FIRST_PHASE_FIELD, VECTOR_FIELD
from splade_os.vectors import SparseVector

# OpenSearch's own two-phase default: phase one keeps tokens of at least 0.4 x the largest weight.
DEFAULT_TWO_PHASE_RATIO = 0.4
DEFAULT_TWO_PHASE_WINDOW_FACTOR = 5
# Two-step search (an index with the pruned first-phase field): phase one sends the query's heaviest terms to that
# field, and the exact dot product on the full field rescores a window of this many times the hits asked for.
DEFAULT_FIRST_PHASE_TERMS = 32
DEFAULT_TWO_STEP_WINDOW_FACTOR = 30  # measured: 10 x k kept 0.97 of exact top-10 at 20,000 documents, 30 x k 0.996


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


def _page(
    body: dict[str, Any], size: int, from_: int, source: bool | Sequence[str] | None, totals: bool = False
) -> dict[str, Any]:
    body["size"] = size
    if from_:
        body["from"] = from_
    if source is not None:
        body["_source"] = source if isinstance(source, bool) else list(source)
    if not totals:
        # Counting every match is most of the work the engines' early termination (block-max WAND) skips; nothing
        # here reads `hits.total`, so no request asks for it unless its caller does.
        body["track_total_hits"] = False
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
    totals: bool = False,
) -> QueryPlan:
    """The exact SPLADE query: every (kept) query term scored against the vector field."""
    terms, dropped, notes = _fitted(vector, pruning, max_clauses, filters)
    if not terms:
        return _empty(size, from_, source, totals, notes)
    body = {"query": _bool_query(engine.vector_clauses(terms, field_name), filters)}
    return QueryPlan(_page(body, size, from_, source, totals), terms, dropped, notes)


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
    totals: bool = False,
    deferred: frozenset[str] = frozenset(),
    engine_pruning: PruningConfig | None = None,
) -> QueryPlan:
    """Phase one matches only the heavy tokens; a `rescore` adds the light tokens' scores on a window.

    The rescore's `total` score mode adds both phases, so every document in the window gets its exact dot
    product; only documents that match no heavy token can be missed. `deferred` terms (the cost rule's) go to the
    rescore even when heavy, unless no heavy term would be left; `engine_pruning` is the engine's own, on phase one.
    """
    terms, dropped, notes = _fitted(vector, pruning, max_clauses, filters)
    if not terms:
        return _empty(size, from_, source, totals, notes)
    threshold = ratio * max(terms.values())
    heavy = phase_one_terms(SparseVector({t: w for t, w in terms.items() if w >= threshold}), deferred)
    light = SparseVector({t: w for t, w in terms.items() if t not in heavy})
    body = {"query": _bool_query(engine.vector_clauses(heavy, field_name, engine_pruning), filters)}
    if light:
        window = max(window or (size + from_) * DEFAULT_TWO_PHASE_WINDOW_FACTOR, size + from_)
        body["rescore"] = _rescore(engine.vector_clauses(light, field_name), window, query_weight=1.0)
    return QueryPlan(_page(body, size, from_, source, totals), terms, dropped, notes)


def phase_one_terms(terms: SparseVector, deferred: frozenset[str]) -> SparseVector:
    """`terms` without the `deferred` ones; all of them when that would leave phase one nothing to match."""
    kept = SparseVector({t: w for t, w in terms.items() if t not in deferred}) if deferred else terms
    return kept or terms


def _fitted(
    vector: SparseVector, pruning: Pruning | None, max_clauses: int, filters: Sequence[Mapping[str, Any]] | None
) -> tuple[SparseVector, tuple[str, ...], tuple[str, ...]]:
    """The query terms a request keeps: the searcher's pruning, then the heaviest that fit the clause limit beside
    the filters; with the terms dropped and the notes that say so."""
    return fit_to_clause_limit((pruning or Pruning()).apply(vector), max_clauses, len(filters or ()))


NO_TERMS_NOTE = "no query terms are left (the query's pruning removed every one): nothing matches"


def _empty(
    size: int, from_: int, source: bool | Sequence[str] | None, totals: bool, notes: tuple[str, ...]
) -> QueryPlan:
    """The request for a query left with no term (all pruned away): `match_none`, since a `bool` with no `should`
    clause matches every document on both engines (each at score 1.0)."""
    body: dict[str, Any] = {"query": {"match_none": {}}}
    return QueryPlan(_page(body, size, from_, source, totals), SparseVector({}), (), (*notes, NO_TERMS_NOTE))


def _rescore(clauses: list[dict[str, Any]], window: int, *, query_weight: float) -> dict[str, Any]:
    """A rescore of the best `window` hits that adds the `clauses`' score to `query_weight` x phase one's."""
    query = {
        "rescore_query": {"bool": {"should": clauses}},
        "query_weight": query_weight,
        "rescore_query_weight": 1.0,
        "score_mode": "total",
    }
    return {"window_size": window, "query": query}


def build_two_step_query(
    vector: SparseVector,
    *,
    field_name: str = VECTOR_FIELD,
    first_field: str = FIRST_PHASE_FIELD,
    pruning: Pruning | None = None,
    terms: int = DEFAULT_FIRST_PHASE_TERMS,
    window: int | None = None,
    filters: Sequence[Mapping[str, Any]] | None = None,
    size: int = 10,
    from_: int = 0,
    source: bool | Sequence[str] | None = None,
    max_clauses: int = DEFAULT_MAX_CLAUSES,
    engine: Engine,
    totals: bool = False,
    deferred: frozenset[str] = frozenset(),
    engine_pruning: PruningConfig | None = None,
) -> QueryPlan:
    """Two-step search ("Two-Step SPLADE", ECIR 2024) on an index with the pruned first-phase field: phase one
    sends the query's `terms` heaviest terms to `first_field` (each document's heaviest terms only: short posting
    lists); a `rescore` replaces the score of the best `window` documents with the exact dot product of every
    (kept) query term on the full field (`query_weight` 0), so each hit's score IS its exact score.

    Documents outside the window, or whose pruned vector shares no term with phase one's, are missed; a caller
    that gets fewer hits than it asked for falls back to `build_splade_query`. Phase one skips the `deferred` terms
    (the cost rule's: frequent and light) before taking the heaviest, and asks for `engine_pruning` when given.
    """
    kept, dropped, notes = _fitted(vector, pruning, max_clauses, filters)
    if not kept:
        return _empty(size, from_, source, totals, notes)
    window = max(window or (size + from_) * DEFAULT_TWO_STEP_WINDOW_FACTOR, size + from_)
    body = {
        "query": _bool_query(
            engine.vector_clauses(phase_one_terms(kept, deferred).top_k(terms), first_field, engine_pruning), filters
        ),
        "rescore": _rescore(engine.vector_clauses(kept, field_name), window, query_weight=0.0),
    }
    return QueryPlan(_page(body, size, from_, source, totals), kept, dropped, notes)


def build_bm25_query(
    text: str,
    *,
    fields: Sequence[str] = ("title", "text"),
    filters: Sequence[Mapping[str, Any]] | None = None,
    size: int = 10,
    from_: int = 0,
    source: bool | Sequence[str] | None = None,
    totals: bool = False,
) -> dict[str, Any]:
    """The BM25 baseline on the analysed text fields."""
    match = {"multi_match": {"query": text, "fields": list(fields), "type": "best_fields"}}
    query: dict[str, Any] = {"bool": {"must": [match]}}
    if filters:
        query["bool"]["filter"] = [dict(f) for f in filters]
    return _page({"query": query}, size, from_, source, totals)


def cluster_max_clauses(client: Any) -> int:
    """The clause limit the cluster enforces, read live (see each engine's `clause_limit`).

    A user allowed to search but not to read cluster settings or nodes info (the searcher role of docs/security.md
    on OpenSearch) gets the default limit: queries are cut to it, which is right unless the cluster raised it.
    """
    engine = engine_for(client)
    try:
        return engine.clause_limit(engine.clause_limit_request(client))
    except Exception as err:
        return refused_clause_limit(err)


def refused_clause_limit(err: Exception) -> int:
    """The clause limit for a searcher whose read of it failed with `err`: the default when it was refused (see
    `cluster_max_clauses`); any other error is raised."""
    if not is_refusal(err):
        raise err
    return DEFAULT_MAX_CLAUSES
