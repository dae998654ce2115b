"""What a searcher reads of its index when it opens, written once for `Searcher` and `AsyncSearcher`.

`opening` is free of I/O: it yields each request to make (a function of the client, which returns the answer, or a
coroutine of it on an asyncio client), is sent the answer or thrown the error, and leaves what it learnt on the
searcher's `_SearchLogic`. `open_index` and `async_open_index` make the requests, on a client of each kind.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from splade_os.df import df_request, table_from_answer
from splade_os.errors import IndexNotFoundError
from splade_os.mappings import check_encoder_meta, check_vector_field, meta_from_mapping
from splade_os.retrieval.query import refused_clause_limit
from splade_os.retrieval.two_phase import max_rescore_window, refused_rescore_cap, rescore_cap_request

if TYPE_CHECKING:
    from splade_os.retrieval.search import _SearchLogic

Request = Callable[[Any], Any]
Opening = Generator[Request, Any, None]


def opening(logic: _SearchLogic, force: bool) -> Opening:
    """The index must exist and hold the vector field, built with the searcher's encoder (unless `force`); `_meta`
    says how its documents were encoded and any two-phase setting `tune` stored. A user who may not read cluster or
    index settings (the searcher role of docs/security.md) gets the default clause limit and rescore cap: right
    unless the cluster or the index raised them."""
    index, engine = logic.index, logic.engine
    if not (yield lambda client: client.indices.exists(index=index)):
        raise missing_index(index)
    mapping = yield lambda client: client.indices.get_mapping(index=index)
    check_vector_field(index, mapping, logic.field_name, engine=engine)
    meta = meta_from_mapping(mapping)
    check_encoder_meta(index, meta, logic.encoder.manifest, force=force)
    logic.use_stored(meta)
    try:
        logic.max_clauses = engine.clause_limit((yield engine.clause_limit_request))
    except Exception as err:
        logic.max_clauses = refused_clause_limit(err)
    try:
        logic.max_rescore_window = max_rescore_window(
            (yield lambda client: client.indices.get_settings(**rescore_cap_request(index)))
        )
    except Exception as err:
        logic.max_rescore_window = refused_rescore_cap(err)
    if logic.wants_df and len(mapping) == 1:  # an alias over several indices has no one table
        concrete = next(iter(mapping))
        logic.use_df(table_from_answer(concrete, (yield lambda client: client.search(**df_request(concrete)))))
    elif logic.wants_df:
        logic.use_df(None)


def missing_index(index: str) -> IndexNotFoundError:
    return IndexNotFoundError(
        f"index {index!r} does not exist: create it with `splade-os index CORPUS --index {index}`"
    )


def open_index(logic: _SearchLogic, client: Any, force: bool) -> None:
    """Run `opening` on a synchronous client."""
    steps = opening(logic, force)
    request = _next(steps)
    while request is not None:
        try:
            answer = request(client)
        except Exception as err:
            request = _next(steps, error=err)
        else:
            request = _next(steps, answer)


async def async_open_index(logic: _SearchLogic, client: Any, force: bool) -> None:
    """Run `opening` on an asyncio client."""
    steps = opening(logic, force)
    request = _next(steps)
    while request is not None:
        try:
            answer = await request(client)
        except Exception as err:
            request = _next(steps, error=err)
        else:
            request = _next(steps, answer)


def _next(steps: Opening, answer: Any = None, error: Exception | None = None) -> Request | None:
    """The request `steps` wants next, once sent the answer to the last one (or thrown its error); None when done."""
    try:
        return steps.throw(error) if error is not None else steps.send(answer)
    except StopIteration:
        return None
