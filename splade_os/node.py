"""A real single-node OpenSearch on 127.0.0.1, assembled from Maven Central without Docker.

The `integ-test-zip` distribution holds the server (lib/, bin/, config/) but only the transport-netty4
module. We add the modules splade-os needs: `mapper-extras` (rank_features, rank_feature query),
`analysis-common` (standard analyzers such as `english`) and `lang-painless`, which analysis-common extends.
Everything is fetched with `mvn` once and cached under the node home; later starts reuse it.

Layout of the node home (default: `$XDG_CACHE_HOME/splade-os/opensearch`):
    dist/opensearch-<version>/   assembled distribution, read-only for the node
    run/                         owned by the node user: config/, data/, logs/, tmp/, opensearch.pid
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade_os.errors import NodeError

DEFAULT_VERSION = "2.19.6"
HOST = "127.0.0.1"
CLUSTER_NAME = "splade-os"
NODE_USER = "splade-os"
"""OpenSearch refuses to run as root, so root starts the node as this system user."""

MARKER = ".splade-os-assembled"
PIDFILE = "opensearch.pid"
_PLUGIN_GROUP = "org.opensearch.plugin"
_ZIP_GROUP = "org.opensearch.distribution.integ-test-zip"

_PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";
  // needed to find the classloader to load allowlisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


@dataclass(frozen=True)
class Module:
    """One module to add to `modules/<name>/`; `artifact` is its artifactId under org.opensearch.plugin."""

    name: str
    artifact: str
    classname: str
    description: str
    extended: str = ""
    policy: str = ""


MODULES: tuple[Module, ...] = (
    Module(
        "lang-painless",
        "lang-painless",
        "org.opensearch.painless.PainlessPlugin",
        "An easy, safe and fast scripting language for OpenSearch",
        policy=_PAINLESS_POLICY,
    ),
    Module(
        "analysis-common",
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        'Adds "built in" analyzers to OpenSearch.',
        extended="lang-painless",
    ),
    Module(
        "mapper-extras",
        "mapper-extras-client",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "Adds advanced field mappers",
    ),
)
"""lang-painless comes first: it takes every fetched jar that no other module claims (its dependencies)."""

DESCRIPTOR_KEYS = (
    "name",
    "description",
    "version",
    "opensearch.version",
    "java.version",
    "classname",
    "extended.plugins",
)


@dataclass(frozen=True)
class NodeInfo:
    """A node answering on `url`; `reused` is True when it was already running before the call."""

    url: str
    version: str
    modules: list[str]
    pid: int | None
    home: Path
    log_file: Path
    reused: bool


# ---------------------------------------------------------------------------------------------- paths


def default_home() -> Path:
    """SPLADE_OS_NODE_HOME, else the user cache; root defaults to /var/cache, which the node user can reach."""
    env = os.environ.get("SPLADE_OS_NODE_HOME")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser().absolute() / "splade-os" / "opensearch"
    if os.geteuid() == 0:
        # /root is mode 700: an unprivileged node user could not read a distribution under ~/.cache.
        return Path("/var/cache/splade-os/opensearch")
    return Path.home() / ".cache" / "splade-os" / "opensearch"


def _home(home: Path | None) -> Path:
    return Path(home).expanduser().absolute() if home is not None else default_home()


def dist_dir(home: Path, version: str) -> Path:
    return home / "dist" / f"opensearch-{version}"


def run_dir(home: Path) -> Path:
    return home / "run"


def log_file(home: Path) -> Path:
    return run_dir(home) / "logs" / f"{CLUSTER_NAME}.log"


def _startup_out(home: Path) -> Path:
    return run_dir(home) / "logs" / "startup.out"


# ------------------------------------------------------------------------------------------- rendering


def descriptor(module: Module, version: str, *, java_version: str = "11") -> str:
    """plugin-descriptor.properties; OpenSearch refuses unknown keys, so only DESCRIPTOR_KEYS appear."""
    values = {
        "name": module.name,
        "description": module.description,
        "version": version,
        "opensearch.version": version,
        "java.version": java_version,
        "classname": classname(module, version),
        "extended.plugins": module.extended,
    }
    return "".join(f"{key}={values[key]}\n" for key in DESCRIPTOR_KEYS)


def classname(module: Module, version: str) -> str:
    # OpenSearch 3.x renamed the module entry points to *ModulePlugin.
    if int(version.split(".")[0]) >= 3 and module.classname.endswith("Plugin"):
        return module.classname[: -len("Plugin")] + "ModulePlugin"
    return module.classname


def render_config(home: Path, port: int) -> str:
    """opensearch.yml: one loopback node, no disk watermarks (a full-ish disk must not block tests)."""
    run = run_dir(home)
    settings = {
        "cluster.name": CLUSTER_NAME,
        "node.name": f"{CLUSTER_NAME}-node",
        "discovery.type": "single-node",
        "network.host": HOST,
        "http.port": str(port),
        "path.data": str(run / "data"),
        "path.logs": str(run / "logs"),
        "action.auto_create_index": "true",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


_HEAP = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def render_jvm_options(template: str, *, heap: str, home: Path) -> str:
    """The distribution's jvm.options with our heap and with its cwd-relative paths made absolute."""
    if not _HEAP.match(heap):
        raise NodeError(f"checking the heap size failed: {heap!r} is not like 512m or 1g")
    run = run_dir(home)
    lines = []
    for line in template.splitlines():
        if re.match(r"^-Xm[sx]", line):
            continue  # replaced by our heap below
        line = line.replace("file=logs/", f"file={run / 'logs'}/").replace("=logs/", f"={run / 'logs'}/")
        line = line.replace("HeapDumpPath=data", f"HeapDumpPath={run / 'data'}")
        lines.append(line)
    return "\n".join([f"-Xms{heap}", f"-Xmx{heap}", *lines]) + "\n"


