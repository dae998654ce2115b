"""Per-query search for applications: SPLADE, BM25, hybrid and two-phase, with typed hits and explanations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from splade_os.connection import ConnectionSettings
from splade_os.df import DfTable
from splade_os.engines import Engine, async_engine_for, clients, engine_for
from splade_os.engines.base import PruningConfig
from splade_os.engines.clients import connect
from splade_os.errors import ConfigError, EngineError, InputError
from splade_os.mappings import (
    FIRST_PHASE_FIELD,
    candidate_field,
    recorded_candidates,
    recorded_fields,
    recorded_first_phase,
)
from splade_os.model.settings import EncoderSettings
from splade_os.retrieval import explanations
from splade_os.retrieval.explanations import expansion_terms, explain_hit, prune_like_index
from splade_os.retrieval.fusion import linear_fusion, reciprocal_rank_fusion
from splade_os.retrieval.opening import async_open_index, open_index
from splade_os.retrieval.options import HybridParams as HybridParams  # importable from here, as before it moved
from splade_os.retrieval.options import SearchOptions, search_options
from splade_os.retrieval.query import (
    QueryPlan,
    build_bm25_query,
    build_splade_query,
    build_two_phase_query,
    build_two_step_query,
)
from splade_os.retrieval.two_phase import (
    DEFAULT_MAX_RESCORE_WINDOW,
    TwoPhaseSettings,
    on_held_field,
    pruned_field,
    rescore_window,
    stored_settings,
)
from splade_os.vectors import SparseVector

Mode = Literal["splade", "bm25", "hybrid", "two-phase"]
MODES: tuple[Mode, ...] = ("splade", "bm25", "hybrid", "two-phase")
explain = explanations.explain  # importable from here, as before it moved
MAX_RESULT_WINDOW = 10_000  # the engines' default index.max_result_window: from + size beyond it is refused


class QueryEncoder(Protocol):
    """What the searcher needs from an encoder (SpladeEncoder satisfies it)."""

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: dict[str, Any]
    explanation: list[tuple[str, float]] | None = None

    @property
    def title(self) -> str:
        return str(self.source.get("title") or "")


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    mode: Mode
    query_vector: SparseVector = field(default_factory=SparseVector)
    took_ms: float = 0.0
    notes: tuple[str, ...] = ()
    expansions: frozenset[str] = frozenset()
    """Query terms the model added: they are not among the tokens of the query text."""


def _load_encoder(model: QueryEncoder | str | Path) -> QueryEncoder:
    if isinstance(model, str | Path):
        from splade_os.model.encoder import SpladeEncoder

        return SpladeEncoder(model)
    return model


def _close_encoder(encoder: object) -> None:
    close = getattr(encoder, "close", None)
    if callable(close):
        close()


def _validate_query(text: object, k: int, mode: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("the query text is empty: give the words to search for")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return text


@dataclass
class _Prepared:
    """The requests one query needs, shared by the sync and async searchers."""

    mode: Mode
    vector: SparseVector
    requests: list[dict[str, Any]]
    notes: tuple[str, ...]
    expansions: frozenset[str]
    from_: int = 0
    pages: list[tuple[int, int]] = field(default_factory=list)  # per request: (from, size) in (-score, id) order
    # per request that may come back short (two-step search): the exact request that takes its place then
    fallbacks: dict[int, dict[str, Any]] = field(default_factory=dict)


class _SearchLogic:
    """Request building and response handling, free of I/O so both searchers share it."""

    def __init__(
        self, index: str, encoder: QueryEncoder, options: SearchOptions | None = None, *, engine: Engine
    ) -> None:
        self.engine = engine
        self.index = index
        self.encoder = encoder
        self.options = options = options or SearchOptions()
        self.field_name = options.field_name
        self.pruning = options.pruning
        self.hybrid = options.hybrid
        # An explicit setting wins over one stored with the index by `tune`, which wins over the defaults.
        self.two_phase: TwoPhaseSettings | None = options.given_two_phase
        self.two_phase_source = "given" if self.two_phase is not None else "default"
        self.bm25_fields = tuple(options.bm25_fields)
        self.max_clauses = 1024
        # What the index recorded about its documents (use_stored): whether `_source` holds their vectors, and the
        # pruning they were indexed with, so an explanation can rebuild a vector the index does not return.
        self.vectors_in_source = True
        self.document_pruning: Mapping[str, Any] = {}
        # ... and the fields its vectors were encoded from and how long texts were cut, to encode them the same way.
        self.encoded_from: tuple[str, str] = ("title", "text")
        self.document_encoding: EncoderSettings | None = None  # None: the index recorded none
        # The k of the index's pruned first-phase field: two-phase mode runs two-step search on it. None: no field.
        self.first_phase_k: int | None = None
        self.first_phase_candidates: tuple[int, ...] = ()  # the k of its candidate pruned fields, for `tune`
        self.df: DfTable | None = None  # the index's df table, read when a two-phase setting's cost rule needs it
        self.max_rescore_window = DEFAULT_MAX_RESCORE_WINDOW  # the index's cap on a rescore window
        self.tuned_k: int | None = None  # the k a stored (tuned) setting's window was chosen at

    def _source(self, explain: bool, fields: Sequence[str] | None) -> dict[str, Any]:
        # Vectors are large; send them back only when an explanation needs them (or, when the index keeps them out
        # of `_source`, the texts an explanation re-encodes).
        needs = [self.field_name] if self.vectors_in_source else list(self.encoded_from)
        if fields is not None:
            return {"includes": [*fields, *(needs if explain else [])]}
        # The pruned first-phase field is never returned: nothing reads it back, and it is a copy of the vector's head.
        pruned = [FIRST_PHASE_FIELD, *(candidate_field(k) for k in self.first_phase_candidates)]
        return {"excludes": pruned} if explain else {"excludes": [self.field_name, *pruned]}

    def prepare(
        self,
        text: str,
        k: int,
        mode: Mode,
        filters: Sequence[Mapping[str, Any]] | None,
        explain: bool,
        from_: int = 0,
        fields: Sequence[str] | None = None,
    ) -> _Prepared:
        text = _validate_query(text, k, mode)
        if from_ < 0:
            raise InputError(f"from_ must be >= 0, got {from_}")
        vector = SparseVector() if mode == "bm25" else self.encoder.encode_queries([text])[0]
        common: dict[str, Any] = {
            "field_name": self.field_name,
            "pruning": self.pruning,
            "filters": filters,
            "engine": self.engine,
        }
        source = self._source(explain, fields)
        # Hybrid pages over the fused list, so each side fetches from the top, deep enough for the page.
        wanted = (0, max(k + from_, self.hybrid.depth)) if mode == "hybrid" else (from_, k)
        lo, hi = tie_window(*wanted)
        page: dict[str, Any] = {"size": hi - lo, "from_": lo}
        plan: QueryPlan | None = None
        fallback: QueryPlan | None = None
        requests: list[dict[str, Any]] = []
        if mode in ("bm25", "hybrid"):
            requests.append(build_bm25_query(text, fields=self.bm25_fields, filters=filters, **page))
            requests[-1]["_source"] = source
        if mode in ("splade", "hybrid"):
            plan = build_splade_query(vector, max_clauses=self.max_clauses, **common, **page)
        elif mode == "two-phase" and (self.two_phase or TwoPhaseSettings()).two_step_on(bool(self.first_phase_k)):
            settings, cut = self.windowed(self.two_phase or TwoPhaseSettings(), k + from_, two_step=True)
            common["pruning"] = settings.pruning(self.pruning)
            window = settings.window_for(k + from_, two_step=True)
            pruned_field, pruned_k = self.first_field(settings)
            plan = build_two_step_query(
                vector,
                terms=settings.terms,
                window=window,
                max_clauses=self.max_clauses,
                first_field=pruned_field,
                **self.phase_one(settings, vector),
                **common,
                **page,
            )
            # Phase one can find fewer hits than the page (a query none of whose heaviest terms is among any
            # document's heaviest): then the exact query on the full field answers instead.
            fallback = build_splade_query(vector, max_clauses=self.max_clauses, **common, **page)
            fallback.body["_source"] = source
            note = (
                f"two-step: {settings.describe(two_step=True)} on {pruned_field} (top {pruned_k} "
                f"terms per document), exact scores ({self.two_phase_source}){cut}"
            )
            plan = replace(plan, notes=(*plan.notes, note))
        elif mode == "two-phase":
            settings, cut = self.windowed(self.two_phase or TwoPhaseSettings(), k + from_, two_step=False)
            common["pruning"] = settings.pruning(self.pruning)
            plan = build_two_phase_query(
                vector,
                ratio=settings.ratio,
                window=settings.window_for(k + from_),
                max_clauses=self.max_clauses,
                **self.phase_one(settings, vector),
                **common,
                **page,
            )
            # As for two-step: a phase one that matches fewer documents than the page is answered exactly instead.
            fallback = build_splade_query(vector, max_clauses=self.max_clauses, **common, **page)
            fallback.body["_source"] = source
            note = f"two-phase: {settings.describe()} ({self.two_phase_source}{cut})"
            plan = replace(plan, notes=(*plan.notes, note))
        if plan is not None:
            plan.body["_source"] = source
            requests.append(plan.body)
        notes = plan.notes if plan is not None else ()
        terms = plan.terms if plan is not None else vector
        expansions = expansion_terms(self.encoder, text, terms)
        prepared = _Prepared(mode, terms, requests, notes, expansions, from_, [wanted] * len(requests))
        if fallback is not None and terms:  # a query with no term left matches nothing either way
            prepared.fallbacks[len(requests) - 1] = fallback.body
        return prepared

    def windowed(self, settings: TwoPhaseSettings, size: int, *, two_step: bool) -> tuple[TwoPhaseSettings, str]:
        """`settings` with the window a page ending at hit `size` gets (see `rescore_window`), and a note when the
        index's max_rescore_window cut it."""
        window, cut = rescore_window(
            settings, size, two_step=two_step, tuned_k=self.tuned_k, cap=self.max_rescore_window
        )
        if window == settings.window_for(size, two_step=two_step):
            return settings, ""  # as the setting says: its own description ("5 x k") stays true
        return replace(settings, window=window), f"; {cut}" if cut else ""

    def fall_back(self, prepared: _Prepared, responses: list[dict[str, Any]]) -> list[int]:
        """The requests that came back with fewer hits than they asked for and have an exact request to take their
        place: each is swapped for it (once), to be sent again. Exact search would fill the page where phase one
        could not, so a short answer is never returned as the result."""
        again = []
        for i, exact in list(prepared.fallbacks.items()):
            found = len(responses[i]["hits"]["hits"])
            if found < prepared.requests[i]["size"]:
                prepared.requests[i] = exact
                prepared.notes = (
                    *prepared.notes,
                    f"{prepared.mode}: phase one found {found} hits, fewer than "
                    "asked for: answered by exact search on the full field",
                )
                again.append(i)
            del prepared.fallbacks[i]
        return again

    def refetch(self, prepared: _Prepared, responses: list[dict[str, Any]]) -> list[int]:
        """The requests whose page has hits tied with hits outside what was fetched, each widened to take the
        whole tie (rare: it takes equal scores at a page's edge); [] when every page can be ordered as it is."""
        again = []
        for i, (response, (from_, size)) in enumerate(zip(responses, prepared.pages, strict=True)):
            body = prepared.requests[i]
            lo, hi = body.get("from", 0), body.get("from", 0) + body["size"]
            scores = [h["_score"] for h in response["hits"]["hits"]]
            first, last = from_ - lo, min(from_ - lo + size, len(scores)) - 1
            start_tied = lo > 0 and last >= first and scores[0] == scores[first]
            end_tied = len(scores) == hi - lo and last >= 0 and scores[-1] == scores[last] and hi < MAX_RESULT_WINDOW
            if start_tied or end_tied:
                lo = 0 if start_tied else lo
                hi = min(lo + 2 * (hi - lo), MAX_RESULT_WINDOW) if end_tied else hi
                body["from"], body["size"] = lo, hi - lo
                if "rescore" in body:  # the rescored window must still hold every hit asked for
                    body["rescore"]["window_size"] = max(body["rescore"]["window_size"], hi)
                again.append(i)
        return again

    def _ranked(self, prepared: _Prepared, responses: list[dict[str, Any]]) -> list[list[tuple[str, float]]]:
        # Equal scores come back in the order documents were written; ordered by id instead, the same documents
        # rank the same however they were indexed. `refetch` made each window hold every hit tied with its page.
        ranked = []
        for body, response, (from_, size) in zip(prepared.requests, responses, prepared.pages, strict=True):
            hits = [(h["_id"], float(h["_score"])) for h in response["hits"]["hits"]]
            hits.sort(key=lambda h: (-h[1], h[0]))
            start = from_ - body.get("from", 0)
            ranked.append(hits[start : start + size])
        return ranked

    def use_stored(self, meta: Mapping[str, Any]) -> None:
        """Take the two-phase setting `tune` stored in the index's `_meta`, unless one was given explicitly."""
        self.vectors_in_source = meta.get("vectors_in_source", True) is not False
        pruning = meta.get("pruning")
        self.document_pruning = pruning if isinstance(pruning, Mapping) else {}
        fields = recorded_fields(meta)
        self.encoded_from = (fields["title"], fields["text"])
        self.document_encoding = EncoderSettings.from_meta(meta.get("encoding"))
        self.first_phase_k = recorded_first_phase(meta)
        self.first_phase_candidates = recorded_candidates(meta)
        stored = stored_settings(meta)
        if self.two_phase is None and stored is not None:
            self.two_phase, self.two_phase_source = (
                stored.settings,
                f"tuned {stored.tuned_at[:10]} at {stored.documents:,} documents",
            )
            self.two_phase, lost = on_held_field(stored.settings, self.first_phase_k, self.first_phase_candidates)
            self.two_phase_source, self.tuned_k = self.two_phase_source + lost, stored.k

    def first_field(self, settings: TwoPhaseSettings) -> tuple[str, int]:
        """The pruned field phase one of two-step search queries for `settings`, and its k."""
        return pruned_field(settings, self.index, self.first_phase_k, self.first_phase_candidates)

    @property
    def wants_df(self) -> bool:
        return self.two_phase is not None and self.two_phase.df_ratio is not None

    def use_df(self, table: DfTable | None) -> None:
        """Take the index's df table (None: it has none). A stored setting whose cost rule has no table to read
        runs without the rule (and says so); a setting given explicitly is refused."""
        self.df = table
        if table is not None or not self.wants_df or self.two_phase is None:
            return
        if self.two_phase_source == "given":
            raise ConfigError(self._no_table())
        self.two_phase = replace(self.two_phase, df_ratio=None)
        self.two_phase_source += f"; its df rule is off: {self._no_table()}"

    def _no_table(self) -> str:
        return f"{self.index!r} has no df table for the cost rule: run `splade-os df {self.index}`"

    def phase_one(self, settings: TwoPhaseSettings, vector: SparseVector) -> dict[str, Any]:
        """What phase one leaves to the rescore or the engine: the cost rule's terms, the engine's own pruning."""
        options: dict[str, Any] = {}
        if settings.df_ratio is not None:
            if self.df is None:
                raise ConfigError(self._no_table())
            options["deferred"] = self.df.costly(vector, settings.df_ratio, settings.df_weight)
        if settings.engine_pruning:
            options["engine_pruning"] = PruningConfig()
        return options

    def request_for(self, vector: SparseVector, size: int, settings: TwoPhaseSettings | None) -> dict[str, Any]:
        """The bare request `tune` times: exact (settings None) or two-phase, no source fields returned."""
        common: dict[str, Any] = {
            "field_name": self.field_name,
            "engine": self.engine,
            "size": size,
            "max_clauses": self.max_clauses,
            "source": False,
        }
        if settings is None:
            return build_splade_query(vector, pruning=self.pruning, **common).body
        if settings.two_step_on(bool(self.first_phase_k)):
            return build_two_step_query(
                vector,
                pruning=settings.pruning(self.pruning),
                terms=settings.terms,
                first_field=self.first_field(settings)[0],
                window=settings.window_for(size, two_step=True),
                **self.phase_one(settings, vector),
                **common,
            ).body
        return build_two_phase_query(
            vector,
            pruning=settings.pruning(self.pruning),
            ratio=settings.ratio,
            window=settings.window_for(size),
            **self.phase_one(settings, vector),
            **common,
        ).body

    def exchanges(self, prepared: _Prepared) -> Generator[list[int], list[dict[str, Any]], list[dict[str, Any]]]:
        """The requests a search sends, free of I/O so both searchers share it: yields the indices of the
        requests (in `prepared.requests`) to send next, is sent their responses, and returns them all. First every
        request; then a two-step request that came back short again as the exact one, and a page whose last tie
        straddles its edge again wider, until nothing is left to send."""
        responses = yield list(range(len(prepared.requests)))
        redo = self.fall_back(prepared, responses) or self.refetch(prepared, responses)
        while redo:
            answers = yield redo
            for i, answer in zip(redo, answers, strict=True):
                responses[i] = answer
            redo = self.refetch(prepared, responses)
        _check_responses(responses, self.index)
        return responses

    def result(
        self, prepared: _Prepared, responses: list[dict[str, Any]], k: int, explain: bool, started: float
    ) -> SearchResult:
        hits = self.finish(prepared, responses, k, explain)
        took = (time.perf_counter() - started) * 1000
        return SearchResult(hits, prepared.mode, prepared.vector, took, prepared.notes, prepared.expansions)

    def finish(self, prepared: _Prepared, responses: list[dict[str, Any]], k: int, explain: bool) -> list[Hit]:
        ranked = self._ranked(prepared, responses)
        sources = {h["_id"]: h.get("_source", {}) for r in responses for h in r["hits"]["hits"]}
        if prepared.mode == "hybrid":
            params = self.hybrid
            if params.fusion == "rrf":
                fused = reciprocal_rank_fusion(ranked, k=params.rrf_k, weights=params.weights)
            else:
                fused = linear_fusion(ranked, weights=params.weights, normalization=params.normalization)
            ranked_hits = fused[prepared.from_ : prepared.from_ + k]
        else:
            ranked_hits = ranked[0][:k]
        hits = []
        rebuilt = self._rebuilt_vectors([sources[d] for d, _ in ranked_hits]) if explain else []
        for i, (doc_id, score) in enumerate(ranked_hits):
            source = dict(sources[doc_id])
            vector_field = source.pop(self.field_name, None)
            why = None
            if explain:
                why = (
                    explain_hit(prepared.vector, vector_field, self.engine)
                    if vector_field
                    else prepared.vector.contributions(rebuilt[i])
                    if rebuilt
                    else []
                )
            hits.append(Hit(doc_id, score, source, why))
        return hits

    def _rebuilt_vectors(self, sources: list[Mapping[str, Any]]) -> list[SparseVector]:
        """Document vectors re-encoded from the hits' texts, for an index that keeps vectors out of `_source`.

        The same model (checked against `_meta`), fed the fields the index recorded and cutting long texts as it
        recorded (indices that recorded no cut get the encoder's own), and the recorded pruning give back the indexed
        vector."""
        encode = getattr(self.encoder, "encode_documents", None)
        if self.vectors_in_source or encode is None or not sources:
            return []
        title, text = self.encoded_from
        texts = [f"{s.get(title) or ''} {s.get(text) or ''}".strip() for s in sources]
        cut = {"settings": self.document_encoding} if self.document_encoding is not None else {}
        return [prune_like_index(v, self.document_pruning) for v in encode(texts, **cut)]


