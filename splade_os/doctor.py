"""`doctor`: check, one by one, what splade-os needs from a cluster, and say how to fix each thing that is wrong."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from splade_os import aliases
from splade_os.connection import ConnectionSettings
from splade_os.df import read_df
from splade_os.engines import FAIL, OK, SKIP, WARN, Check, Engine, clients, engine_for
from splade_os.engines.errors import describe_error
from splade_os.engines.refusals import is_refusal
from splade_os.errors import SpladeOSError
from splade_os.mappings import (
    DEFAULT_FIRST_PHASE_K,
    FIRST_PHASE_FIELD,
    VECTOR_FIELD,
    check_encoder_meta,
    meta_from_mapping,
    recorded_candidates,
    recorded_first_phase,
    vector_field_problem,
)
from splade_os.retrieval.two_phase import growth_warning, stored_settings

__all__ = ["FAIL", "OK", "SKIP", "WARN", "Check", "failed", "format_checks", "run_checks", "to_json"]
MIN_CLAUSES = 1024  # OpenSearch's default; SPLADE queries of a few hundred terms fit with room for filters


def _clauses_check(client: Any, engine: Engine) -> Check:
    # Read here rather than through query.cluster_max_clauses, which assumes the default when refused.
    limit = engine.clause_limit(engine.clause_limit_request(client))  # Elasticsearch's is never below 1024
    if limit < MIN_CLAUSES:
        return Check(
            "max_clause_count",
            WARN,
            f"{limit}: long queries lose their lightest terms",
            'PUT _cluster/settings {"persistent": {"indices.query.bool.max_clause_count": 1024}} '
            "(dynamic since 2.16; earlier: opensearch.yml and a restart)",
        )
    return Check("max_clause_count", OK, str(limit))


def _index_checks(client: Any, engine: Engine, index: str, manifest: Mapping[str, Any] | None) -> list[Check]:
    concrete = aliases.resolve(client, index)
    if not concrete:
        return [
            Check("index", FAIL, f"no index or alias {index!r}", f"build it: splade-os index CORPUS --index {index}")
        ]
    mapping = client.indices.get_mapping(index=index)
    checks = [Check("index", OK, f"{index} -> {', '.join(concrete)}")]
    problem = vector_field_problem(index, mapping, VECTOR_FIELD, engine=engine)
    if problem:
        checks.append(
            Check(
                "mapping",
                FAIL,
                problem.split(": it was not created")[0],
                f"re-encode its documents into a splade-os index: splade-os index --from-index {index} "
                "--index NEW_NAME --model MODEL",
            )
        )
    else:
        checks.append(Check("mapping", OK, f"{VECTOR_FIELD!r} is {engine.vector_type}"))
    meta = meta_from_mapping(mapping)
    if manifest is None:
        checks.append(Check("encoder", SKIP, "no --model given: the index's encoder was not compared"))
    elif not (meta.get("encoder") or {}).get("sha256"):
        checks.append(
            Check(
                "encoder",
                WARN,
                "the index records no encoder in _meta",
                "rebuild it with splade-os so that queries from another model are refused",
            )
        )
    else:
        try:
            check_encoder_meta(index, meta, manifest)
            checks.append(Check("encoder", OK, f"built with {meta['encoder'].get('name')}, the same model"))
        except SpladeOSError as err:
            checks.append(
                Check(
                    "encoder",
                    FAIL,
                    str(err).split(": scores")[0],
                    f"search with the model that built it, or re-encode: splade-os reindex {index} "
                    "--from-index --model NEW_MODEL",
                )
            )
    if not problem:
        checks.append(_first_phase_check(index, meta))
    checks.append(_privileges_check(client, engine, index, concrete[0]))
    documents = int(client.count(index=index)["count"])
    if len(concrete) == 1:
        checks.append(_df_check(client, index, concrete[0], documents))
    growth = growth_warning(meta, documents)
    if growth:
        checks.append(Check("two-phase", WARN, growth, f"splade-os tune {index} --model MODEL"))
    return checks


def _first_phase_check(index: str, meta: Mapping[str, Any]) -> Check:
    """Whether two-phase search on the index can run two-step: its pruned first-phase field, and that field's k."""
    k = recorded_first_phase(meta)
    candidates = recorded_candidates(meta)
    if k and candidates:
        stored = stored_settings(meta)
        held = f"{FIRST_PHASE_FIELD!r} holds each document's top {k} terms, candidate fields its top " + ", ".join(
            str(c) for c in candidates
        )
        if stored is None:
            return Check(
                "first-phase",
                WARN,
                f"{held}, and no tuned setting chooses among them: two-phase search uses the top-{k} field",
                f"splade-os tune {index} --model MODEL",
            )
        chosen = stored.settings.first_phase_k or k
        keep = f"--first-phase-k {chosen} --first-phase-candidates ''"
        return Check(
            "first-phase",
            OK,
            f"{held}; tune chose the top-{chosen} field (the others only cost disk: "
            f"`splade-os reindex {index} --from-index --model MODEL {keep}` drops them)",
        )
    if k:
        return Check(
            "first-phase",
            OK,
            f"{FIRST_PHASE_FIELD!r} holds each document's top {k} terms: two-phase search runs two-step",
        )
    # The default layout: on real text two-phase search on the full field was the faster as built (docs/scale.md);
    # the pruned field is an option `tune` can weigh, not a fix.
    return Check(
        "first-phase",
        OK,
        f"no pruned first-phase field {FIRST_PHASE_FIELD!r} (the default): two-phase search runs "
        f"phase one on the full field; `reindex {index} --from-index --model MODEL --first-phase-k "
        f"{DEFAULT_FIRST_PHASE_K}` adds two-step search for `tune` to weigh",
    )