def pom(version: str) -> str:
    """A throwaway pom whose dependencies are exactly the files to fetch.

    lang-painless keeps its own dependencies (painless-spi, antlr4, asm) but not the server jar and its
    libraries, which lib/ already has (a jar in both places stops the node with "jar hell").
    """
    deps = [_dependency(_ZIP_GROUP, "opensearch", version, kind="zip", exclude="*:*")]
    for module in MODULES:
        exclude = "org.opensearch:opensearch" if module.name == "lang-painless" else "*:*"
        deps.append(_dependency(_PLUGIN_GROUP, module.artifact, version, exclude=exclude))
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>splade-os</groupId><artifactId>opensearch-node</artifactId><version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{''.join(deps)}  </dependencies>\n"
        "</project>\n"
    )


def _dependency(group: str, artifact: str, version: str, *, kind: str = "jar", exclude: str) -> str:
    ex_group, ex_artifact = exclude.split(":")
    return (
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version><type>{kind}</type>\n"
        f"      <exclusions><exclusion><groupId>{ex_group}</groupId><artifactId>{ex_artifact}</artifactId>"
        "</exclusion></exclusions></dependency>\n"
    )


def coordinates(version: str) -> list[str]:
    """What `pom` fetches, for error messages."""
    return [f"{_ZIP_GROUP}:opensearch:{version}:zip"] + [f"{_PLUGIN_GROUP}:{m.artifact}:{version}" for m in MODULES]


# ------------------------------------------------------------------------------------------- assembly


def ensure_distribution(version: str, home: Path) -> Path:
    """The assembled distribution for `version`, built with mvn only when the cache lacks it."""
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.-]*", version):
        raise NodeError(f"checking the OpenSearch version failed: {version!r} is not like {DEFAULT_VERSION}")
    target = dist_dir(home, version)
    if _assembled(target):
        return target
    staging = home / "dist" / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        jars = fetch_artifacts(version, staging)
        dist = _unpack(jars / f"opensearch-{version}.zip", staging)
        assemble_modules(dist, jars, version)
        (dist / MARKER).write_text(_marker_text())
        _make_world_readable(dist)
        if not _assembled(target):  # another start may have finished first
            shutil.rmtree(target, ignore_errors=True)
            dist.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _marker_text() -> str:
    # A change in the module list invalidates older caches.
    return "\n".join(m.name for m in MODULES) + "\n"


def _assembled(dist: Path) -> bool:
    marker = dist / MARKER
    return marker.is_file() and marker.read_text() == _marker_text()


