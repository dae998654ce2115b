"""Bad input and misuse: each gives exit code 1 and one line that says what is wrong, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from opensearchpy import OpenSearch
from secured_proxy import SecuredProxy, make_certs, running_proxy

from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.engines import Engine

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")


@pytest.fixture(scope="module")
def node_url(engine_client: OpenSearch) -> str:
    return ConnectionSettings.from_env().urls[0]


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on: what a stopped node looks like."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(node_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredProxy]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with running_proxy(node_url, certs, user="admin", password="right-password") as running:
        yield running


@pytest.fixture
def plain_index(engine_client: OpenSearch, index_name: str) -> str:
    """An index whose mapping has no rank_features field, as a BM25-only index made elsewhere would."""
    engine_client.indices.create(index=index_name, body={"mappings": {"properties": {"text": {"type": "text"}}}})
    engine_client.index(index=index_name, id="1", body={"text": "plain text"}, refresh=True)
    return index_name


def _run(args: list[str]) -> Result:
    env = {var: None for var in ("OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD", "SPLADE_OS_CONFIG")}
    return CliRunner().invoke(main, args, env=env)


def _one_line_error(result: Result, expected: str) -> None:
    assert not (result.exception and not isinstance(result.exception, SystemExit)), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert expected in lines[0], lines[0]


def test_wrong_url(node_url: str) -> None:
    _one_line_error(_run(["alias", "x", "--url", "localhost:9200"]), "must start with http:// or https://")
    _one_line_error(
        _run(["stats", "x", "--url", "http://no-such-host.invalid:9200", "--connection-retries", "0"]),
        "cannot reach the cluster at http://no-such-host.invalid:9200",
    )
    _one_line_error(
        _run(["alias", "x", "--url", node_url.replace("http://", "https://")]), "does not speak TLS: use an http://"
    )


def test_stopped_node(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    for args in (
        ["search", "q", "--index", "x", "--model", MODEL],
        ["stats", "x"],
        ["alias", "x"],
        ["reindex", "x", "--from-index", "--model", MODEL],
    ):
        _one_line_error(_run([*args, "--url", url]), f"cannot reach the cluster at {url} (Connection refused)")


def test_stopped_node_from_a_real_process(closed_port: int) -> None:
    # Through a real process: what reaches the terminal, the client's own log lines included, is one line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "splade_os", "stats", "x", "--url", f"http://127.0.0.1:{closed_port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Connection refused" in done.stderr, done.stderr


def test_wrong_password(proxy: SecuredProxy) -> None:
    tls = ["--url", proxy.url, "--ca-certs", str(proxy.certs.ca), "--user", "admin", "--password", "wrong-password"]
    for args in (["alias", "x"], ["stats", "x"], ["search", "q", "--index", "x", "--model", MODEL]):
        _one_line_error(_run([*args, *tls]), "refused the credentials (401)")


def test_missing_index(node_url: str) -> None:
    name = "no-such-index-for-misuse"
    url = ["--url", node_url]
    _one_line_error(_run(["stats", name, *url]), f"no index or alias {name!r}")
    _one_line_error(_run(["search", "q", "--index", name, "--model", MODEL, *url]), f"index {name!r} does not exist")
    _one_line_error(_run(["reindex", name, "--from-index", "--model", MODEL, *url]), "nothing to re-encode")
    result = _run(["doctor", "--index", name, *url])
    assert result.exit_code == 1 and f"FAIL  index             no index or alias {name!r}" in result.output


def test_mapping_without_rank_features(plain_index: str, node_url: str, engine: Engine) -> None:
    url = ["--url", node_url]
    missing = f"index {plain_index!r} has no {engine.vector_type} field 'splade'"
    _one_line_error(_run(["stats", plain_index, *url]), missing)
    result = _run(["doctor", "--index", plain_index, *url])
    assert result.exit_code == 1
    expected = f"index {plain_index!r} has no {engine.vector_type} field 'splade' (it does not map it)"
    assert f"FAIL  mapping           {expected}" in result.output


def test_search_refuses_a_mapping_without_rank_features(plain_index: str, node_url: str, engine: Engine) -> None:
    args = ["search", "q", "--index", plain_index, "--model", MODEL, "--url", node_url]
    _one_line_error(_run(args), f"no {engine.vector_type} field")


def test_index_refuses_a_mapping_without_rank_features(
    plain_index: str, node_url: str, tmp_path: Path, engine: Engine
) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "2", "text": "more text"}\n')
    args = [
        "index",
        str(corpus),
        "--index",
        plain_index,
        "--model",
        MODEL,
        "--url",
        node_url,
        "--dead-letter",
        str(tmp_path / "dl"),
        "--checkpoint",
        str(tmp_path / "cp"),
    ]
    _one_line_error(_run(args), f"no {engine.vector_type} field")


def test_model_folder_that_is_not_an_export(node_url: str, tmp_path: Path) -> None:
    expected = f"{tmp_path} has no manifest.json nor model.onnx: it is not a folder written by `splade-os export`"
    for args in (["search", "q", "--index", "x"], ["reindex", "x", "--from-index"], ["encode", "-"], ["stats", "x"]):
        _one_line_error(
            _run([*args, "--model", str(tmp_path), *(["--url", node_url] if args[0] != "encode" else [])]), expected
        )
