"""The `splade-os` command: a thin click layer over the library, one module per command group."""

from __future__ import annotations

from typing import Any

import click

from splade_os import __version__


class _Commands(click.Group):
    """Ctrl-C (SIGINT) ends any command with exit code 130, as shells expect, rather than click's 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="splade-os")
def main() -> None:
    """SPLADE learned sparse retrieval on the OpenSearch or Elasticsearch cluster you already run."""


def _register() -> None:
    # Imported here so that `splade-os --help` stays fast and each command module stays small.
    from splade_os.cli import commands

    for command in commands.ALL:
        main.add_command(command)


_register()