def fetch_artifacts(version: str, staging: Path) -> Path:
    """Download the zip and module jars into staging/jars with one mvn run; returns that folder."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError("fetching OpenSearch artifacts failed: `mvn` is not on PATH (install Maven)")
    (staging / "pom.xml").write_text(pom(version))
    jars = staging / "jars"
    cmd = [mvn, "-B", "-q", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={jars}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_java_env(), stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise NodeError(
            f"fetching {', '.join(coordinates(version))} with mvn failed: " + _mvn_error(proc.stdout + proc.stderr)
        )
    return jars


def _unpack(archive: Path, staging: Path) -> Path:
    """Unzip keeping the unix modes (zipfile drops them, and bin/* must stay executable)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                path = Path(zf.extract(info, staging))
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    path.chmod(mode)
    except (OSError, zipfile.BadZipFile) as err:
        raise NodeError(f"unpacking {archive} failed: {err}") from err
    tops = [p for p in staging.iterdir() if p.is_dir() and p.name.startswith("opensearch-")]
    if len(tops) != 1 or not (tops[0] / "bin" / "opensearch").is_file():
        raise NodeError(f"unpacking {archive} failed: no opensearch-*/bin/opensearch inside")
    for script in (tops[0] / "bin").iterdir():
        script.chmod(script.stat().st_mode | 0o755)
    return tops[0]


def assemble_modules(dist: Path, jars: Path, version: str) -> None:
    """Sort fetched jars into modules/<name>/, skipping any jar lib/ already has, and write descriptors."""
    in_lib = {p.name for p in (dist / "lib").glob("*.jar")}
    available = sorted(p for p in jars.glob("*.jar") if p.name not in in_lib)
    claimed = {p for m in MODULES for p in available if p.name.startswith(f"{m.artifact}-{version}")}
    for module in MODULES:
        folder = dist / "modules" / module.name
        folder.mkdir(parents=True, exist_ok=True)
        own = [p for p in available if p.name.startswith(f"{module.artifact}-{version}")]
        if not own:
            raise NodeError(f"assembling module {module.name} failed: no {module.artifact} jar was fetched")
        if module.name == "lang-painless":
            own += [p for p in available if p not in claimed]
        for jar in own:
            shutil.copy2(jar, folder / jar.name)
        (folder / "plugin-descriptor.properties").write_text(descriptor(module, version))
        if module.policy:
            (folder / "plugin-security.policy").write_text(module.policy)


def _make_world_readable(root: Path) -> None:
    # The node runs as another user: it must read every file and enter every folder.
    for path in [root, *root.rglob("*")]:
        extra = 0o555 if path.is_dir() or os.access(path, os.X_OK) else 0o444
        path.chmod(path.stat().st_mode | extra)


# ------------------------------------------------------------------------------------------ processes


def _java_env() -> dict[str, str]:
    """The environment with JAVA_HOME set: the integ-test zip bundles no JDK."""
    env = dict(os.environ)
    if env.get("OPENSEARCH_JAVA_HOME") or env.get("JAVA_HOME"):
        return env
    java = shutil.which("java")
    if java is None:
        raise NodeError("finding Java failed: no `java` on PATH and JAVA_HOME is not set")
    env["JAVA_HOME"] = str(Path(java).resolve().parent.parent)
    return env


def _as_root() -> bool:
    return os.geteuid() == 0


def ensure_node_user() -> pwd.struct_passwd:
    """The unprivileged system user that runs the node, created on first use."""
    try:
        return pwd.getpwnam(NODE_USER)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
           "--shell", "/usr/sbin/nologin", NODE_USER]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise NodeError(f"creating the system user {NODE_USER} failed: {_tail(proc.stderr, 5)}")
    return pwd.getpwnam(NODE_USER)


