"""The engines splade-os runs on, and which one a client talks to.

A client's engine follows from its type (opensearch-py's `OpenSearch` or the official `Elasticsearch` client);
the version is asked once per client and remembered. `ENGINES` names every engine `--engine` accepts.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from splade_os.engines.base import FAIL, OK, SKIP, WARN, Check, Engine, PruningConfig, status_of
from splade_os.engines.elasticsearch import ElasticsearchEngine, parse_version, server_version
from splade_os.engines.opensearch import OpenSearchEngine
from splade_os.errors import ConfigError

ENGINES = ("opensearch", "elasticsearch")

__all__ = [
    "ENGINES",
    "FAIL",
    "OK",
    "SKIP",
    "WARN",
    "Check",
    "ElasticsearchEngine",
    "Engine",
    "OpenSearchEngine",
    "PruningConfig",
    "async_engine_for",
    "engine_for",
    "is_elasticsearch",
    "make_engine",
    "parse_version",
    "remember",
    "remember_failure",
    "status_of",
]

_known: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()
_failed: weakref.WeakKeyDictionary[Any, BaseException] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def is_elasticsearch(client: Any) -> bool:
    """True for the official Elasticsearch clients (sync or async), whose module is `elasticsearch`."""
    return any(cls.__module__.split(".")[0] == "elasticsearch" for cls in type(client).__mro__)


def make_engine(name: str, version: tuple[int, ...]) -> Engine:
    if name == "opensearch":
        return OpenSearchEngine(version=version)
    if name == "elasticsearch":
        return ElasticsearchEngine(version=version)
    raise ConfigError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")


def remember(client: Any, engine: Engine) -> None:
    """Record the engine of a client whose version is already known (saves a request)."""
    with _lock:
        _known[client] = engine


def remember_failure(client: Any, err: BaseException) -> None:
    """Record that asking this new client for its engine just failed: the next `engine_for` raises it once, instead
    of sending the same doomed request again."""
    with _lock:
        _failed[client] = err


def engine_for(client: Any) -> Engine:
    """The engine behind a synchronous client, its version asked on first use."""
    with _lock:
        known, failed = _known.get(client), _failed.pop(client, None)
    if known is not None:
        return known
    if failed is not None:
        raise failed
    if is_elasticsearch(client):
        engine: Engine = ElasticsearchEngine(version=server_version(client))
    else:
        engine = OpenSearchEngine(version=parse_version(client.info()["version"]["number"]))
    remember(client, engine)
    return engine


async def async_engine_for(client: Any) -> Engine:
    """`engine_for` for the asyncio clients."""
    with _lock:
        known = _known.get(client)
    if known is not None:
        return known
    if is_elasticsearch(client):
        try:
            number = (await client.info())["version"]["number"]
        except Exception:  # the integ-test distribution answers 405 to GET /
            nodes = (await client.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version"))["nodes"]
            number = next(iter(nodes.values()))["version"]
        engine: Engine = ElasticsearchEngine(version=parse_version(number))
    else:
        engine = OpenSearchEngine(version=parse_version((await client.info())["version"]["number"]))
    remember(client, engine)
    return engine
