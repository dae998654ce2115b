"""Every command has help text and is documented in the README with an example."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from splade_os.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_and_a_readme_example(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`splade-os {name}` has no help text"
    assert f"splade-os {name}" in README, f"README.md shows no example of `splade-os {name}`"
