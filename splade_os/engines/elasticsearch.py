"""Elasticsearch (8.15+, 9.x): vectors in a `sparse_vector` field, queried with the `sparse_vector` query.

Elasticsearch 8.19 and 9.1+ prune query tokens of new `sparse_vector` fields by default (thresholds tuned for
ELSER), which would make scores approximate; splade-os turns that off in the mapping and in every query, so its own
pruning and two-phase options stay the only approximations. Dotted tokens need no escaping here. Elasticsearch 9
leaves vectors out of `_source` in search responses by default; explanations and re-encoding read them back, so
the index keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from splade_os.engines.base import DEFAULT_MAX_CLAUSES, FAIL, OK, Check, PruningConfig
from splade_os.engines.refusals import is_missing_endpoint
from splade_os.engines.roles import INDEXER, SEARCHER, privileges
from splade_os.errors import MissingDependencyError
from splade_os.vectors import SparseVector

INSTALL_HINT = "Elasticsearch needs its official client: pip install 'splade-os[elasticsearch]'"
MIN_QUERY_VERSION = (8, 15)  # the `sparse_vector` query with `query_vector`


def import_client() -> Any:
    """The `elasticsearch` package, or one line that says how to install it."""
    try:
        import elasticsearch
        import elasticsearch.helpers  # noqa: F401  (bulk and scan)
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return elasticsearch


# Elasticsearch 8.5+ allows max(1024, heap MB x 64 / search threads) clauses per node (SearchUtils); its
# `indices.query.bool.max_clause_count` setting still answers 4096 but has had no effect since 8.0.
_CLAUSES_PER_HEAP_MB = 64
NODE_LIMITS = "nodes.*.jvm.mem.heap_max_in_bytes,nodes.*.thread_pool.search"


@dataclass(frozen=True)
class ElasticsearchEngine:
    version: tuple[int, ...] = (9, 2, 0)
    name: str = "elasticsearch"
    vector_type: str = "sparse_vector"

    @property
    def label(self) -> str:
        return "Elasticsearch " + ".".join(map(str, self.version))

    @property
    def _prunes_by_default(self) -> bool:
        # index_options.prune arrived with default pruning, in 8.19 and 9.1 (9.0 has neither)
        return (8, 19) <= self.version[:2] < (9, 0) or self.version[:2] >= (9, 1)

    def vector_mapping(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {"type": "sparse_vector"}
        if self._prunes_by_default:
            mapping["index_options"] = {"prune": False}
        return mapping

    def index_settings(self) -> dict[str, Any]:
        if self.version[:2] >= (9, 1):
            return {"mapping": {"exclude_source_vectors": False}}
        return {}

    def to_field(self, vector: SparseVector) -> dict[str, float]:
        return vector.to_dict()

    def from_field(self, value: Mapping[str, float]) -> SparseVector:
        return SparseVector({k: float(w) for k, w in value.items()})

    def vector_clauses(
        self, vector: SparseVector, field_name: str, pruning: PruningConfig | None = None
    ) -> list[dict[str, Any]]:
        if not vector:
            return []
        query: dict[str, Any] = {"field": field_name, "query_vector": dict(vector.sorted_items()), "prune": False}
        if pruning is not None:
            query.update(self.pruning_options(pruning))
        return [{"sparse_vector": query}]

    def concurrent_search_settings(self, enabled: bool) -> dict[str, Any] | None:
        return None  # no index setting: since 8.12 it decides per query whether to search segments in parallel

    def pruning_options(self, config: PruningConfig) -> dict[str, Any]:
        return {
            "prune": True,
            "pruning_config": {
                "tokens_freq_ratio_threshold": config.tokens_freq_ratio_threshold,
                "tokens_weight_threshold": config.tokens_weight_threshold,
                "only_score_pruned_tokens": config.only_score_pruned_tokens,
            },
        }

    def field_type(self, mapping: Mapping[str, Any], field_name: str) -> str | None:
        field = mapping.get("mappings", {}).get("properties", {}).get(field_name, {})
        return field.get("type") if isinstance(field, Mapping) else None

    def cluster_checks(self, client: Any) -> list[Check]:
        if self.version[:2] < MIN_QUERY_VERSION:
            return [
                Check(
                    "version",
                    FAIL,
                    f"{self.label}: the sparse_vector query needs 8.15 or later",
                    "upgrade Elasticsearch to 8.15+ (tested: 8.19, 9.2)",
                )
            ]
        pruning = "query-token pruning turned off per index and query" if self._prunes_by_default else "exact"
        return [Check("version", OK, self.label), Check("sparse_vector", OK, f"field and query ({pruning})")]

    def missing_privileges(self, client: Any, alias: str, concrete: str) -> dict[str, list[str]] | None:
        """From `_security/user/_has_privileges`, which any user may call about themselves."""
        es = import_client()
        wanted = {role: privileges(self.name, name) for role, name in (("index", INDEXER), ("search", SEARCHER))}
        cluster = sorted({p for privs in wanted.values() for p in privs["cluster"]})
        index = sorted({p for privs in wanted.values() for p in privs["index"]})
        try:
            answer = client.security.has_privileges(
                cluster=cluster, index=[{"names": [alias, concrete], "privileges": index}]
            )
        except es.ApiError as err:
            if security_off(err):
                return None
            raise
        have_cluster = answer.get("cluster", {})
        per_index = answer.get("index", {})
        missing: dict[str, list[str]] = {}
        for role, privs in wanted.items():
            lacking = [f"cluster {p}" for p in privs["cluster"] if not have_cluster.get(p)]
            lacking += [f"index {p}" for p in privs["index"] if not all(v.get(p) for v in per_index.values())]
            missing[role] = lacking
        return missing

    def bulk(
        self, client: Any, actions: Iterable[dict[str, Any]], **options: Any
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        es = import_client()
        from elastic_transport import TransportError

        timeout = options.pop("request_timeout", None)
        if timeout is not None:
            client = client.options(request_timeout=timeout)
        source = iter(actions)
        pending: dict[tuple[Any, Any], dict[str, Any]] = {}  # sent (or about to be), not answered yet

        def feed() -> Iterator[dict[str, Any]]:
            for action in source:
                pending[(action.get("_index"), action.get("_id"))] = action
                yield action

        try:
            for ok, item in es.helpers.streaming_bulk(
                client, feed(), raise_on_error=False, raise_on_exception=False, **options
            ):
                answer = next(iter(item.values()))
                pending.pop((answer.get("_index"), answer.get("_id")), None)
                yield ok, item
        except TransportError as err:
            # The Elasticsearch helper raises when a request gets no answer at all (refused, reset, timed out);
            # give every action without an answer a failure of its own, so the caller retries it like any other.
            reason = f"{type(err).__name__}: {err}"
            for action in [*pending.values(), *source]:
                op = action.get("_op_type", "index")
                yield (
                    False,
                    {op: {"_index": action.get("_index"), "_id": action.get("_id"), "status": None, "error": reason}},
                )

    def scan(self, client: Any, index: str, query: Mapping[str, Any], **options: Any) -> Iterable[dict[str, Any]]:
        return import_client().helpers.scan(client, index=index, query=dict(query), **options)

    def with_timeout(self, client: Any, seconds: float) -> tuple[Any, dict[str, Any]]:
        return client.options(request_timeout=seconds), {}

    def clause_limit_request(self, client: Any) -> Any:
        return client.nodes.info(metric="jvm,thread_pool", filter_path=NODE_LIMITS)

    def clause_limit(self, response: Mapping[str, Any]) -> int:
        """The smallest of the limits the nodes computed at start-up from their heap and search threads: reading the
        setting instead cut queries the cluster would take, and let through queries a small node refuses."""
        limits = []
        for node in response.get("nodes", {}).values():
            heap_mb = int(node.get("jvm", {}).get("mem", {}).get("heap_max_in_bytes", 0)) >> 20
            pool = node.get("thread_pool", {}).get("search", {})
            threads = int(pool.get("max") or pool.get("size") or 0)
            computed = heap_mb * _CLAUSES_PER_HEAP_MB // threads if threads > 0 else 0
            limits.append(max(DEFAULT_MAX_CLAUSES, computed))
        return min(limits, default=DEFAULT_MAX_CLAUSES)

    def without_retries(self, client: Any) -> tuple[Any, bool]:
        # `options` makes a client that shares the caller's connection pool: it must not be closed.
        return client.options(max_retries=0, retry_on_timeout=False), False


def security_off(err: BaseException) -> bool:
    """Whether a failed security API call says the cluster has no security: no such endpoint (8.x and 9.x with
    security disabled), or "must be explicitly enabled" (7.x on a basic license). Any other error, a 500 or a
    request the node could not take included, is not a cluster without security and must not be reported as one."""
    return is_missing_endpoint(err) or "must be explicitly enabled" in str(err)


def server_version(client: Any) -> tuple[int, ...]:
    """The cluster's version; the integ-test distribution answers 405 to `GET /`, so nodes info is the fallback."""
    es = import_client()
    try:
        number = client.info()["version"]["number"]
    except es.ApiError as err:
        if err.meta.status not in (403, 405):
            raise
        nodes = client.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version")["nodes"]
        number = next(iter(nodes.values()))["version"]
    return parse_version(number)


def parse_version(number: str) -> tuple[int, ...]:
    parts = []
    for piece in str(number).split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or (0,)
