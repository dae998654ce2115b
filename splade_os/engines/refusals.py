"""A refused request (403) as one line: the action refused, the user (when the engine says it) and what to add.

OpenSearch's security plugin says `no permissions for [ACTION] and User [name=USER, ...]`; Elasticsearch says
`action [ACTION] is unauthorized for user [USER] ... this action is granted by the index privileges [a,b,all]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Requests on several indices that the OpenSearch security plugin checks as cluster permissions.
_OPENSEARCH_CLUSTER_LEVEL = (
    "indices:data/write/bulk",
    "indices:data/read/mget",
    "indices:data/read/msearch",
    "indices:data/read/scroll",
    "indices:data/read/scroll/clear",
)

_OS_ACTION = re.compile(r"no permissions for \[(.+?)\] and ")
_OS_USER = re.compile(r"User \[name=([^,\]]+)")
_ES_ACTION = re.compile(r"action \[(.+?)\] is unauthorized")
_ES_USER = re.compile(r"unauthorized for (?:API key id \[[^\]]*\] of )?user \[([^\]]+)\]")
_ES_INDICES = re.compile(r"on indices \[([^\]]+)\]")
_ES_GRANTED = re.compile(r"granted by the (cluster|index) privileges \[([^\]]+)\]")


@dataclass(frozen=True)
class Refusal:
    action: str
    user: str | None
    indices: str | None
    fix: str

    def line(self, where: str) -> str:
        who = f" for user {self.user}" if self.user else ""
        on = f" on {self.indices}" if self.indices else ""
        return f"{where} refused {self.action}{who}{on} (403): {self.fix}"


def refusal(reason: str) -> Refusal | None:
    """What a 403's reason says was refused and how to allow it; None when it names no action."""
    found = _ES_ACTION.search(reason)
    if found:
        action = found.group(1)
        user = _ES_USER.search(reason)
        indices = _ES_INDICES.search(reason)
        granted = _ES_GRANTED.search(reason)
        if granted:
            options = [p for p in granted.group(2).split(",") if p != "all"]
            fix = f"add the {granted.group(1)} privilege {options[0]} to one of its roles"
            if len(options) > 1:
                fix += f" (or one of {', '.join(options[1:])})"
        else:
            fix = f"give one of its roles a privilege that grants {action}"
        return Refusal(action, user.group(1) if user else None, indices.group(1) if indices else None, fix)
    found = _OS_ACTION.search(reason)
    if found:
        action = found.group(1)
        user = _OS_USER.search(reason)
        base = re.sub(r"\[.*\]$", "", action)
        cluster = base.startswith("cluster:") or (base == action and base in _OPENSEARCH_CLUSTER_LEVEL)
        kind = "cluster_permissions" if cluster else "index_permissions"
        # A shard-level action (`indices:admin/refresh[s]`) is allowed by its name with a wildcard.
        fix = f"add {base}{'*' if base != action else ''} to the {kind} of one of its roles"
        if kind == "index_permissions":
            fix += " for that index"
        return Refusal(action, user.group(1) if user else None, None, fix)
    return None


def http_status(err: BaseException) -> object:
    """The HTTP status of an error from either client (None when the request got no answer)."""
    meta = getattr(err, "meta", None)
    return getattr(meta, "status", None) if meta is not None else getattr(err, "status_code", None)


def is_refusal(err: BaseException) -> bool:
    """True for a 403 from either client."""
    return http_status(err) == 403


def is_missing_endpoint(err: BaseException) -> bool:
    """True when the node serves no such API (a plugin or feature that is not installed or not enabled), not for
    an API that answered with an error of its own (a bad request, a missing index, a failure inside the node)."""
    return http_status(err) in (400, 404) and "no handler found for uri" in str(err)


def refused_lookup(action: str, name: str, *, engine: str) -> str:
    """The line for a refused existence check (a HEAD request, whose 403 carries no reason)."""
    if engine == "elasticsearch":
        fix = "add the index privilege view_index_metadata to one of its roles"
    else:
        fix = f"add {action} to the index_permissions of one of its roles for that index"
    return f"the cluster refused {action} (is {name!r} an index or alias?) for this user (403): {fix}"


def refused_line(where: str, reason: str) -> str:
    """The one line for a 403 whatever its reason says."""
    found = refusal(reason)
    if found is not None:
        return found.line(where)
    return f"{where} denied the request (403): the user lacks a permission it needs ({reason})"
