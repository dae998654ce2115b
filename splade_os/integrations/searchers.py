"""What the framework adapters share: the searchers a retriever queries through, and hits as text plus metadata.

A retriever wraps the caller's `Searcher` (and `AsyncSearcher`), which it never closes or changes, or one it builds
from an index, a model and connection settings, which it owns and closes. Every query goes through
`Searcher.search` / `AsyncSearcher.search` unchanged, so a retriever returns exactly the searcher's hits."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from splade_os.connection import ConnectionSettings
from splade_os.errors import InputError, warn_keyword_form
from splade_os.retrieval.options import SearchOptions, search_options
from splade_os.retrieval.search import MODES, AsyncSearcher, Hit, Mode, QueryEncoder, Searcher

Filter = Sequence[Mapping[str, Any]] | Mapping[str, Any] | None
R = TypeVar("R", bound="Retriever")


@dataclass(frozen=True)
class Query:
    """How a retriever searches: `k` hits in `mode`, under `filter`; `fields` are the source fields copied into
    each result's metadata, `text_field` the field that becomes its text (default: the one the index encoded)."""

    k: int = 10
    mode: Mode = "splade"
    filter: Filter = None
    fields: Sequence[str] = ()
    text_field: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"k must be a whole number of at least 1, got {self.k!r}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if isinstance(self.fields, str):  # one name given as a string would be read as its letters
            raise InputError(f"fields must be a list of field names, got the string {self.fields!r}")
        object.__setattr__(self, "fields", tuple(self.fields))


