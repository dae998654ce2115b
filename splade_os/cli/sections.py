"""`--help` by purpose: each option names the section it is listed under (Connection, Model/encoding, Reading, ...),
and every command of `splade-os` writes one section per purpose. An option with no section is listed under Options,
first, with the command's own flags and --help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

OPTIONS = "Options"
MODEL = "Model/encoding"
READING = "Reading"
LOADING = "Loading"
LAYOUT = "Layout"
RAY = "Ray"
OUTPUT = "Output"
CONNECTION = "Connection"
ORDER = (OPTIONS, MODEL, READING, LOADING, LAYOUT, RAY, OUTPUT, CONNECTION)
COLUMN = 30  # the widest first column of click's help; a longer option stands on a line of its own


class SectionOption(click.Option):
    """A click option listed under `section` in `--help`."""

    def __init__(self, *args: Any, section: str = OPTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def option(section: str, *param_decls: str, **attrs: Any) -> Callable[[F], F]:
    """`click.option`, listed under `section` in `--help`."""
    return click.option(*param_decls, cls=SectionOption, section=section, **attrs)


def write_sections(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The command's options, one help section per purpose: `ORDER` first, any other section after them, their
    help texts all in one column."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None and not isinstance(param, click.Argument):
            sections.setdefault(getattr(param, "section", OPTIONS), []).append(record)

    def width(rows: list[tuple[str, str]]) -> int:  # of the first column, as `write_dl` measures it
        return min(max(len(first) for first, _ in rows), COLUMN)

    widest = max((width(rows) for rows in sections.values()), default=0)
    known = [name for name in ORDER if name in sections]
    for name in known + [name for name in sections if name not in ORDER]:
        with formatter.section(name):
            formatter.write_dl(sections[name], col_max=COLUMN, col_spacing=2 + widest - width(sections[name]))


class SectionedCommand(click.Command):
    """A command whose `--help` lists its options by section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        write_sections(self, ctx, formatter)


class SectionedGroup(click.Group):
    """A group whose `--help`, and every command's it holds, lists the options by section: a command added as a
    plain click command or group becomes a sectioned one."""

    command_class = SectionedCommand
    group_class = type  # its subgroups are sectioned groups too

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        write_sections(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(sectioned(cmd), name)


def sectioned(command: click.Command) -> click.Command:
    """`command` (and, for a group, each command below it) as its sectioned class when it is a plain click one; a
    class of its own is left as it is. Only `format_options` differs, so nothing but `--help` changes."""
    if type(command) is click.Command:
        command.__class__ = SectionedCommand
    elif type(command) is click.Group:
        command.__class__ = SectionedGroup
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            sectioned(sub)
    return command
