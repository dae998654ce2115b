"""Two-phase search settings: what phase one keeps, how deep the rescore window goes, and the tuned choice that
`tune` stores in an index's `_meta` and `Searcher` reads back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from splade_os.engines.refusals import is_refusal
from splade_os.errors import ConfigError, InputError
from splade_os.mappings import FIRST_PHASE_FIELD, candidate_field
from splade_os.retrieval.query import (
    DEFAULT_FIRST_PHASE_TERMS,
    DEFAULT_TWO_PHASE_RATIO,
    DEFAULT_TWO_PHASE_WINDOW_FACTOR,
    DEFAULT_TWO_STEP_WINDOW_FACTOR,
    Pruning,
)

# The cost rule's defaults, Elasticsearch's own for its `pruning_config`: a query term found in more than 5 x the
# mean token's number of documents and weighing under 0.4 of the query's heaviest term costs much and adds little.
DEFAULT_DF_RATIO = 5.0
DEFAULT_DF_WEIGHT = 0.4

TUNED_KEY = "two_phase"
DEFAULT_MAX_RESCORE_WINDOW = 10_000  # the engines' default index.max_rescore_window: a larger window is a 400
RETUNE_GROWTH = 2.0  # doctor asks for a new `tune` once the index holds this many times the tuned-at count


@dataclass(frozen=True)
class TwoPhaseSettings:
    """Phase one keeps the terms of at least `ratio` x the largest weight; the rescore window holds `window` hits
    (at least the page); `top_n` keeps only the n heaviest query terms (None: all).

    On an index with the pruned first-phase field (two-step search), phase one instead sends the `first_terms`
    heaviest query terms to that field (`ratio` plays no part), and the window defaults to 30 x the hits asked for.

    Cost-aware pruning: with `df_ratio`, phase one leaves out the query terms whose document frequency is above
    `df_ratio` x the mean over the field's tokens and whose weight is under `df_weight` x the query's heaviest (the
    index's df table, `splade-os df`, says how frequent each is); the rescore still scores them, so the window's
    scores stay exact. `engine_pruning` has the engine prune phase one's terms itself (Elasticsearch's
    `pruning_config`, with the same defaults), where the engine can.

    `first_phase_k` picks, on an index built with candidate pruned fields (`index --first-phase-candidates`), the
    one holding each document's top k terms; None: the index's own pruned field. `tune` tries each.

    `full_field` runs phase one on the full vector field even where the index has a pruned field (the ratio and a
    window of 5 x k, as on an index without one): on real text with short documents that was both exact and the
    fastest (docs/scale.md), so `tune` tries it beside the two-step settings.
    """

    ratio: float = DEFAULT_TWO_PHASE_RATIO
    window: int | None = None  # None: 5 x the hits asked for (two-step: 30 x)
    top_n: int | None = None
    first_terms: int | None = None  # two-step only; None: DEFAULT_FIRST_PHASE_TERMS
    df_ratio: float | None = None  # the cost rule; None: off
    df_weight: float = DEFAULT_DF_WEIGHT
    engine_pruning: bool = False
    first_phase_k: int | None = None  # two-step only; None: the index's pruned field
    full_field: bool = False  # phase one on the full field, even on an index with the pruned field

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"the two-phase ratio must be in (0, 1], got {self.ratio}")
        if any(v is not None and v < 1 for v in (self.window, self.top_n, self.first_terms, self.first_phase_k)):
            raise ConfigError("the two-phase window, top-n, first-phase terms and first-phase k must be at least 1")
        if self.df_ratio is not None and self.df_ratio < 1:
            raise ConfigError(f"the df rule's ratio to the mean document frequency must be >= 1, got {self.df_ratio}")
        if not 0 < self.df_weight <= 1:
            raise ConfigError(f"the df rule's weight share must be in (0, 1], got {self.df_weight}")

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

    def two_step_on(self, pruned_field: bool) -> bool:
        """Whether this setting runs two-step (phase one on the pruned field) on an index that has one or not."""
        return pruned_field and not self.full_field

    def describe(self, *, two_step: bool = False) -> str:
        two_step = not self.full_field and (two_step or self.first_terms is not None or self.first_phase_k is not None)
        factor = DEFAULT_TWO_STEP_WINDOW_FACTOR if two_step else DEFAULT_TWO_PHASE_WINDOW_FACTOR
        window = self.window if self.window is not None else f"{factor} x k"
        terms = f"top {self.top_n} terms" if self.top_n else "all terms"
        cost = f", df rule {self.df_ratio:g}x/{self.df_weight:g}" if self.df_ratio is not None else ""
        cost += ", engine pruning" if self.engine_pruning else ""
        if two_step:
            field = f" on the top-{self.first_phase_k} field" if self.first_phase_k else ""
            return f"first phase top {self.terms} terms{field}{cost}, window {window}, rescore {terms}"
        field = " on the full field" if self.full_field else ""
        return f"ratio {self.ratio:g}{cost}, window {window}, {terms}{field}"


def rescore_window(
    settings: TwoPhaseSettings,
    size: int,
    *,
    two_step: bool,
    tuned_k: int | None = None,
    cap: int = DEFAULT_MAX_RESCORE_WINDOW,
) -> tuple[int, str]:
    """The rescore window of a page that ends at hit `size`, and a note when the index's cap cut it ("" else).

    A window `tune` chose at `tuned_k` hits is a multiple of that k, so it grows and shrinks with the page; any
    window holds at least the page, and at most `cap` (the index's `index.max_rescore_window`, past which the
    engines answer 400): a page that ends past it is refused."""
    wanted = settings.window_for(size, two_step=two_step)
    if settings.window is not None and tuned_k:
        wanted = max(math.ceil(settings.window * size / tuned_k), size)
    if wanted <= cap:
        return wanted, ""
    if size > cap:
        raise InputError(
            f"hits up to {size:,} go past the index's index.max_rescore_window ({cap:,}), which every rescored hit "
            "must be within: ask for fewer or an earlier page, or search with mode splade"
        )
    return cap, f"rescore window cut from {wanted:,} to {cap:,}, the index's index.max_rescore_window"


def max_rescore_window(answer: Mapping[str, Any]) -> int:
    """The smallest `index.max_rescore_window` in a get-settings answer (flat settings) over the indices behind a
    name; the engines' default where none sets it."""
    found = [
        int(body.get("settings", {}).get("index.max_rescore_window", DEFAULT_MAX_RESCORE_WINDOW))
        for body in answer.values()
    ]
    return min(found, default=DEFAULT_MAX_RESCORE_WINDOW)


