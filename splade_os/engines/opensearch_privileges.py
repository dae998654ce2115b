"""Which actions the current OpenSearch user may not run on an index, found by harmless probes.

The security plugin has no "would this be allowed" API a plain user may call, and only admins may read role
definitions. It checks permissions before it looks at a request, though, so each probe is a request that is
refused (403, naming the action) without the permission, and otherwise fails or does nothing. Doctor runs against
live indices, so no probe may change one: refresh, flush, force-merge, create and delete name a version that does
not exist (an invalid setting keeps the create from creating it), and the conditional write goes through the alias
with `require_alias`, so an index deleted mid-check is never created again by it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from splade_os.engines.refusals import is_missing_endpoint, is_refusal, refusal

PROBE_ID = "__splade_os_privilege_probe__"
Probe = Callable[[Any, str, str], Any]


def _missing(alias: str) -> str:
    """A version name of `alias` that no index has: matched by the same index patterns as the real versions."""
    return f"{alias}-v0-{PROBE_ID}"


def _bulk(client: Any, alias: str, concrete: str) -> None:
    # A conditional write to a missing document: a version conflict when allowed, nothing written. Only a write
    # that reaches a shard is checked for its permission, and a bulk write to a missing index creates it; through
    # the alias with `require_alias` it reaches the alias's index, or fails (404) once the alias is gone. A name
    # that is an index, not an alias, cannot be written to without that risk: its write permission goes unprobed.
    if alias == concrete:
        return
    header = {"index": {"_index": alias, "_id": PROBE_ID, "if_seq_no": 1, "if_primary_term": 1, "require_alias": True}}
    response = client.bulk(body=[header, {}])  # no field: no mapping update either
    item = response["items"][0]["index"]
    if item.get("status") == 403:
        raise _Refused(str(item.get("error", {}).get("reason", "")))


def _scroll(client: Any, alias: str, concrete: str) -> None:
    page = client.search(index=alias, scroll="10s", body={"size": 1, "query": {"match_all": {}}})
    scroll_id = page["_scroll_id"]
    try:
        client.scroll(body={"scroll_id": scroll_id, "scroll": "10s"})
    except Exception:
        with contextlib.suppress(Exception):  # the scroll's own refusal is the one to report
            client.clear_scroll(body={"scroll_id": [scroll_id]})
        raise
    client.clear_scroll(body={"scroll_id": [scroll_id]})


def _aliases(client: Any, alias: str, concrete: str) -> None:
    actions = [{"remove": {"index": concrete, "alias": f"{alias}-{PROBE_ID}"}}]  # missing: 404 when allowed
    client.indices.update_aliases(body={"actions": actions})


_READ: dict[str, Probe] = {
    "GET /": lambda c, a, i: c.info(),
    "index exists": lambda c, a, i: c.indices.exists(index=a),
    "alias lookup": lambda c, a, i: c.indices.get_alias(name=a),
    "mapping": lambda c, a, i: c.indices.get_mapping(index=a),
    "search": lambda c, a, i: c.search(index=a, body={"size": 0}),
}
_WRITE: dict[str, Probe] = {
    "versions": lambda c, a, i: c.indices.get(index=f"{a}-v*", allow_no_indices=True, ignore_unavailable=True),
    "settings": lambda c, a, i: c.indices.get_settings(index=i),
    "stats": lambda c, a, i: c.indices.stats(index=i, metric="store"),
    # On the live index a refresh would show searchers documents a running load has not finished: 404 when allowed.
    "refresh": lambda c, a, i: c.indices.refresh(index=_missing(a)),
    "flush": lambda c, a, i: c.indices.flush(index=_missing(a)),  # 404 when allowed
    "force-merge": lambda c, a, i: c.indices.forcemerge(index=_missing(a)),  # 404 when allowed
    # Zero shards is refused after the permission check: 400 when allowed, nothing created.
    "create": lambda c, a, i: c.indices.create(index=_missing(a), body={"settings": {"number_of_shards": 0}}),
    "delete": lambda c, a, i: c.indices.delete(index=_missing(a)),  # 404 when allowed
    "alias update": _aliases,
    # An invalid value: 400 when allowed, nothing changed.
    "settings update": lambda c, a, i: c.indices.put_settings(index=i, body={"index": {"refresh_interval": "x"}}),
    "bulk": _bulk,
    "scroll": _scroll,
}


class _Refused(Exception):
    """A bulk item refused inside an accepted request."""


def _refused_action(client: Any, probe: Probe, alias: str, concrete: str) -> str | None:
    try:
        probe(client, alias, concrete)
    except _Refused as err:
        return _action(str(err))
    except Exception as err:  # anything but a 403 means the permission check passed
        if is_refusal(err):
            return _action(str(err))
    return None


def _action(reason: str) -> str:
    found = refusal(reason)
    return found.action if found else reason[:120]


def security_enabled(client: Any) -> bool:
    try:
        client.transport.perform_request("GET", "/_plugins/_security/authinfo")
    except Exception as err:
        if is_missing_endpoint(err):  # no plugin; a 403 still means the plugin answered
            return False
        if is_refusal(err):
            return True
        raise  # a plugin not initialised (503), a node failing: doctor says the check could not run
    return True


def missing_actions(client: Any, alias: str, concrete: str) -> dict[str, list[str]]:
    """{"search": [...], "index": [...]}: the refused actions, each once, for searching and for indexing."""
    search = [a for p in _READ.values() if (a := _refused_action(client, p, alias, concrete))]
    index = list(search)
    index += [a for p in _WRITE.values() if (a := _refused_action(client, p, alias, concrete))]
    return {"index": list(dict.fromkeys(index)), "search": list(dict.fromkeys(search))}
