"""Real nodes side by side, assembled from Maven Central: OpenSearch 3.6.0, Elasticsearch 9.2.0, a second
OpenSearch 2.19.6 and Elasticsearch 8.19.21 on ports 9201-9204, next to the default node on 9200, which these
tests leave alone. Each must answer with its own engine and version; the nodes these tests started are stopped.

The first run downloads about 400 MB and takes minutes; later runs start each node in 15-45 s (2 cores).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from splade_os.node.probe import node_version
from splade_os.node.run import NodeInfo, node_status, start_node, stop_node

NODES = [
    ("opensearch", "3.6.0", 9201),
    ("elasticsearch", "9.2.0", 9202),
    ("opensearch", "2.19.6", 9203),
    ("elasticsearch", "8.19.21", 9204),
]
OPENSEARCH_MODULES = {"mapper-extras", "analysis-common", "lang-painless"}
pytestmark = pytest.mark.nodes


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splade_os", "node", *args], capture_output=True, text=True, timeout=timeout
    )


def _default_pid() -> int | None:
    info = node_status(port=9200)
    return info.pid if info is not None else None


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[int, NodeInfo]]:
    """Start (or reuse) every node of NODES; stop, afterwards, those this fixture started."""
    default_pid = _default_pid()
    infos: dict[int, NodeInfo] = {}
    started: list[tuple[str, str, int]] = []
    try:
        for engine, version, port in NODES:
            began = time.monotonic()
            info = start_node(engine=engine, version=version, port=port, heap="512m", timeout=300)
            took = time.monotonic() - began
            print(f"{info.title} {info.version} on {port}: {'reused' if info.reused else 'started'} in {took:.1f}s")
            infos[port] = info
            if not info.reused:
                started.append((engine, version, port))
        yield infos
    finally:
        for engine, version, port in started:
            stop_node(engine=engine, version=version, port=port)
    assert _default_pid() == default_pid, "the default node on 9200 must be left as it was"


@pytest.mark.parametrize(("engine", "version", "port"), NODES)
def test_each_node_answers_with_its_engine_and_version(
    nodes: dict[int, NodeInfo], engine: str, version: str, port: int
) -> None:
    info = nodes[port]
    assert (info.engine, info.version, info.url) == (engine, version, f"http://127.0.0.1:{port}")
    assert node_version(info.url) == (engine, version)
    assert info.pid is not None and info.log_file.is_file()
    with urllib.request.urlopen(f"{info.url}/_cluster/health", timeout=30) as resp:
        assert json.loads(resp.read())["status"] in ("green", "yellow")
    if engine == "opensearch":
        assert OPENSEARCH_MODULES <= set(info.modules)
    else:
        assert "x-pack-core" in info.modules


@pytest.mark.parametrize(("engine", "version", "port"), NODES)
def test_cli_status_reports_each_node(nodes: dict[int, NodeInfo], engine: str, version: str, port: int) -> None:
    result = _cli("status", "--engine", engine, "--version", version, "--port", str(port), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert (status["engine"], status["version"], status["pid"]) == (engine, version, nodes[port].pid)
    assert status["java"], "a node splade-os started records the Java it runs on"


def test_elasticsearch_answers_405_on_get_root_with_its_product_header(nodes: dict[int, NodeInfo]) -> None:
    request = urllib.request.Request(nodes[9202].url + "/")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405
    assert err.value.headers["X-Elastic-Product"] == "Elasticsearch"


def test_cli_start_reuses_a_running_node_and_refuses_another_engine_on_its_port(nodes: dict[int, NodeInfo]) -> None:
    result = _cli("start", "--engine", "elasticsearch", "--port", "9202", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"Elasticsearch 9.2.0 running at http://127.0.0.1:9202 (pid {nodes[9202].pid}, reused)"
    )
    result = _cli("start", "--engine", "opensearch", "--version", "3.6.0", "--port", "9202", timeout=60)
    assert result.returncode == 1
    assert "Elasticsearch 9.2.0 already answers at http://127.0.0.1:9202; pick another --port" in result.stderr


def test_stopping_one_node_leaves_the_others_running(nodes: dict[int, NodeInfo]) -> None:
    result = _cli("stop", "--engine", "elasticsearch", "--version", "8.19.21", "--port", "9204", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Elasticsearch 8.19.21 on port 9204 stopped\n"
    assert node_version("http://127.0.0.1:9204") is None
    for port in (9204, 9304):  # both its HTTP and its transport port are free again
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert _cli("status", "--port", "9204").returncode == 1
    for port in (9201, 9202, 9203):
        assert node_version(f"http://127.0.0.1:{port}") is not None