def rescore_cap_request(index: str) -> dict[str, Any]:
    """The request (keywords of `client.indices.get_settings`) that reads the `index.max_rescore_window` of the
    indices behind `index`, when a searcher opens; `max_rescore_window` reads its answer."""
    return {"index": index, "name": "index.max_rescore_window", "flat_settings": True}


def refused_rescore_cap(err: Exception) -> int:
    """The cap for a searcher whose `rescore_cap_request` failed with `err`: a user who may not read index settings
    (the searcher role of docs/security.md on OpenSearch) gets the engines' default, right unless the index set
    another. Any other error is raised."""
    if not is_refusal(err):
        raise err
    return DEFAULT_MAX_RESCORE_WINDOW


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


def pruned_field(
    settings: TwoPhaseSettings, index: str, first_phase_k: int | None, candidates: tuple[int, ...]
) -> tuple[str, int]:
    """The pruned field phase one of two-step search queries for `settings` on an index whose pruned field holds
    `first_phase_k` terms (and its candidate fields `candidates`), and that field's k."""
    k = settings.first_phase_k
    if k is None or k == first_phase_k:
        return FIRST_PHASE_FIELD, first_phase_k or 0
    if k not in candidates:
        held = ", ".join(str(k) for k in (first_phase_k, *candidates) if k) or "none"
        raise ConfigError(
            f"{index!r} has no pruned field of the top {k} terms (its pruned fields hold k {held}): choose one of "
            "those, or build the index with --first-phase-candidates"
        )
    return candidate_field(k), k


def on_held_field(
    settings: TwoPhaseSettings, first_phase_k: int | None, candidates: tuple[int, ...]
) -> tuple[TwoPhaseSettings, str]:
    """A stored setting as it can run on the index: one tuned on a candidate field the index no longer has (a
    re-encode left it out) runs on the index's own pruned field, and the note says so ("" when nothing changed)."""
    k = settings.first_phase_k
    if k is None or k == first_phase_k or k in candidates:
        return settings, ""
    return replace(settings, first_phase_k=None), f"; the index has no top-{k} field any more: on {FIRST_PHASE_FIELD}"


def stored_settings(meta: Mapping[str, Any]) -> StoredSettings | None:
    """The tuned two-phase settings in a splade-os `_meta` record; None when the index was never tuned."""
    record = meta.get(TUNED_KEY)
    if not isinstance(record, Mapping):
        return None
    try:
        df_ratio = record.get("df_ratio")
        settings = TwoPhaseSettings(
            ratio=float(record["ratio"]),
            window=record.get("window"),
            top_n=record.get("top_n"),
            first_terms=record.get("first_terms"),
            df_ratio=None if df_ratio is None else float(df_ratio),
            df_weight=float(record.get("df_weight", DEFAULT_DF_WEIGHT)),
            engine_pruning=record.get("engine_pruning") is True,
            first_phase_k=record.get("first_phase_k"),
            full_field=record.get("full_field") is True,
        )
        return StoredSettings(
            settings,
            int(record["documents"]),
            str(record["tuned_at"]),
            float(record.get("agreement", 0.0)),
            int(record.get("k", 10)),
        )
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
