"""`splade-os node start|stop|status`: a local OpenSearch node for trying splade-os and for its tests."""

from __future__ import annotations

from pathlib import Path

import click

from splade_os.errors import NodeError
from splade_os.node import DEFAULT_VERSION, NodeInfo, node_status, start_node, stop_node

_HOME_HELP = "Node home (cache of the distribution, data and logs). Default: $SPLADE_OS_NODE_HOME or the user cache."
_home_option = click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None, help=_HOME_HELP)
_port_option = click.option("--port", type=int, default=9200, show_default=True, help="HTTP port on 127.0.0.1.")


@click.group()
def node() -> None:
    """Run one real OpenSearch node on 127.0.0.1, assembled from Maven Central (no Docker)."""


def _print_info(info: NodeInfo) -> None:
    pid = f"pid {info.pid}" if info.pid is not None else "pid unknown"
    reused = ", reused" if info.reused else ""
    click.echo(f"OpenSearch {info.version} running at {info.url} ({pid}{reused})")
    click.echo(f"modules: {', '.join(info.modules)}")
    click.echo(f"log: {info.log_file}")


@node.command()
@click.option("--version", default=DEFAULT_VERSION, show_default=True, help="OpenSearch version to run.")
@_home_option
@_port_option
@click.option("--heap", default="1g", show_default=True, help="JVM heap, such as 512m or 2g.")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for yellow health.")
def start(version: str, home: Path | None, port: int, heap: str, timeout: float) -> None:
    """Start the node (or reuse the one already answering on the port) and wait until it is usable."""
    try:
        info = start_node(version=version, home=home, port=port, heap=heap, timeout=timeout)
    except NodeError as err:
        raise click.ClickException(str(err)) from err
    _print_info(info)


@node.command()
@_home_option
def stop(home: Path | None) -> None:
    """Stop the node started from this home (SIGTERM, then wait for it to exit)."""
    try:
        stopped = stop_node(home=home)
    except NodeError as err:
        raise click.ClickException(str(err)) from err
    click.echo("OpenSearch node stopped" if stopped else "no OpenSearch node from this home was running")


@node.command()
@_home_option
@_port_option
def status(home: Path | None, port: int) -> None:
    """Show the node answering on the port; exit code 1 when none does."""
    try:
        info = node_status(home=home, port=port)
    except NodeError as err:
        raise click.ClickException(str(err)) from err
    if info is None:
        click.echo(f"no OpenSearch node answers at http://127.0.0.1:{port}")
        raise SystemExit(1)
    _print_info(info)
