"""The HTTP service (Starlette): query and document encoding, search, health, metrics and the playground page.

Every endpoint answers JSON; a refusal is one line saying what is wrong (see `errors.py`), and an unexpected error
is a 500 whose detail goes to the service's log only. `build_app` takes a loaded encoder and the connection
settings; `splade-os serve` runs the app on uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from splade_os.connection import ConnectionSettings
from splade_os.model.encoder import SpladeEncoder
from splade_os.redaction import redact
from splade_os.retrieval.results import result_to_json
from splade_os.serve.encoding import BatchedEncoder
from splade_os.serve.errors import Refusal, refusal_for
from splade_os.serve.metrics import ServeMetrics
from splade_os.serve.requests import EmbedRequest, EncodeRequest, SearchRequest, read_json
from splade_os.serve.searchers import Searchers
from splade_os.serve.settings import ServeSettings

log = logging.getLogger("splade_os.serve")
PLAYGROUND = Path(__file__).with_name("playground.html")
Handler = Callable[[Request], Awaitable[Response]]


class Service:
    """What the endpoints share: the batched encoder, the searchers, the metrics, the settings."""

    def __init__(self, encoder: SpladeEncoder, connection: ConnectionSettings, settings: ServeSettings) -> None:
        self.settings = settings
        self.encoder = encoder
        self.metrics = ServeMetrics(lambda: self.batched.depth)
        self.batched = BatchedEncoder(encoder, settings.batching, on_batch=self.metrics.batch_size.observe)
        self.searchers = Searchers(connection, self.batched.query_encoder(), threads=settings.search_threads)
        self._search_pool = ThreadPoolExecutor(settings.search_threads, thread_name_prefix="splade-os-search")

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self._search_pool.submit(fn, *args))

    def close(self) -> None:
        """Finish the batches queued and running, then release the searchers and the cluster client."""
        self.batched.close()
        self._search_pool.shutdown(wait=True)
        self.searchers.close()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _endpoint(service: Service, name: str, handler: Handler, *, auth: bool = True) -> Handler:
    """`handler` with the API key checked, refusals answered as JSON, no traceback to the client, metrics counted."""

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        error_type = None
        in_flight = service.metrics.in_flight.labels(name)
        in_flight.inc()
        try:
            if auth and not service.settings.authorized(request.headers.get("authorization")):
                refusal = Refusal(
                    401,
                    "missing or wrong API key: send the header `Authorization: Bearer KEY` with "
                    "the key of the service's --api-key-file",
                    "Unauthorized",
                )
                refusal.headers["WWW-Authenticate"] = "Bearer"
                raise refusal
            response = await handler(request)
        except Exception as err:
            known = refusal_for(err, service.searchers.where)
            if known is None:
                log.error("%s failed:\n%s", name, redact(traceback.format_exc()))
            refusal = known or Refusal(500, "internal error: the service's log has the details", "Internal")
            error_type = refusal.error_type
            response = _json(refusal.body(), refusal.status, refusal.headers)
        finally:
            in_flight.dec()
        service.metrics.observe(name, response.status_code, time.perf_counter() - started, error_type)
        return response

    return run


def build_app(
    encoder: SpladeEncoder, connection: ConnectionSettings, settings: ServeSettings | None = None
) -> Starlette:
    """The service's ASGI app over a loaded encoder (which stays the caller's: the app closes only what it made)."""
    settings = settings or ServeSettings()
    service = Service(encoder, connection, settings)
    limits = settings.limits

    async def encode(request: Request) -> Response:
        body = EncodeRequest.parse(await read_json(request, limits), limits)
        vectors = await asyncio.wrap_future(service.batched.submit(body.texts, body.kind))
        return _json({"kind": body.kind, "vectors": [v.to_dict() for v in vectors]})

    async def embed_sparse(request: Request) -> Response:
        body = EmbedRequest.parse(await read_json(request, limits), request.query_params, limits)
        body.check_length(encoder)
        vectors = await asyncio.wrap_future(service.batched.submit(body.inputs, body.kind))
        return _json(body.answer(vectors, service.batched.token_id))

    async def search(request: Request) -> Response:
        body = SearchRequest.parse(await read_json(request, limits), limits, settings.index)
        searcher = await service.in_thread(service.searchers.get, body.index)
        result = await service.in_thread(body.run, searcher)
        return _json({"index": body.index, **result_to_json(result, body.explain)})

    async def health(request: Request) -> Response:
        index = request.query_params.get("index") or settings.index
        report: dict[str, Any] = {
            "model": {
                "name": encoder.name,
                "loaded": not encoder.closed,
                "sha256": str(encoder.manifest.get("sha256", ""))[:12],
            }
        }
        report.update(await service.in_thread(service.searchers.health, index))
        ok = report["model"]["loaded"] and report["cluster"]["reachable"] and "error" not in report["cluster"]
        ok = ok and (index is None or bool(report["index"].get("exists") and report["index"].get("encoder_matches")))
        report["status"] = "ok" if ok else "unavailable"
        return _json(report, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    async def playground(request: Request) -> Response:
        page = PLAYGROUND.read_text(encoding="utf-8")
        return HTMLResponse(page.replace("__DEFAULT_INDEX__", json.dumps(settings.index or "").replace("<", "\\u003c")))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        what = "no such endpoint" if status == 404 else "method not allowed" if status == 405 else "refused"
        return _json(
            {
                "error": f"{what}: {request.method} {request.url.path} (see docs/serving.md)",
                "error_type": "NotFound" if status == 404 else "Validation",
            },
            status,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(service.close)

    routes = [
        Route("/embed_sparse", _endpoint(service, "embed_sparse", embed_sparse), methods=["POST"]),
        Route("/encode", _endpoint(service, "encode", encode), methods=["POST"]),
        Route("/search", _endpoint(service, "search", search), methods=["POST"]),
        Route("/health", _endpoint(service, "health", health, auth=False), methods=["GET"]),
        Route("/metrics", _endpoint(service, "metrics", metrics), methods=["GET"]),
        Route("/", _endpoint(service, "playground", playground, auth=False), methods=["GET"]),
    ]
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: not_found}
    )
    app.state.service = service
    return app
