"""Options shared by every command, so flags and environment variables mean the same everywhere: the connection
(one `ConnectionSettings`), the model folder and its device, `--json`. `fold` turns a group of flags into one argument
of the command (groups.py folds the encoding, reading, loading and Ray groups the same way); `cli_errors` turns every
error into one redacted line."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import click
from opensearchpy.exceptions import ImproperlyConfigured

from splade_os.cli.sections import CONNECTION, MODEL, OUTPUT, option
from splade_os.connection import ConnectionSettings
from splade_os.engines.errors import describe_error, is_client_error
from splade_os.errors import SpladeOSError
from splade_os.redaction import redact

F = TypeVar("F", bound=Callable[..., Any])


class Decorator(Protocol):
    """What adds options to a click command: the command's function, returned with them."""

    def __call__(self, func: F, /) -> F: ...


def fold(
    into: str,
    options: Sequence[Decorator],
    build: Callable[[dict[str, Any], dict[str, Any]], Any],
    section: str | None = None,
) -> Decorator:
    """A decorator that adds `options` to a command and passes their values to it as one argument, `into`:
    `build(values, arguments)`, with the values by parameter name and the command's other arguments (those of the
    groups above this one), under `cli_errors`. `--help` lists the options under `section`, those that name none."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            with cli_errors():
                kwargs[into] = build(values, kwargs)
            return func(*args, **kwargs)

        before = len(getattr(func, "__click_params__", ()))
        for add in reversed(options):
            wrapper = add(wrapper)
        # `functools.wraps` shares the list of click parameters: the ones added here are at its end.
        added = getattr(wrapper, "__click_params__", [])[before:]
        names = [param.name for param in added]
        for param in added:
            if section is not None and not hasattr(param, "section"):
                param.section = section
        return wrapper  # type: ignore[return-value]

    return decorate


_CONNECTION_OPTIONS: list[Callable[[F], F]] = [
    click.option(
        "--url",
        "urls",
        multiple=True,
        envvar="OPENSEARCH_URL",
        help="Cluster URL (repeatable or comma-separated). [env: OPENSEARCH_URL]",
    ),
    click.option(
        "--user", "username", envvar="OPENSEARCH_USERNAME", help="Basic-auth user. [env: OPENSEARCH_USERNAME]"
    ),
    click.option(
        "--password",
        envvar="OPENSEARCH_PASSWORD",
        help="Basic-auth password; prefer the env var or the config file. [env: OPENSEARCH_PASSWORD]",
    ),
    click.option("--api-key", envvar="OPENSEARCH_API_KEY", help="API key (base64 id:key). [env: OPENSEARCH_API_KEY]"),
    click.option(
        "--ca-certs", envvar="OPENSEARCH_CA_CERTS", help="CA bundle (PEM) for TLS. [env: OPENSEARCH_CA_CERTS]"
    ),
    click.option("--insecure", is_flag=True, default=False, help="Do not verify TLS certificates (testing only)."),
    click.option(
        "--client-cert",
        envvar="OPENSEARCH_CLIENT_CERT",
        help="Client certificate (PEM) for mutual TLS. [env: OPENSEARCH_CLIENT_CERT]",
    ),
    click.option(
        "--client-key",
        envvar="OPENSEARCH_CLIENT_KEY",
        help="Private key of --client-cert. [env: OPENSEARCH_CLIENT_KEY]",
    ),
    click.option(
        "--aws-region",
        envvar="OPENSEARCH_AWS_REGION",
        help="Sign requests with AWS SigV4 for this region (Amazon OpenSearch Service; needs boto3). "
        "[env: OPENSEARCH_AWS_REGION]",
    ),
    click.option(
        "--aws-service",
        type=click.Choice(["es", "aoss"]),
        envvar="OPENSEARCH_AWS_SERVICE",
        help="SigV4 service: es (managed) or aoss (serverless). [default: es]",
    ),
    click.option(
        "--request-timeout",
        type=float,
        envvar="OPENSEARCH_TIMEOUT",
        help="Seconds one request may take. [default: 30; env: OPENSEARCH_TIMEOUT]",
    ),
    click.option(
        "--connection-retries",
        type=int,
        envvar="OPENSEARCH_MAX_RETRIES",
        help="Retries of a request on connection errors. [default: 3; env: OPENSEARCH_MAX_RETRIES]",
    ),
    click.option(
        "--engine",
        type=click.Choice(["opensearch", "elasticsearch"]),
        envvar="SPLADE_OS_ENGINE",
        help="The cluster's engine. [default: asked from the cluster; env: SPLADE_OS_ENGINE]",
    ),
    click.option(
        "--cloud-id",
        envvar="ELASTIC_CLOUD_ID",
        help="Elastic Cloud deployment id, instead of --url. [env: ELASTIC_CLOUD_ID]",
    ),
    click.option(
        "--ssl-fingerprint",
        "ssl_assert_fingerprint",
        envvar="ELASTICSEARCH_SSL_FINGERPRINT",
        help="Pin the server certificate by its SHA-256 fingerprint (Elasticsearch). "
        "[env: ELASTICSEARCH_SSL_FINGERPRINT]",
    ),
    click.option(
        "--config",
        "config_file",
        envvar="SPLADE_OS_CONFIG",
        type=click.Path(dir_okay=False),
        help="TOML file with connection settings (flags and env vars win). [env: SPLADE_OS_CONFIG]",
    ),
]


def settings_from_options(values: dict[str, Any]) -> ConnectionSettings:
    """ConnectionSettings from the parsed flags (which already include the env vars): flag > env > file."""
    split = tuple(u.strip() for raw in values["urls"] for u in raw.split(",") if u.strip())
    return ConnectionSettings.from_env(
        config=values["config_file"],
        urls=split or None,
        username=values["username"],
        password=values["password"],
        api_key=values["api_key"],
        ca_certs=values["ca_certs"],
        verify_certs=False if values["insecure"] else None,
        client_cert=values["client_cert"],
        client_key=values["client_key"],
        aws_region=values["aws_region"],
        aws_service=values["aws_service"],
        timeout=values["request_timeout"],
        max_retries=values["connection_retries"],
        engine=values["engine"],
        cloud_id=values["cloud_id"],
        ssl_assert_fingerprint=values["ssl_assert_fingerprint"],
    )


def _connection(values: dict[str, Any], _: dict[str, Any]) -> ConnectionSettings:
    _quiet_client_logs()
    settings = settings_from_options(values)
    if values["insecure"]:
        click.echo(
            "warning: --insecure: the cluster's TLS certificate is not verified, so anyone between here "
            "and the cluster can read the credentials; pass --ca-certs instead",
            err=True,
        )
    return settings


connection_options = fold("settings", _CONNECTION_OPTIONS, _connection, CONNECTION)
"""The connection flags (see `ENV_VARS` for their environment variables), folded into one `settings` argument."""


def _quiet_client_logs() -> None:
    # The clients log each failed request as a WARNING; with no logging configured, Python prints it to stderr
    # next to our own one-line error. The CLI's error says it better, so the client's log goes nowhere unless the
    # user configured logging.
    for name in ("opensearch", "elastic_transport", "elasticsearch"):
        logger = logging.getLogger(name)
        if not logging.getLogger().handlers and not logger.handlers:
            logger.addHandler(logging.NullHandler())
            logger.propagate = False


def model_option(required: bool = True) -> Decorator:
    return option(
        MODEL,
        "--model",
        "model_dir",
        required=required,
        envvar="SPLADE_OS_MODEL",
        type=click.Path(file_okay=False),
        help="Model folder: written by `splade-os export` (e.g. models/splade-tiny), or a fastembed, Hugging Face or "
        "sentence-transformers ONNX folder (see `splade-os models`). [env: SPLADE_OS_MODEL]",
    )


DEVICE_OPTIONS = [
    click.option(
        "--device",
        "device_name",
        default="cpu",
        show_default=True,
        envvar="SPLADE_OS_DEVICE",
        help="cpu (the ONNX export), or cuda / cuda:N: the PyTorch checkpoint on a GPU (needs splade-os[gpu] and "
        "config.json plus weights in --model). [env: SPLADE_OS_DEVICE]",
    ),
    click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16"]),
        default="fp32",
        show_default=True,
        envvar="SPLADE_OS_PRECISION",
        help="Weights and activations on the GPU; bf16 and fp16 need --device cuda. [env: SPLADE_OS_PRECISION]",
    ),
]


def _device(values: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
    return {"device": values["device_name"], "precision": values["precision"]}


device_options = fold("device", DEVICE_OPTIONS, _device, MODEL)
"""--device and --precision, for the commands that encode with a model alone; folded into one `device` dict of
encoder options (`groups.encoder_options` folds them with the rest of the encoder's settings)."""


JSON_HELP = "Print the result as JSON on stdout (and nothing else there)."
json_option = option(OUTPUT, "--json", "as_json", is_flag=True, help=JSON_HELP)


def _json_to(values: dict[str, Any], _: dict[str, Any]) -> str | None:
    value: str | None = values["json_value"]
    path: str | None = values["json_file"]
    if value not in (None, "-"):
        if path is not None:
            raise click.UsageError("--json FILE and --json-file contradict each other: give --json-file FILE")
        click.echo(
            f"warning: --json FILE is deprecated and goes in a later release: use --json-file {value} "
            "(--json alone prints the JSON on stdout)",
            err=True,
        )
        return value
    if value == "-" and path is not None:
        raise click.UsageError("--json prints on stdout and --json-file writes a file: pick one")
    return path or value


json_report_options = fold(
    "json_to",
    [
        click.option(
            "--json",
            "json_value",
            is_flag=False,
            flag_value="-",
            metavar="",
            help=JSON_HELP + " (`--json FILE`, deprecated: --json-file FILE)",
        ),
        click.option(
            "--json-file",
            "-o",
            "json_file",
            type=click.Path(dir_okay=False),
            help="Write the result as JSON to this file.",
        ),
    ],
    _json_to,
    OUTPUT,
)
"""--json (JSON on stdout, as every command prints it) and --json-file/-o FILE, folded into one `json_to` argument:
None, "-" (stdout) or a path. The older `--json FILE` still writes FILE, with a deprecation note."""


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class Interrupted(click.ClickException):
    """Ctrl-C stopped the command: exit code 130 (128 + SIGINT), as shells report it."""

    exit_code = 130


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the library's and the client's errors into one clear line and exit code 1, without a traceback.

    Every line goes through `redact`, so a password or API key the user gave never reaches the terminal.
    """
    try:
        yield
    except SpladeOSError as err:
        if isinstance(err.__context__, KeyboardInterrupt):  # a load stopped by Ctrl-C, cleanly: still an interrupt
            raise Interrupted(redact(str(err))) from None
        raise click.ClickException(redact(str(err))) from None
    except ImproperlyConfigured as err:
        raise click.ClickException(redact(f"client configuration: {err}")) from None
    except Exception as err:
        if is_client_error(err):
            raise click.ClickException(describe_error(err)) from None
        raise
