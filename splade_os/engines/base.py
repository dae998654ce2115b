"""What splade-os needs from a search engine, in one small interface; one module per engine implements it.

Everything else (pruning, fusion, the indexing ledger, aliases, the CLI) is engine-neutral: it calls the engine's
client with the request bodies both official clients accept, and asks the engine for the few things that differ:
the vector field, how a vector is written and queried, how to bulk-send and scan, and how to explain an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from splade_os.errors import ConfigError
from splade_os.vectors import SparseVector


@dataclass(frozen=True)
class Check:
    """One line of `doctor`: what was checked, ok/warn/FAIL/skip, what was found, and how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""


OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
DEFAULT_MAX_CLAUSES = 1024  # what a cluster allows when it says nothing else (OpenSearch's default)


@dataclass(frozen=True)
class PruningConfig:
    """The engine's own query-time token pruning (Elasticsearch's `sparse_vector` `pruning_config`): tokens more
    frequent than `tokens_freq_ratio_threshold` times the average token's frequency and weighing less than
    `tokens_weight_threshold` of the query's heaviest weight are dropped (or, with `only_score_pruned_tokens`,
    the only ones kept). Scores become approximate, as with any pruning."""

    tokens_freq_ratio_threshold: float = 5.0
    tokens_weight_threshold: float = 0.4
    only_score_pruned_tokens: bool = False

    def __post_init__(self) -> None:
        # Elasticsearch's own bounds, checked here so that a bad value is one line before any request.
        if not 1 <= self.tokens_freq_ratio_threshold <= 100:
            raise ConfigError(
                f"tokens_freq_ratio_threshold must be in [1, 100], got {self.tokens_freq_ratio_threshold}"
            )
        if not 0 <= self.tokens_weight_threshold <= 1:
            raise ConfigError(f"tokens_weight_threshold must be in [0, 1], got {self.tokens_weight_threshold}")


class Engine(Protocol):
    """An engine flavour at a version. Instances are immutable and shared by every thread."""

    @property
    def name(self) -> str:
        """ "opensearch" or "elasticsearch"."""
        ...

    @property
    def version(self) -> tuple[int, ...]: ...

    @property
    def vector_type(self) -> str:
        """The mapping type of the vector field."""
        ...

    @property
    def label(self) -> str:
        """ "OpenSearch 2.19.6": for messages and reports."""
        ...

    def vector_mapping(self) -> dict[str, Any]:
        """The mapping of the vector field, set so that scores are the exact dot product."""
        ...

    def index_settings(self) -> dict[str, Any]:
        """Index settings this engine needs beyond the shared template (may be empty)."""
        ...

    def to_field(self, vector: SparseVector) -> dict[str, float]:
        """A document's vector as the value of the vector field."""
        ...

    def from_field(self, value: Mapping[str, float]) -> SparseVector:
        """The inverse of `to_field`: a stored field value back to vocabulary tokens."""
        ...

    def vector_clauses(
        self, vector: SparseVector, field_name: str, pruning: PruningConfig | None = None
    ) -> list[dict[str, Any]]:
        """`bool.should` clauses whose summed score is the dot product of `vector` with the field; with `pruning`,
        the engine's own query-token pruning instead (ConfigError where it has none: see `pruning_options`)."""
        ...

    def concurrent_search_settings(self, enabled: bool) -> dict[str, Any] | None:
        """Index settings that turn the searching of a shard's segments in parallel on or off; None when the
        engine has no such index setting."""
        ...

    def pruning_options(self, config: PruningConfig) -> dict[str, Any]:
        """The options to add to the engine's vector query for its own token pruning; ConfigError when the engine
        has none."""
        ...

    def field_type(self, mapping: Mapping[str, Any], field_name: str) -> str | None:
        """The type of `field_name` in one index's get-mapping body."""
        ...

    def cluster_checks(self, client: Any) -> list[Check]:
        """`doctor`'s engine-specific checks: the version, and what the vector field and query need."""
        ...

    def missing_privileges(self, client: Any, alias: str, concrete: str) -> dict[str, list[str]] | None:
        """What the current user lacks on index `alias` (backed by `concrete`): {"index": [...], "search": [...]},
        named the way the engine's roles name them; None when the cluster has no security to ask."""
        ...

    def bulk(
        self, client: Any, actions: Iterable[dict[str, Any]], **options: Any
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        """streaming_bulk that never raises for a failed request: each action gets an item, status None when the
        request got no HTTP answer."""
        ...

    def scan(self, client: Any, index: str, query: Mapping[str, Any], **options: Any) -> Iterable[dict[str, Any]]:
        """Every hit of `query` in `index`, with a scroll."""
        ...

    def with_timeout(self, client: Any, seconds: float) -> tuple[Any, dict[str, Any]]:
        """A client and the keyword arguments that give one call `seconds` to answer (a force-merge, a bulk)."""
        ...

    def clause_limit_request(self, client: Any) -> Any:
        """The request that tells how many clauses one query may hold (a coroutine on an asyncio client)."""
        ...

    def clause_limit(self, response: Mapping[str, Any]) -> int:
        """The clause limit in the answer to `clause_limit_request`."""
        ...

    def without_retries(self, client: Any) -> tuple[Any, bool]:
        """A client to the same cluster whose transport never re-sends a request, and whether the caller must
        close it. The given client is never changed."""
        ...


def status_of(item: Mapping[str, Any]) -> Any:
    """The HTTP status of one bulk item; anything not a number means the request got no answer."""
    status = item.get("status")
    return status if isinstance(status, int) else None
