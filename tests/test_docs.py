"""The documentation holds together: every command has help text and an example, every relative link resolves,
the README keeps the two commands that CI and users run, and the sample outputs that are deterministic (the demo
search) are what the command prints today."""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from splade_os.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def _code_lines(text: str) -> list[str]:
    return [line for block in FENCE.finditer(text) for line in block.group(2).splitlines()]


def _prose(text: str) -> str:
    """The text outside fenced code blocks, where a `[x](y)` is a link rather than code."""
    return FENCE.sub("", text)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    kept = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in HEADING.finditer(_prose(text)):
        base = _anchor(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_and_a_documented_example(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`splade-os {name}` has no help text"
    example = re.compile(rf"(^|[\s$(]|&&)splade-os {re.escape(name)}(\s|$)")
    pages = [_name(page) for page in PAGES if any(example.search(line) for line in _code_lines(_text(page)))]
    assert pages, f"no code block in README.md or docs/*.md shows an example of `splade-os {name}`"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for match in LINK.finditer(_prose(_text(page))):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(_text(resolved)):
            broken.append(f"{target}: no heading with anchor #{fragment} in {_name(resolved)}")
    assert not broken, f"{_name(page)} has broken links:\n" + "\n".join(broken)


def test_readme_keeps_the_two_commands() -> None:
    readme = _text(REPO / "README.md")
    # CI (.ci/run) and users run exactly these.
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = _text(REPO / "README.md")
    missing = [_name(page) for page in PAGES[1:] if f"]({_name(page)})" not in readme]
    assert not missing, f"README.md links none of: {', '.join(missing)}"


def test_anchors_follow_github() -> None:
    assert _anchor("`splade-os reindex ALIAS [CORPUS]`: zero-downtime re-index") == (
        "splade-os-reindex-alias-corpus-zero-downtime-re-index"
    )
    assert _anchor("Smaller indices: vectors out of `_source`, pruning at index time") == (
        "smaller-indices-vectors-out-of-_source-pruning-at-index-time"
    )
    assert _anchors("# A\n\n## A\n\n```\n# not a heading\n```\n") == {"a", "a-1"}


def _search_samples() -> list[tuple[str, list[str], list[str]]]:
    """Each ```text block that shows a `$ splade-os search` on the demo index: (page, arguments, lines printed)."""
    found = []
    for page in PAGES:
        for block in FENCE.finditer(_text(page)):
            first, *printed = block.group(2).splitlines()
            if block.group(0).startswith("```text") and first.startswith("$ splade-os search "):
                found.append((_name(page), shlex.split(first)[2:], printed))
    return found


@pytest.mark.engine
def test_search_samples_are_what_search_prints(engine_client: Any, index_name: str, tmp_path: Path) -> None:
    samples = _search_samples()
    assert {page for page, _, _ in samples} >= {"README.md", "docs/searching.md"}
    runner = CliRunner()
    loaded = runner.invoke(
        main,
        [
            "index",
            str(REPO / "examples" / "demo-corpus.jsonl"),
            "--index",
            index_name,
            "--model",
            str(REPO / "models" / "splade-tiny"),
            "--no-progress",
            "--checkpoint",
            str(tmp_path / "cp.json"),
            "--dead-letter",
            str(tmp_path / "dl.jsonl"),
        ],
    )
    assert loaded.exit_code == 0, loaded.output
    for page, args, printed in samples:
        args = [index_name if before == "--index" else arg for before, arg in zip(["", *args], args, strict=False)]
        args = [str(REPO / arg) if arg.startswith("models/") else arg for arg in args]
        shown = runner.invoke(main, args)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.splitlines() == printed, f"{page}: the sample differs from what search prints now"