def _prepare_run_dir(home: Path, dist: Path, port: int, heap: str) -> None:
    """Write config/ and create data/, logs/, tmp/, all owned by whoever runs the node."""
    run = run_dir(home)
    config = run / "config"
    for sub in ("config", "data", "logs", "tmp"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    template = (dist / "config" / "jvm.options").read_text()
    (config / "jvm.options").write_text(render_jvm_options(template, heap=heap, home=home))
    (config / "opensearch.yml").write_text(render_config(home, port))
    shutil.copy2(dist / "config" / "log4j2.properties", config / "log4j2.properties")
    (config / "jvm.options.d").mkdir(exist_ok=True)
    if _as_root():
        user = ensure_node_user()
        for path in [run, *run.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        _check_reachable(dist / "bin" / "opensearch")


def _check_reachable(script: Path) -> None:
    """Fail early, with a fix, when the node user cannot reach the distribution (e.g. under /root)."""
    proc = subprocess.run(["runuser", "-u", NODE_USER, "--", "test", "-x", str(script)])
    if proc.returncode != 0:
        raise NodeError(
            f"checking that user {NODE_USER} can run {script} failed: a parent folder is closed to it; "
            "set SPLADE_OS_NODE_HOME to a folder it can reach, such as /var/cache/splade-os/opensearch"
        )


def _launch(home: Path, dist: Path) -> None:
    """Run bin/opensearch -d, which returns once the JVM is forked; its output goes to startup.out."""
    run = run_dir(home)
    cmd = [str(dist / "bin" / "opensearch"), "-d", "-p", str(run / PIDFILE)]
    if _as_root():
        cmd = ["runuser", "-u", NODE_USER, "--", *cmd]
    env = _java_env()
    env.pop("OPENSEARCH_JAVA_OPTS", None)  # the heap lives in our jvm.options
    env.update(OPENSEARCH_PATH_CONF=str(run / "config"), OPENSEARCH_TMPDIR=str(run / "tmp"), HOME=str(run))
    out_path = _startup_out(home)
    with out_path.open("wb") as out:
        # A new session keeps the daemon alive when the caller's terminal or process group goes away.
        proc = subprocess.Popen(cmd, cwd=run, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired as err:
            proc.kill()
            raise NodeError(f"launching {dist}/bin/opensearch timed out; log: {log_file(home)}") from err
    if code != 0:
        raise NodeError(
            f"launching OpenSearch failed (exit {code}): {_tail(_read(out_path), 15)}; log: {log_file(home)}"
        )


def read_pid(home: Path) -> int | None:
    """The pid in the pid file when that process is still an OpenSearch node, else None."""
    try:
        pid = int((run_dir(home) / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_opensearch(pid) else None


def _is_opensearch(pid: int) -> bool:
    # Checking the command line guards against a recycled pid after a crash.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return _alive(pid)
    return b"org.opensearch.bootstrap.OpenSearch" in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------- HTTP


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send loopback via a proxy


def _get(url: str, timeout: float) -> Any | None:
    """Parsed JSON from `url`; None when nothing answers. An HTTP error status still returns its body."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            return json.loads(err.read())
        except ValueError:
            return {"error": err.code}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _wait_yellow(home: Path, port: int, timeout: float) -> None:
    """Poll cluster health until yellow, failing fast if the node process dies."""
    start = time.monotonic()
    deadline = start + timeout
    seen_pid = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NodeError(
                f"waiting for yellow health at {_url(port)} timed out after {timeout:.0f}s; log: {log_file(home)}"
            )
        wait_s = max(1, min(int(left), 10))
        health = _get(f"{_url(port)}/_cluster/health?wait_for_status=yellow&timeout={wait_s}s", wait_s + 5)
        if isinstance(health, dict) and health.get("status") in ("yellow", "green"):
            return
        pid = read_pid(home)
        seen_pid = seen_pid or pid is not None
        # The JVM writes its pid file within seconds; none after a minute means it never came up.
        if (seen_pid or time.monotonic() - start > 60) and pid is None:
            raise NodeError(f"OpenSearch exited while starting: {_crash_reason(home)}; log: {log_file(home)}")
        time.sleep(1)


def _crash_reason(home: Path) -> str:
    """OpenSearch's own summary of the failure, without stack frames and JVM chatter."""
    text = _read(_startup_out(home)).strip() or _read(log_file(home))
    noise = re.compile(r"^\s*(at |\.\.\. \d+ more)|^warning:|^WARNING:|^For complete error details")
    return _tail("\n".join(line for line in text.splitlines() if not noise.match(line)), 6)


def _configured_port(home: Path) -> int | None:
    """The http.port that the last start wrote into run/config/opensearch.yml."""
    match = re.search(r'^http\.port: "?([0-9]+)', _read(run_dir(home) / "config" / "opensearch.yml"), re.M)
    return int(match.group(1)) if match else None


def _describe(port: int, home: Path, *, reused: bool) -> NodeInfo | None:
    """NodeInfo for whatever answers on the port, or None when nothing does."""
    root = _get(_url(port), 5)
    if not isinstance(root, dict) or "version" not in root:
        return None
    nodes = _get(f"{_url(port)}/_nodes/plugins", 10)
    modules: set[str] = set()
    if isinstance(nodes, dict):
        for node in nodes.get("nodes", {}).values():
            modules.update(m["name"] for m in node.get("modules", []))
    return NodeInfo(
        url=_url(port),
        version=str(root["version"].get("number", "unknown")),
        modules=sorted(modules),
        pid=read_pid(home),
        home=home,
        log_file=log_file(home),
        reused=reused,
    )


# --------------------------------------------------------------------------------------------- public


def start_node(
    *,
    version: str = DEFAULT_VERSION,
    home: Path | None = None,
    port: int = 9200,
    heap: str = "1g",
    timeout: float = 180.0,
) -> NodeInfo:
    """Start (or reuse) a single OpenSearch node on 127.0.0.1:port and wait for yellow health."""
    home = _home(home)
    with _step(f"preparing the node home {home}"), _start_lock(home):
        return _start_locked(version, home, port, heap, timeout)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn a stray OSError (permissions, a missing tool) into a NodeError naming the step."""
    try:
        yield
    except OSError as err:
        raise NodeError(f"{what} failed: {err}") from err


@contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """Serialise starts from one home: a second caller waits, then finds the node up and reuses it."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".start.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start_locked(version: str, home: Path, port: int, heap: str, timeout: float) -> NodeInfo:
    existing = _describe(port, home, reused=True)
    if existing is not None:
        return existing
    running_port = (_configured_port(home) or port) if read_pid(home) is not None else None
    if running_port is not None and running_port != port:
        raise NodeError(
            f"starting a node on port {port} failed: the node from {home} already runs on port {running_port}; "
            "stop it first or pass another home"
        )
    if running_port is None:  # else a node of ours is still starting: wait for it
        with _step(f"assembling OpenSearch {version} under {home / 'dist'}"):
            dist = ensure_distribution(version, home)
        with _step(f"preparing {run_dir(home)}"):
            _prepare_run_dir(home, dist, port, heap)
            (run_dir(home) / PIDFILE).unlink(missing_ok=True)
        with _step("launching OpenSearch"):
            _launch(home, dist)
        reused = False
    else:
        reused = True
    _wait_yellow(home, port, timeout)
    info = _describe(port, home, reused=reused)
    if info is None:
        raise NodeError(f"reading node info from {_url(port)} failed; log: {log_file(home)}")
    return info


def stop_node(*, home: Path | None = None, timeout: float = 60.0) -> bool:
    """SIGTERM the node from the pid file and wait for it to exit; False when none was running."""
    home = _home(home)
    pidfile = run_dir(home) / PIDFILE
    pid = read_pid(home)
    if pid is None:
        pidfile.unlink(missing_ok=True)  # stale: the process is gone
        return False
    with _step(f"stopping OpenSearch (pid {pid})"):
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)  # a clean stop hung; do not leave a half-dead node on the port
            if not _wait_exit(pid, 10):
                raise NodeError(f"stopping OpenSearch (pid {pid}) failed: it survived SIGKILL; log: {log_file(home)}")
        pidfile.unlink(missing_ok=True)
    return True


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_opensearch(pid):
            return True
        time.sleep(0.2)
    return not _is_opensearch(pid)


def node_status(*, home: Path | None = None, port: int = 9200) -> NodeInfo | None:
    """The node answering on 127.0.0.1:port, or None when nothing answers."""
    return _describe(port, _home(home), reused=True)


# -------------------------------------------------------------------------------------------- helpers


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_MVN_NOISE = ("re-run maven", "for more information", "[error] [help ", "-e switch", "-x switch")


def _mvn_error(output: str) -> str:
    """The [ERROR] lines that say what went wrong, without colour codes or Maven's generic advice."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    lines = [re.sub(r"\s*-> \[Help \d+\]$", "", line) for line in lines if line.startswith(("[ERROR]", "[FATAL]"))]
    kept = [line for line in lines if line[7:].strip() and not any(n in line.lower() for n in _MVN_NOISE)]
    return " | ".join(kept[:4]) if kept else _tail(output, 15)


def _tail(text: str, lines: int) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"
