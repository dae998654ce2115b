"""OpenSearch (2.x, 3.x): vectors in a `rank_features` field, queried as a `bool` of linear `rank_feature` clauses.

The `rank_feature` query splits its field name at the last `.`, so every token goes through `escape_token` at index
time and at query time (a raw `u.s.` would silently match nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, helpers

from splade_os.engines import opensearch_privileges
from splade_os.engines.base import DEFAULT_MAX_CLAUSES, FAIL, OK, WARN, Check, PruningConfig
from splade_os.errors import ConfigError
from splade_os.vectors import SparseVector, escape_token


@dataclass(frozen=True)
class OpenSearchEngine:
    version: tuple[int, ...] = (2, 19, 0)
    name: str = "opensearch"
    vector_type: str = "rank_features"

    @property
    def label(self) -> str:
        return "OpenSearch " + ".".join(map(str, self.version))

    def vector_mapping(self) -> dict[str, Any]:
        return {"type": "rank_features"}

    def index_settings(self) -> dict[str, Any]:
        return {}

    def to_field(self, vector: SparseVector) -> dict[str, float]:
        return vector.to_field()

    def from_field(self, value: Mapping[str, float]) -> SparseVector:
        return SparseVector.from_field(value)

    def vector_clauses(
        self, vector: SparseVector, field_name: str, pruning: PruningConfig | None = None
    ) -> list[dict[str, Any]]:
        if pruning is not None:
            self.pruning_options(pruning)  # raises: OpenSearch has none
        return [
            {"rank_feature": {"field": f"{field_name}.{escape_token(t)}", "linear": {}, "boost": w}}
            for t, w in vector.sorted_items()
        ]

    def concurrent_search_settings(self, enabled: bool) -> dict[str, Any] | None:
        # GA in 2.12 as a boolean; 2.17 replaced it with a mode (all, auto, none), which 3.x defaults to auto.
        if self.version[:2] >= (2, 17):
            return {"search": {"concurrent_segment_search": {"mode": "all" if enabled else "none"}}}
        if self.version[:2] >= (2, 12):
            return {"search": {"concurrent_segment_search": {"enabled": enabled}}}
        return None

    def pruning_options(self, config: PruningConfig) -> dict[str, Any]:
        raise ConfigError(
            f"{self.label} has no query-time token pruning of its own (pruning_config is Elasticsearch's "
            "sparse_vector option): prune the query vector with splade-os's pruning instead"
        )

    def field_type(self, mapping: Mapping[str, Any], field_name: str) -> str | None:
        field = mapping.get("mappings", {}).get("properties", {}).get(field_name, {})
        return field.get("type") if isinstance(field, Mapping) else None

    def cluster_checks(self, client: Any) -> list[Check]:
        checks = [self._version_check()]
        nodes = client.nodes.info(metric="plugins")["nodes"]
        lacking = [
            n.get("name", node_id)
            for node_id, n in nodes.items()
            if "mapper-extras" not in {m.get("name") for m in n.get("modules", []) + n.get("plugins", [])}
        ]
        if lacking:
            checks.append(
                Check(
                    "mapper-extras",
                    FAIL,
                    f"missing on {len(lacking)} of {len(nodes)} nodes: {', '.join(lacking)}",
                    "rank_features lives in the mapper-extras module, part of every OpenSearch distribution: use a "
                    "full distribution (or `splade-os node start`, which adds it to the minimal one)",
                )
            )
        else:
            where = f"all {len(nodes)} node{_s(len(nodes))}"
            checks.append(Check("mapper-extras", OK, f"rank_features available on {where}"))
        return checks

    def _version_check(self) -> Check:
        if self.version[0] < 2:
            return Check("version", WARN, self.label, "upgrade to OpenSearch 2.x or later (tested: 2.19, 3.x)")
        return Check("version", OK, self.label)

    def missing_privileges(self, client: Any, alias: str, concrete: str) -> dict[str, list[str]] | None:
        if not opensearch_privileges.security_enabled(client):
            return None
        return opensearch_privileges.missing_actions(client, alias, concrete)

    def bulk(
        self, client: Any, actions: Iterable[dict[str, Any]], **options: Any
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        # opensearch-py turns a request without an answer into per-action failures itself (status "N/A").
        yield from helpers.streaming_bulk(client, actions, raise_on_error=False, raise_on_exception=False, **options)

    def scan(self, client: Any, index: str, query: Mapping[str, Any], **options: Any) -> Iterable[dict[str, Any]]:
        return helpers.scan(client, index=index, query=dict(query), **options)

    def with_timeout(self, client: Any, seconds: float) -> tuple[Any, dict[str, Any]]:
        return client, {"request_timeout": seconds}

    def clause_limit_request(self, client: Any) -> Any:
        # `indices.query.bool.max_clause_count`: dynamic since 2.16, set or the default.
        return client.cluster.get_settings(include_defaults=True, flat_settings=True)

    def clause_limit(self, response: Mapping[str, Any]) -> int:
        for scope in ("transient", "persistent", "defaults"):
            value = response.get(scope, {}).get("indices.query.bool.max_clause_count")
            if value is not None:
                return int(value)
        return DEFAULT_MAX_CLAUSES

    def without_retries(self, client: Any) -> tuple[Any, bool]:
        transport = client.transport
        copy = OpenSearch(
            hosts=transport.hosts,
            connection_class=transport.connection_class,
            serializer=transport.serializer,
            retry_on_timeout=False,
            send_get_body_as=transport.send_get_body_as,
            **{**transport.kwargs, "max_retries": 0},
        )
        return copy, True


def _s(n: int) -> str:
    return "" if n == 1 else "s"
