"""Two-phase search settings: what phase one keeps, how deep the rescore window goes, and the tuned choice that
`tune` stores in an index's `_meta` and `Searcher` reads back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from splade_os.errors import ConfigError
from splade_os.retrieval.query import (
    DEFAULT_FIRST_PHASE_TERMS,
    DEFAULT_TWO_PHASE_RATIO,
    DEFAULT_TWO_PHASE_WINDOW_FACTOR,
    DEFAULT_TWO_STEP_WINDOW_FACTOR,
    Pruning,
)

TUNED_KEY = "two_phase"
RETUNE_GROWTH = 2.0  # doctor asks for a new `tune` once the index holds this many times the tuned-at count


@dataclass(frozen=True)
class TwoPhaseSettings:
    """Phase one keeps the terms of at least `ratio` x the largest weight; the rescore window holds `window` hits
    (at least the page); `top_n` keeps only the n heaviest query terms (None: all).

    On an index with the pruned first-phase field (two-step search), phase one instead sends the `first_terms`
    heaviest query terms to that field (`ratio` plays no part), and the window defaults to 30 x the hits asked for.
    """

    ratio: float = DEFAULT_TWO_PHASE_RATIO
    window: int | None = None  # None: 5 x the hits asked for (two-step: 30 x)
    top_n: int | None = None
    first_terms: int | None = None  # two-step only; None: DEFAULT_FIRST_PHASE_TERMS

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"the two-phase ratio must be in (0, 1], got {self.ratio}")
        if any(v is not None and v < 1 for v in (self.window, self.top_n, self.first_terms)):
            raise ConfigError("the two-phase window, top-n and first-phase terms must be at least 1")

    def window_for(self, size: int, *, two_step: bool = False) -> int:
        factor = DEFAULT_TWO_STEP_WINDOW_FACTOR if two_step else DEFAULT_TWO_PHASE_WINDOW_FACTOR
        return max(self.window or size * factor, size)

    @property
    def terms(self) -> int:
        """How many query terms two-step search sends to the pruned field."""
        return self.first_terms or DEFAULT_FIRST_PHASE_TERMS

    def pruning(self, base: Pruning) -> Pruning:
        """The query pruning this setting adds to the searcher's own."""
        if self.top_n is None or (base.top_k is not None and base.top_k <= self.top_n):
            return base
        return replace(base, top_k=self.top_n)

    def describe(self, *, two_step: bool = False) -> str:
        two_step = two_step or self.first_terms is not None
        factor = DEFAULT_TWO_STEP_WINDOW_FACTOR if two_step else DEFAULT_TWO_PHASE_WINDOW_FACTOR
        window = self.window if self.window is not None else f"{factor} x k"
        terms = f"top {self.top_n} terms" if self.top_n else "all terms"
        if two_step:
            return f"first phase top {self.terms} terms, window {window}, rescore {terms}"
        return f"ratio {self.ratio:g}, window {window}, {terms}"


@dataclass(frozen=True)
class StoredSettings:
    """Two-phase settings read back from an index's `_meta`, with where they came from."""

    settings: TwoPhaseSettings
    documents: int
    tuned_at: str
    agreement: float
    k: int

    def describe(self) -> str:
        return f"{self.settings.describe()} (tuned {self.tuned_at[:10]} at {self.documents:,} documents)"


def stored_settings(meta: Mapping[str, Any]) -> StoredSettings | None:
    """The tuned two-phase settings in a splade-os `_meta` record; None when the index was never tuned."""
    record = meta.get(TUNED_KEY)
    if not isinstance(record, Mapping):
        return None
    try:
        settings = TwoPhaseSettings(ratio=float(record["ratio"]), window=record.get("window"),
                                    top_n=record.get("top_n"), first_terms=record.get("first_terms"))  # fmt: skip
        return StoredSettings(settings, int(record["documents"]), str(record["tuned_at"]),
                              float(record.get("agreement", 0.0)), int(record.get("k", 10)))  # fmt: skip
    except (KeyError, TypeError, ValueError, ConfigError):
        return None  # written by a hand or another version: ignored, and the defaults apply


def growth_warning(meta: Mapping[str, Any], documents: int) -> str | None:
    """What doctor says when the index has grown well past the count its two-phase setting was tuned at."""
    stored = stored_settings(meta)
    if stored is None or stored.documents <= 0 or documents < RETUNE_GROWTH * stored.documents:
        return None
    return (
        f"two-phase settings were tuned at {stored.documents:,} documents and the index now holds {documents:,}: "
        "agreement with exact search falls as an index grows"
    )