@dataclass(frozen=True)
class Passage:
    """One hit as a framework wants it: the text, and metadata with id, score, title and the requested fields."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Recipe:
    """How an owned searcher was made, to make its asyncio twin the same way."""

    index: str
    settings: ConnectionSettings | None
    force: bool
    options: SearchOptions


class Searchers:
    """The searchers one retriever uses. `close()`/`aclose()` close only those it built itself."""

    def __init__(self, searcher: Searcher | None = None, async_searcher: AsyncSearcher | None = None) -> None:
        if searcher is None and async_searcher is None:
            raise InputError(
                "give the retriever a Searcher (or an AsyncSearcher), or build it with from_index(index, model)"
            )
        for given, kind in ((searcher, Searcher), (async_searcher, AsyncSearcher)):
            if given is not None and not isinstance(given, kind):
                raise InputError(f"expected a splade_os {kind.__name__}, got {type(given).__name__}")
        self.searcher = searcher
        self.async_searcher = async_searcher
        self._recipe: _Recipe | None = None
        self._owned_async: AsyncSearcher | None = None
        self._owned_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def build(
        cls,
        index: str,
        model: QueryEncoder | str | Path,
        *,
        settings: ConnectionSettings | None = None,
        force: bool = False,
        options: SearchOptions | None = None,
        **keywords: Any,
    ) -> Searchers:
        """A `Searcher` made from index, model, settings (environment when None) and `options`, owned by the
        retriever; the asyncio searcher is made on the first async query and shares its encoder. The fields of
        `SearchOptions` as keywords are the deprecated form of earlier versions."""
        opts = search_options("Searchers.build", options, keywords)
        built = cls(Searcher(index, model, settings=settings, force=force, options=opts))
        built._recipe = _Recipe(index, settings, force, opts)
        return built

    @property
    def logic(self) -> Any:
        return (self.searcher or self.async_searcher).logic  # type: ignore[union-attr]

    def _fields(self, query: Query) -> tuple[str, str, list[str]]:
        title_field, text_field = self.logic.encoded_from
        text_field = query.text_field or text_field
        return title_field, text_field, list(dict.fromkeys([title_field, text_field, *query.fields]))

    def _passages(self, hits: list[Hit], query: Query) -> list[Passage]:
        title_field, text_field, _ = self._fields(query)
        passages = []
        for hit in hits:
            metadata = {"id": hit.id, "score": hit.score, "title": str(hit.source.get(title_field) or "")}
            metadata.update({name: hit.source.get(name) for name in query.fields})
            passages.append(Passage(hit.id, hit.score, str(hit.source.get(text_field) or ""), metadata))
        return passages

    def search(self, text: str, query: Query) -> list[Passage]:
        if self.searcher is None:
            raise InputError("this retriever holds only an AsyncSearcher: query it with the async methods")
        hits = self.searcher.search(text, query.k, query.mode, query.filter, fields=self._fields(query)[2]).hits
        return self._passages(hits, query)

    async def asearch(self, text: str, query: Query) -> list[Passage]:
        fields = self._fields(query)[2]
        searcher = await self._async()
        if searcher is None:  # a caller's Searcher alone: its (thread-safe) search runs in a worker thread
            assert self.searcher is not None
            result = await asyncio.to_thread(
                self.searcher.search, text, query.k, query.mode, query.filter, fields=fields
            )
        else:
            result = await searcher.search(text, query.k, query.mode, query.filter, fields=fields)
        return self._passages(result.hits, query)

    async def _async(self) -> AsyncSearcher | None:
        if self._recipe is None:
            return self.async_searcher
        loop = asyncio.get_running_loop()
        if self._owned_async is not None and self._owned_loop is not loop:
            # An asyncio client's connections belong to the event loop that opened them (an earlier asyncio.run):
            # this loop gets its own searcher.
            stale, self._owned_async = self._owned_async, None
            await stale.close()
        if self._owned_async is None:
            recipe = self._recipe
            assert self.searcher is not None
            made = await AsyncSearcher.create(
                recipe.index,
                self.searcher.logic.encoder,
                settings=recipe.settings,
                force=recipe.force,
                options=recipe.options,
            )
            if self._owned_async is not None:  # another task of this loop made one meanwhile
                await made.close()
            else:
                self._owned_async, self._owned_loop = made, loop
        return self._owned_async

    def close(self) -> None:
        """Close the searcher this retriever built (the encoder and client with it); a caller's stay open. An
        asyncio searcher it built is closed by `aclose()`."""
        if self._recipe is not None and self.searcher is not None:
            self.searcher.close()

    async def aclose(self) -> None:
        """Close every searcher this retriever built, the asyncio one first; a caller's stay open."""
        if self._owned_async is not None:
            owned, self._owned_async = self._owned_async, None
            await owned.close()
        self.close()


class Retriever:
    """What both retrievers share: `from_index` (a retriever owning its searcher) and closing what they own."""

    _searchers: Searchers

    @classmethod
    def from_index(
        cls: type[R],
        index: str,
        model: QueryEncoder | str | Path,
        *,
        settings: ConnectionSettings | None = None,
        force: bool = False,
        search_options: SearchOptions | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> R:
        """A retriever owning a `Searcher(index, model, settings=..., force=..., options=search_options)`
        (connection from the environment when `settings` is None); `options` are the retriever's own (k, mode,
        filter, fields, text_field, ...). `search_options` as a dict of `SearchOptions` fields is the deprecated form
        of earlier versions."""
        if isinstance(search_options, Mapping):
            search_options = SearchOptions(**search_options)
            warn_keyword_form(
                f"{cls.__name__}.from_index", ["search_options"], "search_options=SearchOptions(...) instead of a dict"
            )
        built = Searchers.build(index, model, settings=settings, force=force, options=search_options)
        try:
            retriever = cls(searcher=built.searcher, **options)  # type: ignore[call-arg]
        except BaseException:
            built.close()
            raise
        retriever._searchers = built
        return retriever

    def close(self) -> None:
        """Close the searcher this retriever built (its encoder and client); a caller's stays open."""
        self._searchers.close()

    async def aclose(self) -> None:
        """Close every searcher this retriever built, the asyncio one too; a caller's stay open."""
        await self._searchers.aclose()
