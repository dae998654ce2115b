"""What the commands print besides progress bars: sizes, a load's progress and its summary (as text, or as the JSON
`--json` prints), and the exit code a load's problems give."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from splade_os.cli.options import echo_json
from splade_os.cli.progress import Progress
from splade_os.words import plural

if TYPE_CHECKING:
    from splade_os.indexing import IndexSummary
    from splade_os.indexing import Progress as IndexProgress
    from splade_os.indexing.distributed import BlockDone


def size(n: float) -> str:
    """`n` bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressReport:
    """Documents acknowledged by the cluster (indexed, failed or skipped), not bytes read ahead: a bar on a terminal,
    a plain line every `every` seconds elsewhere. The ETA comes from the acknowledged rate; for a file, the total is
    estimated from the records per byte read so far. `total_is_documents`: the source counts documents (an index)."""

    def __init__(self, bar: Progress, *, total_is_documents: bool = False) -> None:
        self.bar, self.total_is_documents = bar, total_is_documents

    def __call__(self, p: IndexProgress) -> None:
        c = p.counters
        acknowledged = c.indexed + c.failed + c.skipped
        total = p.total if self.total_is_documents else None
        if total is None and p.total and p.done:
            total = max(acknowledged, round(c.read * p.total / p.done))  # records per byte read so far
        if total != self.bar.total:
            self.bar.set_total(total)
        self.bar.advance_to(acknowledged, f"{c.failed:,} failed, {c.skipped:,} skipped")

    def close(self) -> None:
        self.bar.close()


class BlockReport:
    """One line per finished block of a distributed load, at most every `every` seconds (and for the last one)."""

    def __init__(self, every: float) -> None:
        self.every, self.last = every, 0.0

    def __call__(self, b: BlockDone) -> None:
        now = time.monotonic()
        if now - self.last < self.every and b.done < b.total:
            return
        self.last = now
        c = b.counters
        rate = b.processed / b.elapsed if b.elapsed > 0 else 0.0
        click.echo(
            f"block {b.done:,} of {b.total:,}: {c.indexed:,} indexed, {c.failed:,} failed, {c.skipped:,} skipped, "
            f"{rate:,.0f} docs/s",
            err=True,
        )


def format_summary(s: IndexSummary) -> str:
    """A load's summary as `index` and `reindex` print it."""
    c = s.counters
    lines = [
        f"read {c.read:,}, indexed {c.indexed:,}, failed {c.failed:,}, skipped {c.skipped:,}, "
        f"truncated {c.truncated:,} in {s.elapsed:.1f} s ({s.docs_per_s:,.1f} docs/s)",
        f"index {s.index} (alias {s.alias}): {plural(s.index_count, 'document')}, {size(s.index_bytes)}",
        ("verified: " if s.verified else "") + s.verification,
    ]
    if c.resumed:
        lines.append(f"resumed: {plural(c.resumed, 'document')} already indexed, not encoded again")
    if c.replaced:
        lines.append(f"replaced: {plural(c.replaced, 'document')} already in the index")
    if s.dead_letter:
        lines.append(f"dead letters (failed and skipped, with reasons): {s.dead_letter}")
    if s.swapped:
        lines.append(f"alias {s.alias} -> {s.swapped.index} (was {', '.join(s.swapped.previous) or 'nothing'})")
        if s.swapped.deleted:
            lines.append(f"deleted previous index: {', '.join(s.swapped.deleted)}")
    lines += [f"note: {n}" for n in s.notes]
    return "\n".join(lines)


def summary_json(s: IndexSummary, allow_failures: bool = False) -> dict[str, Any]:
    """What `--json` prints for a load: the counts, the index, the verification, where the alias points."""
    swapped = None
    if s.swapped:
        swapped = {"index": s.swapped.index, "previous": list(s.swapped.previous), "deleted": list(s.swapped.deleted)}
    return {
        "alias": s.alias,
        "index": s.index,
        "counters": asdict(s.counters),
        "elapsed_s": round(s.elapsed, 3),
        "docs_per_s": round(s.docs_per_s, 1),
        "index_count": s.index_count,
        "index_bytes": s.index_bytes,
        "expected": s.expected,
        "verified": s.verified,
        "verification": s.verification,
        "dead_letter": str(s.dead_letter) if s.dead_letter else None,
        "swapped": swapped,
        "notes": list(s.notes),
        "problems": s.problems(allow_failures=allow_failures),
    }


def report_and_exit(summary: IndexSummary, allow_failures: bool, as_json: bool = False) -> None:
    """Print a load's summary (as JSON with `as_json`); exit code 1 when it has a problem."""
    if as_json:
        echo_json(summary_json(summary, allow_failures))
    else:
        click.echo(format_summary(summary))
    problems = summary.problems(allow_failures=allow_failures)
    if problems:
        raise click.ClickException("; ".join(problems))
