"""The `splade-os` command: a thin click layer over the library, one module per command group. Every command's
`--help` lists its options by purpose (sections.py), whatever module made it."""

from __future__ import annotations

from typing import Any

import click

from splade_os import __version__
from splade_os.cli.sections import SectionedGroup


class _Commands(SectionedGroup):
    """Ctrl-C (SIGINT) ends any command with exit code 130, as shells expect, rather than click's 1; each command added
    lists its options by section in `--help`."""

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
