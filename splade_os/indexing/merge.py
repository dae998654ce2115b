"""Force-merging an index after a bulk load: fewer segments, so each query term walks fewer posting lists.

A bulk load leaves dozens of segments (32 at 1M documents in docs/scale.md); a force-merge rewrites them into
`segments` per shard. It costs I/O and CPU for as long as it runs (minutes at a million documents), which searches
on the same node feel, so merging the index readers use is refused unless the caller says so. The merge request
itself runs with a long timeout; a thread reads the segment count every few seconds meanwhile, for progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from splade_os import aliases
from splade_os.engines import engine_for
from splade_os.errors import ConfigError, IndexNotFoundError

MERGE_TIMEOUT = 6 * 3600.0  # seconds the force-merge request may take: hours at tens of millions of documents
POLL_EVERY = 5.0


@dataclass(frozen=True)
class SegmentState:
    """Segments of an index's primaries, and what is merging now."""

    segments: int
    merging: int  # merges running
    merging_bytes: int


@dataclass(frozen=True)
class MergeResult:
    index: str
    before: int
    after: int
    seconds: float


def segment_state(client: Any, index: str) -> SegmentState:
    """From `_stats` (the monitor privilege every indexer has), not `_segments`."""
    stats = client.indices.stats(index=index, metric="segments,merge")["_all"]["primaries"]
    merges = stats.get("merges", {})
    return SegmentState(
        int(stats["segments"]["count"]), int(merges.get("current", 0)), int(merges.get("current_size_in_bytes", 0))
    )


def live_aliases(client: Any, index: str) -> list[str]:
    """The aliases readers reach `index` by: itself when it is an alias, else the aliases pointing at it."""
    if aliases.is_alias(client, index):
        return [index]
    answer = client.indices.get_alias(index=index)
    return sorted({a for body in answer.values() for a in body.get("aliases", {})})


def check_not_live(client: Any, index: str) -> None:
    """ConfigError when readers search `index` through an alias: a merge there is for the caller to decide."""
    live = live_aliases(client, index)
    if live:
        through = "is an alias" if live == [index] else f"is searched through alias {', '.join(live)}"
        raise ConfigError(
            f"{index!r} {through}: a force-merge of a live index costs I/O and CPU that its searches feel while "
            "it runs (minutes on a large index). Pass --yes to merge it anyway, or merge a new version before the "
            "alias moves (`index --recreate --optimize`)"
        )


def force_merge(
    client: Any,
    index: str,
    segments: int = 1,
    *,
    on_poll: Callable[[SegmentState, float], None] | None = None,
    every: float = POLL_EVERY,
    timeout: float = MERGE_TIMEOUT,
) -> MergeResult:
    """Merge every shard of `index` down to at most `segments` segments; `on_poll(state, elapsed)` is called at the
    start and every `every` seconds while the merge runs, from another thread."""
    if segments < 1:
        raise ConfigError(f"segments must be at least 1, got {segments}")
    if not aliases.resolve(client, index):
        raise IndexNotFoundError(f"no index or alias {index!r} to merge")
    before = segment_state(client, index)
    started = time.monotonic()
    done = threading.Event()

    def poll() -> None:
        state = before
        while True:
            if on_poll is not None:
                on_poll(state, time.monotonic() - started)
            if done.wait(every):
                return
            try:
                state = segment_state(client, index)
            except Exception:  # a progress line is not worth failing the merge for
                continue

    poller = threading.Thread(target=poll, name=f"merge-progress-{index}", daemon=True)
    poller.start()
    try:
        patient, options = engine_for(client).with_timeout(client, timeout)
        patient.indices.forcemerge(index=index, max_num_segments=segments, **options)
    finally:
        done.set()
        poller.join()
    client.indices.refresh(index=index)  # the merged segment replaces the old ones for readers
    after = segment_state(client, index).segments
    return MergeResult(index, before.segments, after, time.monotonic() - started)
