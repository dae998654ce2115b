"""Option groups shared by every command, so flags and environment variables mean the same everywhere."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from splade_os.connection import ConnectionSettings
from splade_os.errors import SpladeOSError

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """--url/--user/--password/--api-key/--ca-certs/--insecure, folded into one `settings` argument."""

    @click.option(
        "--url", "urls", multiple=True, envvar="OPENSEARCH_URL", help="Cluster URL (repeatable). [env: OPENSEARCH_URL]"
    )
    @click.option(
        "--user", "username", envvar="OPENSEARCH_USERNAME", help="Basic-auth user. [env: OPENSEARCH_USERNAME]"
    )
    @click.option(
        "--password",
        envvar="OPENSEARCH_PASSWORD",
        help="Basic-auth password; prefer the env var. [env: OPENSEARCH_PASSWORD]",
    )
    @click.option("--api-key", envvar="OPENSEARCH_API_KEY", help="API key. [env: OPENSEARCH_API_KEY]")
    @click.option("--ca-certs", envvar="OPENSEARCH_CA_CERTS", help="CA bundle for TLS. [env: OPENSEARCH_CA_CERTS]")
    @click.option("--insecure", is_flag=True, default=False, help="Do not verify TLS certificates (testing only).")
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        urls: tuple[str, ...],
        username: str | None,
        password: str | None,
        api_key: str | None,
        ca_certs: str | None,
        insecure: bool,
        **kwargs: Any,
    ) -> Any:
        split = tuple(u.strip() for raw in urls for u in raw.split(",") if u.strip())
        with cli_errors():
            kwargs["settings"] = ConnectionSettings.from_env(
                urls=split or None,
                username=username,
                password=password,
                api_key=api_key,
                ca_certs=ca_certs,
                verify_certs=False if insecure else None,
            )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def model_option(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--model",
        "model_dir",
        required=required,
        envvar="SPLADE_OS_MODEL",
        type=click.Path(file_okay=False),
        help="Folder written by `splade-os export` (e.g. models/splade-tiny). [env: SPLADE_OS_MODEL]",
    )


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the library's errors into one clear line and exit code 1, without a traceback."""
    try:
        yield
    except SpladeOSError as err:
        raise click.ClickException(str(err)) from None
