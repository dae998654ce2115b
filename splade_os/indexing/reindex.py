"""Zero-downtime re-index: build `NAME-v<next>` beside the version readers use, verify it, then move alias `NAME`.

The build itself is `indexing.index_corpus` (from a corpus) or `indexing.reencode_index` (from the documents of the
current version, e.g. after a model change); both verify the new index's count against what they read and move the
alias in one atomic `_aliases` request only when it checks out. A re-encode must also end with as many documents
as the version it replaces (empty texts included), or the alias stays on the old version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from splade_os import aliases
from splade_os.errors import ConfigError, IndexNotFoundError
from splade_os.indexing import DocumentEncoder, IndexSummary, LoadOptions, Progress, index_corpus, reencode_index
from splade_os.mappings import (
    read_index_meta,
    recorded_candidates,
    recorded_concurrent_search,
    recorded_first_phase,
)


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
    load: LoadOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **legacy: Any,
) -> ReindexResult:
    """Build the next version of `alias` from `corpus`, or from the alias's current documents when `corpus` is None,
    and point the alias at it once verified. `load.delete_previous` deletes the old version after a good swap
    (`keep_previous=False` in the deprecated keyword form of earlier versions). A re-encode reads `text_field` and
    `title_field` (default: the fields the current version was encoded from)."""
    if "keep_previous" in legacy:  # the 0.1 name, the opposite of the one `index` and `alias` use
        legacy["delete_previous"] = not legacy.pop("keep_previous")
    opts = LoadOptions.of_call("reindex", load, legacy)
    previous = tuple(aliases.resolve(client, alias))
    if len(previous) > 1:
        raise ConfigError(f"alias {alias!r} points at {len(previous)} indices: point it at one with `splade-os alias`")
    if corpus is None and not previous:
        raise IndexNotFoundError(f"nothing to re-encode: no index or alias {alias!r} (give a CORPUS to build it)")
    if previous and not aliases.is_alias(client, alias):
        raise ConfigError(
            f"{alias!r} is a concrete index, not an alias: a swap would delete it. Versions live behind an alias: "
            f"build one with `splade-os index CORPUS --index NEW_NAME`"
        )
    previous_count = _count(client, previous)
    meta = read_index_meta(client, previous[0]) if previous else {}
    recorded = meta.get("analyzer")
    # The new version analyses text like the one it replaces, keeps (or leaves out) vectors in `_source`, its pruned
    # field and its choice of concurrent segment search as it did; it is built fresh, and the old version is deleted
    # (if asked) only after the swap checked out.
    build = replace(
        opts,
        recreate=True,
        resume=False,
        delete_previous=False,
        analyzer=opts.analyzer or (recorded if isinstance(recorded, str) else None),
        vectors_in_source=meta.get("vectors_in_source", True) is not False
        if opts.vectors_in_source is None
        else opts.vectors_in_source,
        first_phase_k=(recorded_first_phase(meta) or 0)
        if previous and opts.first_phase_k is None
        else opts.first_phase_k,
        first_phase_candidates=recorded_candidates(meta)
        if opts.first_phase_candidates is None
        else opts.first_phase_candidates,
        concurrent_segment_search=recorded_concurrent_search(meta)
        if opts.concurrent_segment_search is None
        else opts.concurrent_segment_search,
    )
    if corpus is None:
        summary = reencode_index(
            client,
            alias,
            index=alias,
            encoder=encoder,
            text_field=text_field,
            title_field=title_field,
            load=build,
            on_progress=on_progress,
        )
    else:
        summary = index_corpus(
            client,
            corpus,
            index=alias,
            encoder=encoder,
            load=build,
            on_progress=on_progress,
            **(corpus_options or {}),
        )
    problems = summary.problems(allow_failures=opts.allow_failures)
    swapped = aliases.resolve(client, alias) == [summary.index]
    deleted: tuple[str, ...] = ()
    if swapped and opts.delete_previous and previous:
        aliases.delete_versions(client, previous)
        deleted = previous
    return ReindexResult(alias, previous, previous_count, summary, swapped, deleted, problems)
