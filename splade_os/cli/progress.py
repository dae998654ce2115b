"""One progress convention for every long command: `--progress/--no-progress`, on stderr, a tqdm bar on a terminal
and a plain line every `--log-every` seconds anywhere else (a log, CI), never a carriage return there."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from splade_os.cli.options import fold
from splade_os.cli.sections import OUTPUT

EVERY = 10.0


def _factory(values: dict[str, Any], _: dict[str, Any]) -> ProgressFactory:
    return ProgressFactory(enabled=values["show_progress"] is not False, every=values["log_every"])


progress_options = fold(
    "progress",
    [
        click.option(
            "--progress/--no-progress",
            "show_progress",
            default=None,
            help="Progress on stderr: a bar on a terminal, a plain line every --log-every seconds elsewhere. "
            "[default: on]",
        ),
        click.option(
            "--log-every",
            type=click.FloatRange(min=0),
            default=EVERY,
            show_default=True,
            help="Seconds between progress lines off a terminal.",
        ),
    ],
    _factory,
    OUTPUT,
)
"""--progress/--no-progress and --log-every, folded into one `progress` argument (a `ProgressFactory`)."""


class ProgressFactory:
    """What --progress/--no-progress and --log-every asked for; called, a `Progress` of one task."""

    def __init__(self, *, enabled: bool = True, every: float = EVERY) -> None:
        self.enabled, self.every = enabled, every

    def __call__(self, what: str, total: int | None = None, *, unit: str = "documents") -> Progress:
        return Progress(what, total, unit=unit, enabled=self.enabled, every=self.every)


class Progress:
    """Counts `unit` done of `total` (None: unknown). A bar on a terminal; otherwise a line at most every `every`
    seconds, and one at the end. `status` adds a few words (failures, speed) to what is shown."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "documents",
        enabled: bool = True,
        every: float = EVERY,
        tty: bool | None = None,
    ) -> None:
        self.what, self.total, self.unit, self.enabled, self.every = what, total, unit, enabled, every
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.done, self.shown, self.status = 0, 0, ""
        self.started = self.last = time.monotonic()
        self.bar: Any = None
        if enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {unit}", desc=what, file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finished=exc[0] is None)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, n: int = 1, status: str = "") -> None:
        self.advance_to(self.done + n, status)

    def advance_to(self, done: int, status: str = "") -> None:
        self.done, self.status = done, status or self.status
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if status:
                self.bar.set_postfix_str(status, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last, self.shown = now, done
            click.echo(self.line(now), err=True)

    def line(self, now: float | None = None) -> str:
        """`what: done of total unit (share), rate/s, ETA; status` from the count done so far."""
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of, where = (f" of {self.total:,}", f" ({self.done / self.total:.0%}") if self.total else ("", "")
        if self.total and rate and self.done < self.total:
            where += f", ETA {duration((self.total - self.done) / rate)}"
        where += ")" if where else ""
        status = f"; {self.status}" if self.status else ""
        per = {"documents": "docs"}.get(self.unit, self.unit)
        return f"{self.what}: {self.done:,}{of} {self.unit}{where}, {rate:,.1f} {per}/s{status}"

    def write(self, text: str) -> None:
        """A message that does not break the bar."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def close(self, *, finished: bool = True) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and finished and self.done != self.shown and time.monotonic() - self.started >= self.every:
            click.echo(self.line(), err=True)  # a long run ends with its last count in the log


class Steps:
    """The progress of a library call that reports `(step, done, total)` (eval, tune, stats): one `Progress` per
    step, named `command step` and counting `units[step]` (else `default`); the next step closes the one before."""

    def __init__(self, progress: ProgressFactory, command: str, units: Mapping[str, str], default: str) -> None:
        self.progress, self.command, self.units, self.default = progress, command, units, default
        self.step: str | None = None
        self.bar: Progress | None = None

    def __call__(self, step: str, done: int, total: int | None) -> None:
        if self.bar is None or step != self.step:
            self.close()
            self.step = step
            self.bar = self.progress(f"{self.command} {step}", total, unit=self.units.get(step, self.default))
        self.bar.advance_to(done)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finished=exc[0] is None)

    def close(self, *, finished: bool = True) -> None:
        if self.bar is not None:
            self.bar.close(finished=finished)
            self.bar = None


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"
