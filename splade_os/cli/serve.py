"""`splade-os serve`: the HTTP service (encoding with dynamic batching, search, metrics, the playground) on uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from splade_os.cli.options import cli_errors, connection_options, device_options, model_option
from splade_os.connection import ConnectionSettings
from splade_os.errors import MissingDependencyError

F = TypeVar("F", bound=Callable[..., Any])


# (flag, default, help) of the batching settings and limits: each a whole number of at least 1.
_LIMITS = [
    ("--max-batch", 32, "Texts per encoder run at most (dynamic batching)."),
    ("--max-queue", 1024, "Texts waiting for a batch at most; past it requests get 503 with Retry-After."),
    ("--max-inputs", 32, "Texts per /encode or /embed_sparse request at most."),
    ("--max-text-chars", 10_000, "Characters per text or query at most."),
    ("--max-body-bytes", 1_048_576, "Bytes per request body at most."),
    ("--max-k", 100, "Hits per search at most."),
]


def _limit_options(func: F) -> F:
    for flag, default, text in reversed(_LIMITS):
        func = click.option(flag, type=click.IntRange(min=1), default=default, show_default=True, help=text)(func)
    return click.option(
        "--max-wait-ms",
        type=click.FloatRange(min=0),
        default=2.0,
        show_default=True,
        help="Milliseconds a batch waits for more texts while another batch runs.",
    )(func)


@click.command()
@model_option()
@click.option(
    "--index",
    envvar="SPLADE_OS_INDEX",
    help="Index /search and /health use when a request names none. [env: SPLADE_OS_INDEX]",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; set --api-key-file then).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="File (mode 0600) holding the bearer token every request but /health and the page must carry.",
)
@_limit_options
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Let pages from this origin call the service (repeatable). [default: CORS off]",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    envvar="SPLADE_OS_THREADS",
    help="onnxruntime threads. [default: every core; env: SPLADE_OS_THREADS]",
)
@click.option(
    "--shutdown-timeout",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Seconds a shutdown waits for requests in flight to finish.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn's log level.",
)
@device_options
@connection_options
def serve(
    model_dir: str,
    index: str | None,
    host: str,
    port: int,
    api_key_file: str | None,
    max_batch: int,
    max_wait_ms: float,
    max_queue: int,
    max_inputs: int,
    max_text_chars: int,
    max_body_bytes: int,
    max_k: int,
    cors_origins: tuple[str, ...],
    threads: int | None,
    shutdown_timeout: int,
    log_level: str,
    device: dict[str, Any],
    settings: ConnectionSettings,
) -> None:
    """Serve MODEL over HTTP: /embed_sparse, /encode, /search, /health, /metrics and a playground at /.

    See docs/serving.md for the endpoints, the batching settings, the limits and the engines' connectors.
    """
    with cli_errors():
        try:
            import uvicorn

            from splade_os.serve.app import build_app
        except ImportError as err:
            raise MissingDependencyError(
                f"splade-os serve needs the serve extra ({err.name} is missing): pip install 'splade-os[serve]'"
            ) from None
        from splade_os.model.encoder import SpladeEncoder
        from splade_os.model.settings import EncoderSettings
        from splade_os.serve.batcher import BatchSettings
        from splade_os.serve.settings import Limits, ServeSettings, read_api_key

        key = read_api_key(api_key_file) if api_key_file else None
        limits = Limits(
            max_inputs=max_inputs, max_text_chars=max_text_chars, max_body_bytes=max_body_bytes, max_k=max_k
        )
        encoder = SpladeEncoder(model_dir, settings=EncoderSettings(threads=threads, **device))
        batching = BatchSettings(
            max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, slots=encoder.workers
        )
        serve_settings = ServeSettings(
            index=index, limits=limits, batching=batching, api_key=key, cors_origins=cors_origins
        )
    with encoder:
        app = build_app(encoder, settings, serve_settings)
        auth = "bearer token required" if key else "no authentication"
        click.echo(f"serving {encoder.name} at http://{host}:{port}/ ({auth}; cluster {settings.describe()})", err=True)
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=shutdown_timeout,
            server_header=False,
        )
