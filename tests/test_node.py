"""The local OpenSearch node: assembly, config rendering, caching, errors, and the running default node itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.cli.node import node as node_cli
from splade_os.errors import NodeError
from splade_os.node import distributions as node_dist
from splade_os.node import run as node_mod
from splade_os.node import spec as node_spec
from splade_os.node.distributions import DESCRIPTOR_KEYS, MODULES, Module, assemble_modules, descriptor
from splade_os.node.run import (
    OPENSEARCH,
    NodeSpec,
    ensure_distribution,
    node_status,
    render_config,
    render_jvm_options,
    stop_node,
)

VERSION = "2.19.6"


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def _module(name: str) -> Module:
    return next(m for m in MODULES if m.name == name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("name", "classname", "extended"),
    [
        ("mapper-extras", "org.opensearch.index.mapper.MapperExtrasPlugin", ""),
        ("analysis-common", "org.opensearch.analysis.common.CommonAnalysisPlugin", "lang-painless"),
        ("lang-painless", "org.opensearch.painless.PainlessPlugin", ""),
    ],
)
def test_descriptor_has_exactly_the_allowed_keys(name: str, classname: str, extended: str) -> None:
    props = _props(descriptor(_module(name), VERSION))
    assert tuple(props) == DESCRIPTOR_KEYS
    assert props["name"] == name
    assert props["classname"] == classname
    assert props["extended.plugins"] == extended
    assert props["version"] == props["opensearch.version"] == VERSION


def test_descriptor_uses_module_plugin_classes_on_3x() -> None:
    props = _props(descriptor(_module("mapper-extras"), "3.1.0"))
    assert props["classname"] == "org.opensearch.index.mapper.MapperExtrasModulePlugin"


def test_config_is_a_loopback_single_node_without_security_settings(tmp_path: Path) -> None:
    text = render_config(NodeSpec(OPENSEARCH, VERSION, 9333, tmp_path))
    settings = dict(line.split(": ", 1) for line in text.splitlines())
    assert settings["discovery.type"] == '"single-node"'
    assert settings["network.host"] == '"127.0.0.1"'
    assert settings["http.port"] == '"9333"'
    assert settings["transport.port"] == '"9433"'
    assert settings["cluster.routing.allocation.disk.threshold_enabled"] == '"false"'
    assert settings["path.data"] == f'"{tmp_path / "run-opensearch-2.19.6-9333" / "data"}"'
    assert not any(key.startswith("plugins.security") for key in settings)


def test_jvm_options_take_our_heap_and_absolute_paths(tmp_path: Path) -> None:
    template = (
        "-Xms1g\n-Xmx1g\n-XX:HeapDumpPath=data\n9-:-Xlog:gc*:file=logs/gc.log:utctime\n-XX:ErrorFile=logs/hs.log\n"
    )
    text = render_jvm_options(template, heap="512m", run=tmp_path / "run")
    lines = text.splitlines()
    assert lines.count("-Xms512m") == 1 and lines.count("-Xmx512m") == 1
    assert "-Xms1g" not in lines and "-Xmx1g" not in lines
    assert f"-XX:HeapDumpPath={tmp_path}/run/data" in lines
    assert f"9-:-Xlog:gc*:file={tmp_path}/run/logs/gc.log:utctime" in lines
    assert f"-XX:ErrorFile={tmp_path}/run/logs/hs.log" in lines


def test_bad_heap_is_refused_naming_the_step(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="heap size"):
        render_jvm_options("", heap="lots", run=tmp_path)


def test_modules_get_their_jars_and_never_one_that_lib_has(tmp_path: Path) -> None:
    dist, jars = tmp_path / "dist", tmp_path / "jars"
    (dist / "lib").mkdir(parents=True)
    jars.mkdir()
    (dist / "lib" / "opensearch-2.19.6.jar").touch()
    fetched = [
        "opensearch-2.19.6.jar",
        "lang-painless-2.19.6.jar",
        "opensearch-scripting-painless-spi-2.19.6.jar",
        "antlr4-runtime-4.13.1.jar",
        "asm-9.7.jar",
        "analysis-common-2.19.6.jar",
        "mapper-extras-client-2.19.6.jar",
    ]
    for name in fetched:
        (jars / name).touch()
    assemble_modules(dist, jars, VERSION)

    def listing(name: str) -> set[str]:
        return {p.name for p in (dist / "modules" / name).iterdir()}

    assert listing("mapper-extras") == {"mapper-extras-client-2.19.6.jar", "plugin-descriptor.properties"}
    assert listing("analysis-common") == {"analysis-common-2.19.6.jar", "plugin-descriptor.properties"}
    assert listing("lang-painless") == {
        "lang-painless-2.19.6.jar",
        "opensearch-scripting-painless-spi-2.19.6.jar",
        "antlr4-runtime-4.13.1.jar",
        "asm-9.7.jar",
        "plugin-descriptor.properties",
        "plugin-security.policy",
    }
    assert "createClassLoader" in (dist / "modules" / "lang-painless" / "plugin-security.policy").read_text()


def test_missing_module_jar_names_the_module(tmp_path: Path) -> None:
    (tmp_path / "dist" / "lib").mkdir(parents=True)
    (tmp_path / "jars").mkdir()
    with pytest.raises(NodeError, match="assembling module lang-painless"):
        assemble_modules(tmp_path / "dist", tmp_path / "jars", VERSION)


def test_pom_keeps_server_jars_out_of_lang_painless() -> None:
    text = node_dist.pom(VERSION)
    assert "<artifactId>mapper-extras-client</artifactId><version>2.19.6</version>" in text
    assert "<groupId>org.opensearch.distribution.integ-test-zip</groupId>" in text
    assert "<type>zip</type>" in text
    painless = text[text.index("<artifactId>lang-painless</artifactId>") :].split("</dependency>")[0]
    assert "<groupId>org.opensearch</groupId><artifactId>opensearch</artifactId>" in painless


def test_cached_distribution_skips_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = node_dist.dist_dir(tmp_path, VERSION)
    dist.mkdir(parents=True)
    (dist / node_dist.MARKER).write_text(node_dist._marker_text())

    def no_mvn(*args: object, **kwargs: object) -> None:
        raise AssertionError("mvn must not run when the distribution is cached")

    monkeypatch.setattr(node_dist, "fetch_artifacts", no_mvn)
    monkeypatch.setattr(subprocess, "run", no_mvn)
    assert ensure_distribution(VERSION, tmp_path) == dist


def test_stale_cache_marker_triggers_a_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = node_dist.dist_dir(tmp_path, VERSION)
    dist.mkdir(parents=True)
    (dist / node_dist.MARKER).write_text("some-older-module-list\n")

    def failing_fetch(version: str, staging: Path, *args: object, **kwargs: object) -> Path:
        raise NodeError("fetching (stub) failed")

    monkeypatch.setattr(node_dist, "fetch_artifacts", failing_fetch)
    with pytest.raises(NodeError, match="fetching"):
        ensure_distribution(VERSION, tmp_path)
    assert not list((tmp_path / "dist").glob(".staging-*")), "a failed fetch must not leave its staging folder"


def test_unknown_version_error_names_mvn_and_the_artifact(tmp_path: Path) -> None:
    # Calls the real mvn: Maven Central has no OpenSearch 2.0.99.
    with pytest.raises(NodeError) as info:
        ensure_distribution("2.0.99", tmp_path)
    message = str(info.value)
    assert message.startswith("fetching ")
    assert "with mvn failed" in message
    assert "org.opensearch.distribution.integ-test-zip:opensearch:2.0.99" in message


def test_malformed_version_is_refused_before_mvn(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="checking the OpenSearch version"):
        ensure_distribution("latest</version>", tmp_path)


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLADE_OS_NODE_HOME", str(tmp_path / "h"))
    assert node_mod.default_home() == tmp_path / "h"
    monkeypatch.delenv("SPLADE_OS_NODE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert node_mod.default_home() == tmp_path / "cache" / "splade-os" / "opensearch"


def test_unusable_home_raises_node_error_naming_the_step(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(NodeError, match="preparing the node home"):
        node_mod.start_node(home=blocker / "home", port=_free_port())


def test_status_is_none_when_nothing_answers(tmp_path: Path) -> None:
    assert node_status(home=tmp_path, port=_free_port()) is None


def test_stop_without_a_node_removes_a_stale_pid_file(tmp_path: Path) -> None:
    pidfile = node_spec.run_dir(tmp_path) / node_spec.PIDFILE
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text("999999999\n")  # no such process
    assert stop_node(home=tmp_path) is False
    assert not pidfile.exists()


def test_cli_status_exits_1_when_nothing_answers(tmp_path: Path) -> None:
    port = _free_port()
    result = CliRunner().invoke(node_cli, ["status", "--home", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 1
    assert f"no OpenSearch node answers at http://127.0.0.1:{port}" in result.output


def test_cli_stop_json_says_whether_a_node_stopped(tmp_path: Path) -> None:
    port = _free_port()
    result = CliRunner().invoke(node_cli, ["stop", "--home", str(tmp_path), "--port", str(port), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "engine": "opensearch",
        "version": OPENSEARCH.default_version,
        "port": port,
        "home": str(tmp_path),
        "stopped": False,
    }


def test_cli_maps_node_errors_to_a_clean_message(tmp_path: Path) -> None:
    args = ["start", "--home", str(tmp_path), "--port", str(_free_port()), "--version", "x"]
    result = CliRunner().invoke(node_cli, args)
    assert result.exit_code == 1
    assert "Error: checking the OpenSearch version failed" in result.output
    assert "Traceback" not in result.output


@pytest.mark.engine
def test_running_node_is_2_19_with_mapper_extras(engine_client: object) -> None:
    # engine_client (conftest) waits for the node, and fails in CI / skips elsewhere when there is none.
    info = node_status()
    assert info is not None, "no OpenSearch node answers at http://127.0.0.1:9200: run `splade-os node start`"
    assert info.version.startswith("2.19.")
    assert {"mapper-extras", "analysis-common", "lang-painless"} <= set(info.modules)


def stand_in(main_class: str) -> subprocess.Popen[bytes]:
    """A sleeping process whose command line names a node's main class, as the real server's does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", main_class])
    deadline = time.monotonic() + 20
    while main_class.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # until it has exec'd
        assert time.monotonic() < deadline, "the stand-in process did not start"
        time.sleep(0.02)
    return proc


def test_read_pid_takes_a_home_for_its_default_node(tmp_path: Path) -> None:
    pidfile = node_spec.run_dir(tmp_path) / node_spec.PIDFILE
    pidfile.parent.mkdir(parents=True)
    proc = stand_in(OPENSEARCH.main_class)
    try:
        pidfile.write_text(f"{proc.pid}\n")
        assert node_mod.read_pid(tmp_path) == proc.pid
        assert node_mod.read_pid(node_mod.resolve(home=tmp_path)) == proc.pid
        assert node_mod.read_pid(node_mod.resolve(port=9201, home=tmp_path)) is None
    finally:
        proc.kill()
        proc.wait()
    assert node_mod.read_pid(tmp_path) is None
