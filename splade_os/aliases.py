"""Versioned physical indices (`NAME-v1`, `NAME-v2`, ...) behind one alias `NAME` that readers query.

A re-index builds the next version while readers keep the current one, then moves the alias in one atomic
`_aliases` request, so a reader never sees a half-built index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from splade_os.engines import engine_for
from splade_os.engines.refusals import is_refusal, refused_lookup
from splade_os.errors import ConfigError, EngineError


@dataclass(frozen=True)
class AliasSwap:
    """What a swap did: the alias, the index it now points at, and the indices it left."""

    alias: str
    index: str
    previous: tuple[str, ...]
    deleted: tuple[str, ...] = ()


def version_name(alias: str, version: int) -> str:
    return f"{alias}-v{version}"


def df_index_name(concrete: str) -> str:
    """The side index holding the document frequencies of one concrete index (`docs-v1-df`): named after the
    version, so that the roles' `docs-v*` pattern covers it and it goes when the version goes."""
    return f"{concrete}-df"


def delete_versions(client: Any, names: Iterable[str]) -> None:
    """Delete versions of an alias, each with its side indices (the df table)."""
    names = list(names)
    if names:
        client.indices.delete(index=",".join([*names, *map(df_index_name, names)]), ignore_unavailable=True)


def resolve(client: Any, name: str) -> list[str]:
    """The physical indices behind alias `name`; [name] when it is a concrete index; [] when neither exists."""
    action = "indices:admin/aliases/get"
    try:
        if client.indices.exists_alias(name=name):
            return sorted(client.indices.get_alias(name=name))
        action = "indices:admin/get"
        return [name] if client.indices.exists(index=name) else []
    except Exception as err:
        if is_refusal(err):  # a HEAD request's 403 has no body to name the action: we know which it was
            raise EngineError(refused_lookup(action, name, engine=engine_for(client).name)) from None
        raise EngineError(f"cannot look up index or alias {name!r}: {err}") from None


def is_alias(client: Any, name: str) -> bool:
    return bool(client.indices.exists_alias(name=name))


def versions(client: Any, alias: str) -> list[str]:
    """Existing `alias-v<n>` indices, oldest first."""
    pattern = re.compile(re.escape(alias) + r"-v(\d+)$")
    names = client.indices.get(index=f"{alias}-v*", allow_no_indices=True, ignore_unavailable=True)
    found = [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
    return [n for _, n in sorted(found)]


def next_version(client: Any, alias: str) -> str:
    existing = versions(client, alias)
    last = int(existing[-1].rsplit("-v", 1)[1]) if existing else 0
    return version_name(alias, last + 1)


def swap(client: Any, alias: str, index: str, *, delete_previous: bool = False) -> AliasSwap:
    """Point `alias` at `index` alone, atomically. A concrete index named like the alias is replaced by it."""
    if alias == index:
        raise ConfigError(f"an alias cannot point at an index of the same name ({alias!r})")
    if not client.indices.exists(index=index) or is_alias(client, index):
        raise ConfigError(f"cannot point alias {alias!r} at {index!r}: no index of that name exists")
    current = resolve(client, alias)
    concrete = bool(current) and not is_alias(client, alias)
    actions: list[dict[str, dict[str, str]]] = []
    if concrete:
        # An index holds the name the alias needs: removing it in the same request keeps the switch atomic.
        actions.append({"remove_index": {"index": alias}})
    else:
        actions += [{"remove": {"index": old, "alias": alias}} for old in current if old != index]
    actions.append({"add": {"index": index, "alias": alias}})
    try:
        client.indices.update_aliases(body={"actions": actions})
    except Exception as err:
        if is_refusal(err):
            raise  # the CLI names the permission to add
        raise EngineError(f"cannot point alias {alias!r} at {index!r}: {err}") from None
    previous = tuple(old for old in current if old != index)
    deleted: tuple[str, ...] = (alias,) if concrete else ()
    if delete_previous and not concrete:
        delete_versions(client, previous)
        deleted = previous
    return AliasSwap(alias=alias, index=index, previous=previous, deleted=deleted)
