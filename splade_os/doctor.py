"""`doctor`: check, one by one, what splade-os needs from a cluster, and say how to fix each thing that is wrong."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from splade_os import aliases
from splade_os.connection import ConnectionSettings, describe_error
from splade_os.errors import SpladeOSError
from splade_os.mappings import VECTOR_FIELD, check_encoder_meta, meta_from_mapping
from splade_os.query import cluster_max_clauses

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
MIN_CLAUSES = 1024  # OpenSearch's default; SPLADE queries of a few hundred terms fit with room for filters


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _version_check(info: Mapping[str, Any]) -> Check:
    version = info.get("version", {})
    number, dist = str(version.get("number", "?")), version.get("distribution", "elasticsearch")
    if dist != "opensearch":
        return Check("version", FAIL, f"{dist} {number} is not OpenSearch", "point --url at an OpenSearch cluster")
    major = int(number.split(".")[0]) if number[:1].isdigit() else 0
    if major < 2:
        return Check("version", WARN, f"OpenSearch {number}", "upgrade to OpenSearch 2.x or later (tested: 2.19)")
    return Check("version", OK, f"OpenSearch {number}")


def _modules_check(client: OpenSearch) -> Check:
    nodes = client.nodes.info(metric="plugins")["nodes"]
    lacking = [
        n.get("name", node_id)
        for node_id, n in nodes.items()
        if "mapper-extras" not in {m.get("name") for m in n.get("modules", []) + n.get("plugins", [])}
    ]
    if lacking:
        return Check(
            "mapper-extras", FAIL, f"missing on {len(lacking)} of {len(nodes)} nodes: {', '.join(lacking)}",
            "rank_features lives in the mapper-extras module, part of every OpenSearch distribution: use a full "
            "distribution (or `splade-os node start`, which adds it to the minimal one)",
        )  # fmt: skip
    return Check("mapper-extras", OK, f"rank_features available on all {len(nodes)} nodes")


def _clauses_check(client: OpenSearch) -> Check:
    limit = cluster_max_clauses(client)
    if limit < MIN_CLAUSES:
        return Check(
            "max_clause_count", WARN, f"{limit}: long queries lose their lightest terms",
            'PUT _cluster/settings {"persistent": {"indices.query.bool.max_clause_count": 1024}} '
            "(dynamic since 2.16; earlier: opensearch.yml and a restart)",
        )  # fmt: skip
    return Check("max_clause_count", OK, str(limit))


def _index_checks(client: OpenSearch, index: str, manifest: Mapping[str, Any] | None) -> list[Check]:
    concrete = aliases.resolve(client, index)
    if not concrete:
        return [
            Check("index", FAIL, f"no index or alias {index!r}", f"build it: splade-os index CORPUS --index {index}")
        ]
    mapping = client.indices.get_mapping(index=index)
    checks = [Check("index", OK, f"{index} -> {', '.join(concrete)}")]
    for name, body in mapping.items():
        field = body.get("mappings", {}).get("properties", {}).get(VECTOR_FIELD, {})
        field_type = field.get("type") or ("an object" if "properties" in field else "missing")
        if field_type != "rank_features":
            checks.append(Check(
                "mapping", FAIL, f"{name}: field {VECTOR_FIELD!r} is {field_type}, not rank_features",
                f"re-encode its documents into a splade-os index: splade-os index --from-index {index} "
                "--index NEW_NAME --model MODEL",
            ))  # fmt: skip
    if len(checks) == 1:
        checks.append(Check("mapping", OK, f"{VECTOR_FIELD!r} is rank_features"))
    meta = meta_from_mapping(mapping)
    if manifest is None:
        checks.append(Check("encoder", SKIP, "no --model given: the index's encoder was not compared"))
    elif not (meta.get("encoder") or {}).get("sha256"):
        checks.append(Check("encoder", WARN, "the index records no encoder in _meta",
                            "rebuild it with splade-os so that queries from another model are refused"))  # fmt: skip
    else:
        try:
            check_encoder_meta(index, meta, manifest)
            checks.append(Check("encoder", OK, f"built with {meta['encoder'].get('name')}, the same model"))
        except SpladeOSError as err:
            checks.append(Check("encoder", FAIL, str(err).split(": scores")[0],
                                f"search with the model that built it, or re-encode: splade-os reindex {index} "
                                "--from-index --model NEW_MODEL"))  # fmt: skip
    checks.append(_health_check(client, index))
    return checks


def _health_check(client: OpenSearch, index: str | None) -> Check:
    health = client.cluster.health(index=index) if index else client.cluster.health()
    status, unassigned = health.get("status"), health.get("unassigned_shards", 0)
    what = f"index {index}" if index else "cluster"
    detail = f"{what} {status}: {health.get('active_shards', 0)} active, {unassigned} unassigned shards"
    if status == "green":
        return Check("shards", OK, detail)
    if status == "yellow":
        fix = "replicas are unassigned: add nodes, or on one node set index.number_of_replicas to 0"
        return Check("shards", WARN, detail, fix)
    return Check("shards", FAIL, detail, "primary shards are unassigned: GET _cluster/allocation/explain says why")


def run_checks(
    settings: ConnectionSettings, *, index: str | None = None, model_dir: str | Path | None = None
) -> list[Check]:
    """Every check in order; a check that cannot run because an earlier one failed is not attempted."""
    checks: list[Check] = []
    manifest = None
    if model_dir is not None:
        from splade_os.encoder import read_manifest

        try:
            manifest = read_manifest(Path(model_dir))
            checks.append(Check("model", OK, f"{manifest.get('name')} ({model_dir})"))
        except SpladeOSError as err:
            checks.append(Check("model", FAIL, str(err), "pass --model with a folder written by `splade-os export`"))
    client = settings.client()
    try:
        return _cluster_checks(client, settings, checks, index, manifest)
    finally:
        client.close()


def _cluster_checks(
    client: OpenSearch,
    settings: ConnectionSettings,
    checks: list[Check],
    index: str | None,
    manifest: Mapping[str, Any] | None,
) -> list[Check]:
    try:
        info = client.info()
    except Exception as err:  # every failure to connect becomes the first failed check
        return [*checks, Check("reachable", FAIL, describe_error(err, settings))]
    checks.append(Check("reachable", OK, settings.describe()))
    checks.append(_version_check(info))
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("mapper-extras", lambda: [_modules_check(client)]),
        ("max_clause_count", lambda: [_clauses_check(client)]),
        ("index", lambda: _index_checks(client, index, manifest) if index else [_health_check(client, None)]),
    ]
    for name, step in steps:
        try:
            checks += step()
        except Exception as err:  # a permission or an API the cluster lacks: say which check could not run
            checks.append(Check(name, FAIL, describe_error(err, settings), "give the user the monitor permissions"))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def to_json(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)
