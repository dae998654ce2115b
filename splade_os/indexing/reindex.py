"""Zero-downtime re-index: build `NAME-v<next>` beside the version readers use, verify it, then move alias `NAME`.

The build itself is `indexing.index_corpus` (from a corpus) or `indexing.reencode_index` (from the documents of the
current version, e.g. after a model change); both verify the new index's count against what they read and move the
alias in one atomic `_aliases` request only when it checks out. A re-encode must also end with as many documents
as the version it replaces (empty texts included), or the alias stays on the old version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade_os import aliases
from splade_os.errors import ConfigError
from splade_os.indexing import BulkOptions, DocumentEncoder, IndexSummary, Progress, index_corpus, reencode_index
from splade_os.mappings import read_index_meta


@dataclass
class ReindexResult:
    alias: str
    previous: tuple[str, ...]  # what the alias pointed at before
    previous_count: int | None
    summary: IndexSummary
    swapped: bool
    deleted: tuple[str, ...]
    problems: list[str]


def _count(client: Any, names: tuple[str, ...]) -> int | None:
    return int(client.count(index=",".join(names))["count"]) if names else None


def reindex(
    client: Any,
    alias: str,
    encoder: DocumentEncoder,
    *,
    corpus: str | Path | None = None,
    corpus_options: dict[str, Any] | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    keep_previous: bool = True,
    allow_failures: bool = False,
    shards: int = 1,
    replicas: int = 1,
    analyzer: str | None = None,
    dead_letter: Path | None = None,
    options: BulkOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReindexResult:
    """Build the next version of `alias` from `corpus`, or from the alias's current documents when `corpus` is None,
    and point the alias at it once verified. `keep_previous=False` deletes the old version after a good swap.
    A re-encode reads `text_field` and `title_field` (default: the fields the current version was encoded from)."""
    previous = tuple(aliases.resolve(client, alias))
    if len(previous) > 1:
        raise ConfigError(f"alias {alias!r} points at {len(previous)} indices: point it at one with `splade-os alias`")
    if corpus is None and not previous:
        raise ConfigError(f"nothing to re-encode: no index or alias {alias!r} (give a CORPUS to build it)")
    if previous and not aliases.is_alias(client, alias):
        raise ConfigError(
            f"{alias!r} is a concrete index, not an alias: a swap would delete it. Versions live behind an alias: "
            f"build one with `splade-os index CORPUS --index NEW_NAME`"
        )
    previous_count = _count(client, previous)
    meta = read_index_meta(client, previous[0]) if previous else {}
    if analyzer is None:  # the new version analyses text like the one it replaces
        recorded = meta.get("analyzer")
        analyzer = recorded if isinstance(recorded, str) else None
    common: dict[str, Any] = dict(
        index=alias, encoder=encoder, allow_failures=allow_failures, delete_previous=False, shards=shards,
        replicas=replicas, analyzer=analyzer, dead_letter=dead_letter, options=options, on_progress=on_progress,
    )  # fmt: skip
    if corpus is None:
        # Keep documents with empty text: a re-encode must carry every document over, or the count check fails.
        summary = reencode_index(
            client, alias, text_field=text_field, title_field=title_field, recreate=True, skip_empty=False, **common
        )
    else:
        # ... and keeps (or leaves out) vectors in `_source` as it did.
        in_source = meta.get("vectors_in_source", True) is not False
        summary = index_corpus(
            client, corpus, recreate=True, vectors_in_source=in_source, **(corpus_options or {}), **common
        )
    problems = summary.problems(allow_failures=allow_failures)
    swapped = aliases.resolve(client, alias) == [summary.index]
    deleted: tuple[str, ...] = ()
    if swapped and not keep_previous and previous:
        client.indices.delete(index=",".join(previous))
        deleted = previous
    return ReindexResult(alias, previous, previous_count, summary, swapped, deleted, problems)