def _df_check(client: Any, index: str, concrete: str, documents: int) -> Check:
    """Whether the document-frequency table exists and was counted near today's document count."""
    fix = f"splade-os df {index} --model MODEL"
    try:
        table = read_df(client, concrete)
    except Exception as err:  # the table is an extra: the index's other checks stand without it
        return Check("df", SKIP if is_refusal(err) else WARN, f"not checked: {describe_error(err)}")
    if table is None:
        return Check("df", WARN, f"no document-frequency table for {concrete}", fix)
    if table.partial:
        return Check(
            "df",
            WARN,
            f"the table of {concrete} is partial: counted over {table.vocabulary_size:,} listed "
            "tokens only, documents may hold others",
            fix,
        )
    if table.is_stale(documents):
        return Check(
            "df",
            WARN,
            f"the table of {concrete} was counted at {table.documents:,} documents on "
            f"{table.computed_at}; the index holds {documents:,} now",
            fix,
        )
    return Check(
        "df",
        OK,
        f"{len(table.counts):,} tokens with df > 0, counted at {table.documents:,} documents on {table.computed_at}",
    )


def _privileges_check(client: Any, engine: Engine, index: str, concrete: str) -> Check:
    """What these credentials lack for indexing into and searching `index` (docs/security.md has the roles)."""
    missing = engine.missing_privileges(client, index, concrete)
    if missing is None:
        return Check("privileges", SKIP, "the cluster has no security: every user may do everything")
    if not missing["index"] and not missing["search"]:
        return Check("privileges", OK, f"these credentials may index into and search {index}")
    fix = "add them to the user's role: docs/security.md has an indexer and a searcher role for each engine"
    if missing["search"]:
        return Check("privileges", FAIL, f"cannot search {index}, lacks: {', '.join(missing['search'])}", fix)
    return Check(
        "privileges", WARN, f"may search {index} but not index into it, lacks: {', '.join(missing['index'])}", fix
    )


def _health_check(client: Any, index: str | None) -> Check:
    health = client.cluster.health(index=index) if index else client.cluster.health()
    status, unassigned = health.get("status"), health.get("unassigned_shards", 0)
    what = f"index {index}" if index else "cluster"
    active = health.get("active_shards", 0)
    detail = f"{what} {status}: {active} active, {unassigned} unassigned shard" + ("" if unassigned == 1 else "s")
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
        from splade_os.model.folders import load_manifest

        try:
            manifest = load_manifest(Path(model_dir))
            checks.append(Check("model", OK, f"{manifest.get('name')} ({model_dir})"))
        except SpladeOSError as err:
            fix = "pass --model with a model folder (`splade-os models DIR` says what one holds)"
            checks.append(Check("model", FAIL, str(err), fix))
    client = clients.client_for(settings)
    try:
        return _cluster_checks(client, settings, checks, index, manifest)
    finally:
        client.close()


def _cluster_checks(
    client: Any,
    settings: ConnectionSettings,
    checks: list[Check],
    index: str | None,
    manifest: Mapping[str, Any] | None,
) -> list[Check]:
    try:
        engine = engine_for(client)
    except Exception as err:  # every failure to connect becomes the first failed check
        return [*checks, Check("reachable", FAIL, describe_error(err, settings))]
    checks.append(Check("reachable", OK, settings.describe()))
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        (engine.name, lambda: engine.cluster_checks(client)),
        ("max_clause_count", lambda: [_clauses_check(client, engine)]),
        ("index", lambda: _index_checks(client, engine, index, manifest) if index else []),
        # The health of a missing index would wait for it to appear and time out (408): the cluster's instead.
        ("shards", lambda: [_health_check(client, None if _missing(checks) else index)]),
    ]
    for name, step in steps:
        try:
            checks += step()
        except Exception as err:  # a permission or an API the cluster lacks: say which check could not run
            if is_refusal(err):  # these credentials may not look: not a fault of the cluster
                checks.append(Check(name, SKIP, f"not checked: {describe_error(err, settings)}"))
            else:
                checks.append(Check(name, FAIL, describe_error(err, settings), "give the user the monitor permissions"))
    return checks


def _missing(checks: list[Check]) -> bool:
    return any(c.name == "index" and c.status == FAIL for c in checks)


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
