"""How a searcher searches its index (`SearchOptions`), besides what each query says (k, mode, filter, page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from splade_os.errors import ConfigError, warn_keyword_form
from splade_os.mappings import VECTOR_FIELD
from splade_os.retrieval.query import Pruning
from splade_os.retrieval.two_phase import TwoPhaseSettings


@dataclass(frozen=True)
class HybridParams:
    """Client-side fusion of BM25 and SPLADE: `rrf` or `linear` (normalised scores), over `depth` hits each."""

    fusion: Literal["rrf", "linear"] = "rrf"
    weights: tuple[float, float] = (1.0, 1.0)  # (bm25, splade)
    rrf_k: int = 60
    normalization: str = "min_max"
    depth: int = 100


@dataclass(frozen=True)
class SearchOptions:
    """How a `Searcher` (or `AsyncSearcher`) searches its index: `Searcher(index, model, options=SearchOptions(...))`.

    `field_name` is the vector field queried; `pruning` cuts each query vector (its heaviest terms, weight floors);
    `hybrid` fuses BM25 and SPLADE in hybrid mode; `two_phase` is the setting of two-phase mode, which wins over the
    one `tune` stored with the index (None: the stored one, else the defaults), and `two_phase_ratio` is short for
    `two_phase=TwoPhaseSettings(ratio=...)`; `bm25_fields` are the text fields BM25 searches (bm25 and hybrid).
    """

    field_name: str = VECTOR_FIELD
    pruning: Pruning = field(default_factory=Pruning)
    hybrid: HybridParams = field(default_factory=HybridParams)
    two_phase_ratio: float | None = None
    two_phase: TwoPhaseSettings | None = None
    bm25_fields: Sequence[str] = ("title", "text")

    def __post_init__(self) -> None:
        # Frozen: defaults for None and the tuple of fields are set once here, through object.__setattr__.
        if not isinstance(self.field_name, str) or not self.field_name:
            raise ConfigError(f"field_name must name the vector field to search, got {self.field_name!r}")
        for name, kind in (("pruning", Pruning), ("hybrid", HybridParams)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, kind())
            elif not isinstance(value, kind):
                raise ConfigError(f"{name} must be a {kind.__name__}(...), got {type(value).__name__}")
        if self.two_phase is not None and not isinstance(self.two_phase, TwoPhaseSettings):
            raise ConfigError(f"two_phase must be a TwoPhaseSettings(...), got {type(self.two_phase).__name__}")
        if self.two_phase_ratio is not None:
            if self.two_phase is not None:
                raise ConfigError("give two_phase=TwoPhaseSettings(...) or two_phase_ratio, not both")
            TwoPhaseSettings(ratio=self.two_phase_ratio)  # its own check of the range
        fields = self.bm25_fields
        if isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields) or not fields:
            raise ConfigError(f"bm25_fields must list the text fields BM25 searches, got {fields!r}")
        object.__setattr__(self, "bm25_fields", tuple(fields))

    @property
    def given_two_phase(self) -> TwoPhaseSettings | None:
        """The two-phase setting given: `two_phase`, or the one `two_phase_ratio` makes; None when neither is."""
        if self.two_phase is None and self.two_phase_ratio is not None:
            return TwoPhaseSettings(ratio=self.two_phase_ratio)
        return self.two_phase


def search_options(call: str, options: SearchOptions | None, keywords: Mapping[str, Any]) -> SearchOptions:
    """The options `call` was given: `options`, or the loose keywords of earlier versions (the fields of
    `SearchOptions` by name), which still work with a `KeywordFormWarning`; never both."""
    if options is not None and keywords:
        listed = ", ".join(keywords)
        raise ConfigError(f"give options=SearchOptions(...) or its fields as keywords, not both ({listed})")
    if options is not None:
        return options
    chosen = SearchOptions(**keywords)
    if keywords:
        warn_keyword_form(call, keywords, "options=SearchOptions(...)")
    return chosen
