"""What answers on a node's port: the engine, version and modules, asked over HTTP(S) without a client library
(a node may not be ours, may be starting, or may not be a search node at all)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Any

from splade_os.node.distributions import ELASTICSEARCH, OPENSEARCH
from splade_os.node.security import Access, request


def _request(url: str, timeout: float, access: Access | None = None) -> tuple[int, Message, Any] | None:
    """(status, headers, parsed JSON or None) from `url`; None when nothing answers."""
    return request(url, timeout, access)


def get_json(url: str, timeout: float, access: Access | None = None) -> Any | None:
    """Parsed JSON from `url`; None when nothing answers. An HTTP error status still returns its body."""
    answer = _request(url, timeout, access)
    if answer is None:
        return None
    status, _headers, body = answer
    return body if body is not None else {"error": status}


@dataclass(frozen=True)
class Answer:
    """What answers at a URL: engine "" when it is no search node we know."""

    engine: str
    version: str
    modules: list[str]


def probe(url: str, access: Access | None = None) -> Answer | None:
    """Engine, version and modules of the node at `url`; None when nothing answers.

    Elasticsearch's integ-test node answers `GET /` with 405, but every response carries
    `X-Elastic-Product: Elasticsearch`; OpenSearch answers `GET /` with version.distribution "opensearch".
    """
    root = _request(f"{url}/", 5, access)
    if root is None:
        return None
    _status, headers, body = root
    version = ""
    if isinstance(body, dict) and isinstance(body.get("version"), dict):
        version = str(body["version"].get("number", ""))
    if (headers.get("X-Elastic-Product") or "").lower() == "elasticsearch":
        engine = ELASTICSEARCH.name
    elif isinstance(body, dict) and isinstance(body.get("version"), dict):
        engine = OPENSEARCH.name if body["version"].get("distribution") == "opensearch" else ""
    else:
        engine = ""
    if not engine:
        return Answer("", "", [])
    nodes = get_json(f"{url}/_nodes/_local/plugins", 10, access)
    modules: set[str] = set()
    if isinstance(nodes, dict):
        for node in (nodes.get("nodes") or {}).values():
            modules.update(m["name"] for m in node.get("modules", []))
            version = version or str(node.get("version", ""))
    return Answer(engine, version or "unknown", sorted(modules))


def node_version(url: str) -> tuple[str, str] | None:
    """("opensearch" | "elasticsearch", version) of the node at `url`, or None when no search node answers."""
    answer = probe(url.rstrip("/"))
    if answer is None or not answer.engine:
        return None
    return answer.engine, answer.version