def tie_window(from_: int, size: int) -> tuple[int, int]:
    """The hits to fetch for hits `from_` to `from_ + size`: one more on each side, to see a tie across the edge."""
    return max(0, from_ - 1), min(from_ + size + 1, max(from_ + size, MAX_RESULT_WINDOW))


def _filters(given: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> Sequence[Mapping[str, Any]] | None:
    return [given] if isinstance(given, Mapping) else given


def _check_responses(responses: list[dict[str, Any]], index: str) -> None:
    for response in responses:
        if response.get("timed_out") or response.get("_shards", {}).get("failed"):
            raise EngineError(f"search on {index!r} was partial (timed out or shards failed): {response['_shards']}")


class Searcher:
    """Search one index with one encoder; the encoder loads once and is reused for every query. `options` (a
    `SearchOptions`) say how: query pruning, hybrid fusion, the two-phase setting, the fields searched. Its fields
    given as keywords instead are the form of earlier versions: they work, with a `KeywordFormWarning`.

    One searcher serves many threads at once (a web server's workers): the encoder and the client are thread-safe
    and a search changes no state of the searcher. A client or encoder passed in stays the caller's: `close()` (or
    leaving a `with` block) closes only what the searcher made itself.
    """

    def __init__(
        self,
        index: str,
        model: QueryEncoder | str | Path,
        *,
        client: Any = None,
        settings: ConnectionSettings | None = None,
        force: bool = False,
        options: SearchOptions | None = None,
        **keywords: Any,
    ) -> None:
        opts = search_options("Searcher", options, keywords)
        self._owns_client = client is None
        self._owns_encoder = isinstance(model, str | Path)
        self.client = client or connect(settings)
        encoder: QueryEncoder | None = None
        try:
            engine = engine_for(self.client)
            encoder = _load_encoder(model)
            self.logic = _SearchLogic(index, encoder, opts, engine=engine)
            open_index(self.logic, self.client, force)
        except BaseException:
            self._release(encoder)
            raise

    def _release(self, encoder: object) -> None:
        if self._owns_encoder and encoder is not None:
            _close_encoder(encoder)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index(self) -> str:
        return self.logic.index

    def search(
        self,
        text: str,
        k: int = 10,
        mode: Mode = "splade",
        filter: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        explain: bool = False,
        from_: int = 0,
        fields: Sequence[str] | None = None,
    ) -> SearchResult:
        """Hits `from_` to `from_ + k` for `text`; `fields` limits the source fields returned (default: all but
        the vector); `explain` adds each hit's matching tokens and their contributions."""
        start = time.perf_counter()
        prepared = self.logic.prepare(text, k, mode, _filters(filter), explain, from_, fields)
        exchange = self.logic.exchanges(prepared)
        wanted = next(exchange)
        try:
            while True:
                sent = [self.client.search(index=self.index, body=prepared.requests[i]) for i in wanted]
                wanted = exchange.send(sent)
        except StopIteration as done:
            return self.logic.result(prepared, done.value, k, explain, start)

    def close(self) -> None:
        """Close the client and the encoder if this searcher made them; a caller's own stay open."""
        self._release(self.logic.encoder)


class AsyncSearcher:
    """`Searcher` for asyncio applications, on the engine's asyncio client (`pip install 'splade-os[async]'`).

    Build it with `await AsyncSearcher.create(...)`, which takes what `Searcher` takes (`options=SearchOptions(...)`)
    and opens the index the same way. Encoding runs in a worker thread so the event loop stays free.
    """

    def __init__(self, client: Any, logic: _SearchLogic, *, owns_client: bool = False, owns_encoder: bool = False):
        self.client = client
        self.logic = logic
        self._owns_client, self._owns_encoder = owns_client, owns_encoder

    @classmethod
    async def create(
        cls,
        index: str,
        model: QueryEncoder | str | Path,
        *,
        client: Any = None,
        settings: ConnectionSettings | None = None,
        force: bool = False,
        options: SearchOptions | None = None,
        **keywords: Any,
    ) -> AsyncSearcher:
        opts = search_options("AsyncSearcher.create", options, keywords)
        owns_client, owns_encoder = client is None, isinstance(model, str | Path)
        if client is None:
            client = clients.async_client(settings or ConnectionSettings.from_env())
        encoder: QueryEncoder | None = None
        try:
            engine = await async_engine_for(client)
            encoder = await asyncio.to_thread(_load_encoder, model)
            logic = _SearchLogic(index, encoder, opts, engine=engine)
            await async_open_index(logic, client, force)
        except BaseException:
            if owns_encoder and encoder is not None:
                _close_encoder(encoder)
            if owns_client:
                await client.close()
            raise
        return cls(client, logic, owns_client=owns_client, owns_encoder=owns_encoder)

    async def search(
        self,
        text: str,
        k: int = 10,
        mode: Mode = "splade",
        filter: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        explain: bool = False,
        from_: int = 0,
        fields: Sequence[str] | None = None,
    ) -> SearchResult:
        """Hits `from_` to `from_ + k` for `text`; `fields` limits the source fields returned (default: all but
        the vector); `explain` adds each hit's matching tokens and their contributions."""
        start = time.perf_counter()
        prepared = await asyncio.to_thread(self.logic.prepare, text, k, mode, _filters(filter), explain, from_, fields)
        index = self.logic.index
        exchange = self.logic.exchanges(prepared)
        wanted = next(exchange)
        try:
            while True:
                sent = (self.client.search(index=index, body=prepared.requests[i]) for i in wanted)
                wanted = exchange.send(list(await asyncio.gather(*sent)))
        except StopIteration as done:
            return self.logic.result(prepared, done.value, k, explain, start)

    async def close(self) -> None:
        """Close the client and the encoder if this searcher made them; a caller's own stay open."""
        if self._owns_encoder:
            _close_encoder(self.logic.encoder)
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> AsyncSearcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
