"""The least-privilege roles of docs/security.md, as data: an indexer and a searcher for each engine.

`splade-os node start --secure` creates them on its local node (with the index pattern `*`); docs/security.md shows
them with a pattern for one alias and its versions, and its tests remove each privilege in turn to show it is needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

INDEXER = "splade_indexer"
SEARCHER = "splade_searcher"
ROLES = (INDEXER, SEARCHER)

# OpenSearch security plugin: action names, so that each one can be dropped and shown to be needed.
_OPENSEARCH: dict[str, dict[str, list[str]]] = {
    INDEXER: {
        "cluster": [
            "cluster:monitor/main",  # GET /: which engine and version
            "indices:data/write/bulk",  # the plugin checks a bulk as a whole here, then each item on its index
            "indices:data/read/scroll",  # reindex --from-index reads the source with a scroll
            "indices:data/read/scroll/clear",
            "indices:data/read/mget",  # index --resume: which documents of the interrupted batch landed
            "indices:data/read/msearch",  # df: token counts, hundreds per request (each item checked as a search)
        ],
        "index": [
            "indices:admin/create",  # each version is a new index
            "indices:admin/delete",  # --recreate drops an unfinished run's index, --delete-previous old versions
            "indices:admin/get",  # find the alias's versions, does it exist
            "indices:admin/mappings/get",  # read _meta: the encoder that built the index
            "indices:admin/aliases",  # move the alias to the verified version
            "indices:admin/aliases/get",
            "indices:admin/settings/update",  # refreshes off while loading, back on at the end
            "indices:monitor/settings/get",  # stats and a re-encode copy the source's analysis settings
            "indices:admin/refresh*",  # before counting what landed
            "indices:admin/flush*",  # stats: the size of its copies, flushed
            "indices:admin/forcemerge*",  # stats: ... and merged to one segment
            "indices:monitor/stats",  # the size of the index in the summary
            "indices:data/write/index",  # bulk items
            "indices:data/write/bulk*",
            "indices:data/read/search",  # count, search, scroll
            "indices:data/read/mget*",  # --resume and a Ray block run again read back what landed (mget[shard])
        ],
    },
    SEARCHER: {
        "cluster": ["cluster:monitor/main"],
        "index": [
            "indices:admin/get",
            "indices:admin/aliases/get",
            "indices:admin/mappings/get",
            "indices:data/read/search",
        ],
    },
}

# Elasticsearch: named privileges (roles.yml / the role API).
_ELASTICSEARCH: dict[str, dict[str, list[str]]] = {
    INDEXER: {
        "cluster": ["monitor"],  # the version (nodes info where GET / is not served), cluster health
        "index": [
            "create_index",  # each version is a new index
            "delete_index",  # --recreate drops an unfinished run's index, --delete-previous old versions
            "indices:admin/aliases*",  # move the alias (no named privilege short of `manage` grants it)
            "indices:admin/settings/update",  # refreshes off while loading, back on at the end
            "view_index_metadata",  # mapping (_meta), settings, aliases, versions
            "write",  # bulk
            "read",  # count, search, scroll; mget: --resume and a Ray block run again read back what landed
            "monitor",  # index size in the summary and in stats
            "maintenance",  # refresh before counting; stats force-merges its copies
        ],
    },
    SEARCHER: {
        "cluster": ["monitor"],
        "index": ["read", "view_index_metadata"],
    },
}


def privileges(engine: str, role: str) -> dict[str, list[str]]:
    """{"cluster": [...], "index": [...]} of one role on one engine (a copy: callers may drop entries)."""
    table = _OPENSEARCH if engine == "opensearch" else _ELASTICSEARCH
    return {kind: list(names) for kind, names in table[role].items()}


def alias_patterns(alias: str, role: str) -> list[str]:
    """The index patterns of one role for loads into, and searches of, `alias`: the alias and its versions (with
    their df tables and `stats` copies); the indexer also holds the lease of one load at a time in `ALIAS-lock`."""
    return [alias, f"{alias}-v*", *([f"{alias}-lock"] if role == INDEXER else [])]


def opensearch_role(privs: dict[str, list[str]], patterns: list[str]) -> dict[str, Any]:
    """The body of `PUT _plugins/_security/api/roles/NAME`."""
    return {
        "cluster_permissions": privs["cluster"],
        "index_permissions": [{"index_patterns": patterns, "allowed_actions": privs["index"]}],
    }


def elasticsearch_role(privs: dict[str, list[str]], patterns: list[str]) -> dict[str, Any]:
    """One role of roles.yml (also the body of `PUT _security/role/NAME` where native roles work)."""
    return {"cluster": privs["cluster"], "indices": [{"names": patterns, "privileges": privs["index"]}]}


def roles_yml(roles: dict[str, dict[str, list[str]]], patterns: list[str] | Mapping[str, list[str]]) -> str:
    """Elasticsearch's roles.yml for the given roles (strings quoted JSON-style, which YAML reads as they are), with
    the same `patterns` for every role or each role's own."""
    lines = []
    for name, privs in roles.items():
        names = patterns[name] if isinstance(patterns, Mapping) else patterns
        lines += [f"{name}:", f"  cluster: {json.dumps(privs['cluster'])}", "  indices:"]
        lines += [f"    - names: {json.dumps(names)}", f"      privileges: {json.dumps(privs['index'])}"]
    return "\n".join(lines) + "\n"
