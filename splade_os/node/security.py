"""Secured local nodes (`splade-os node start --secure`): TLS on HTTP and transport, an admin, and the indexer and
searcher users of docs/security.md, so that users can try role definitions before applying them to their cluster.

OpenSearch: the integ-test zip plus the security plugin of the same version (Maven Central has it up to 2.19.4.0,
hence the default 2.19.4), set up by the plugin's own demo installer (its certificates, `config/root-ca.pem`),
with our generated admin password. Elasticsearch: x-pack security of the zip, a CA and node certificate made by
`elasticsearch-certutil`, file-realm users (`elasticsearch-users`) and file roles (`roles.yml`, reloaded within
seconds of a change): the zip cannot hold native users, roles or API keys (its `.security` index needs an analysis
module that is not published).

Passwords are generated per node and kept in one file, mode 0600, under the node home; only `node start` prints
them, once, when it creates them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from splade_os.engines.roles import INDEXER, ROLES, SEARCHER, opensearch_role, privileges, roles_yml
from splade_os.errors import NodeError
from splade_os.node.distributions import ELASTICSEARCH, OPENSEARCH, Distribution, tail

SECURE_OPENSEARCH_VERSION = "2.19.4"
"""The newest OpenSearch whose security plugin is on Maven Central (the plugin must match the node exactly)."""
ADMIN = "admin"
NODE_PATTERNS = ["*"]
"""The index patterns of the roles on a local node; docs/security.md narrows them to one alias."""
RELOAD_INTERVAL = "1s"
"""How often Elasticsearch re-reads roles.yml and the users file (`resource.reload.interval.high`, default 5s)."""

_DEMO_START = "######## Start OpenSearch Security Demo Configuration ########"
_DEMO_END = "######## End OpenSearch Security Demo Configuration ########"


def default_version(engine: Distribution) -> str:
    return SECURE_OPENSEARCH_VERSION if engine is OPENSEARCH else engine.default_version


def plugin_coordinates(version: str) -> str:
    return f"org.opensearch.plugin:opensearch-security:{version}.0:zip"


def new_password() -> str:
    # Upper, lower, digit and symbol, and long: the security plugin's strength rules accept it.
    return f"Sp1-{secrets.token_urlsafe(18)}"


# ------------------------------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class Credentials:
    """Who may log in to a secured local node, and the CA that verifies it. `users` maps name -> password."""

    path: Path
    url: str
    ca_certs: str
    users: dict[str, str]

    @property
    def admin_password(self) -> str:
        return self.users[ADMIN]

    def __repr__(self) -> str:  # never the passwords
        return f"Credentials(path={self.path}, url={self.url}, ca_certs={self.ca_certs}, users={sorted(self.users)})"


def credentials_path(home: Path, run: Path) -> Path:
    """Beside the node's folder, owned by whoever started it (the node's own user cannot read it)."""
    return home / "credentials" / f"{run.name}.json"


def load_credentials(path: Path) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
        return Credentials(path, str(data["url"]), str(data["ca_certs"]), dict(data["users"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_credentials(creds: Credentials) -> None:
    creds.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds.path.parent.chmod(0o700)
    fd = os.open(creds.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": creds.url, "ca_certs": creds.ca_certs, "users": creds.users}, out, indent=1)
        out.write("\n")
    creds.path.chmod(0o600)


def new_credentials(path: Path, url: str, ca_certs: Path) -> Credentials:
    users = {name: new_password() for name in (ADMIN, *ROLES)}
    creds = Credentials(path, url, str(ca_certs), users)
    save_credentials(creds)
    return creds


# ------------------------------------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class Access:
    """How to talk to a secured node: verify with its CA, log in as its admin."""

    ca_certs: str
    user: str
    password: str

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_certs)

    def header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


def admin_access(creds: Credentials) -> Access:
    return Access(creds.ca_certs, ADMIN, creds.admin_password)


def request(
    url: str, timeout: float, access: Access | None = None, *, method: str = "GET", body: Any = None
) -> tuple[int, Message, Any] | None:
    """(status, headers, parsed JSON or None) from `url`; None when nothing answers. Never through a proxy."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if access is not None:
        handlers.append(urllib.request.HTTPSHandler(context=access.context()))
    opener = urllib.request.build_opener(*handlers)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if access is not None:
        req.add_header("Authorization", access.header())
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers = err.code, err.headers
        try:
            raw = err.read()
        except OSError:
            raw = b""
    except (urllib.error.URLError, OSError, ValueError):
        return None
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, headers, parsed


# ------------------------------------------------------------------------------- OpenSearch distribution


def install_opensearch_security(dist: Path, jars: Path, version: str, java_home: Path) -> None:
    """Install the plugin into an assembled distribution and run its demo installer (certificates, settings).

    The installer needs an admin password; a throwaway one is given, and each node gets its own (`prepare_run`).
    """
    plugin = jars / f"opensearch-security-{version}.0.zip"
    if not plugin.is_file():
        raise NodeError(f"installing the security plugin failed: {plugin.name} was not fetched")
    env = {**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home), "OPENSEARCH_PATH_CONF": str(dist / "config")}
    _run([str(dist / "bin" / "opensearch-plugin"), "install", "--batch", plugin.as_uri()], env,
         "installing the OpenSearch security plugin")  # fmt: skip
    demo = dist / "plugins" / "opensearch-security" / "tools" / "install_demo_configuration.sh"
    env["OPENSEARCH_INITIAL_ADMIN_PASSWORD"] = new_password()
    _run(["bash", str(demo), "-y", "-i", "-s"], env, "running the security plugin's demo installer")


def _run(cmd: list[str], env: dict[str, str], what: str, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise NodeError(f"{what} failed (exit {proc.returncode}): {tail(proc.stdout + proc.stderr, 4)}")
    return proc.stdout


# ------------------------------------------------------------------------------------------ node setup


def ca_path(engine: Distribution, config: Path) -> Path:
    return config / "root-ca.pem" if engine is OPENSEARCH else config / "certs" / "ca" / "ca.crt"


def config_text(engine: Distribution, dist: Path) -> str:
    """Settings to append to the node's config: the demo installer's for OpenSearch, TLS and realms for ES."""
    if engine is OPENSEARCH:
        text = (dist / "config" / "opensearch.yml").read_text()
        if _DEMO_START not in text:
            raise NodeError(f"reading the security settings of {dist} failed: the demo installer did not run")
        block = text.split(_DEMO_START, 1)[1].split(_DEMO_END, 1)[0]
        # No audit log: it would write an index of its own on every request of a try-out node.
        return "".join(line + "\n" for line in block.splitlines() if not line.startswith("plugins.security.audit"))
    settings = {
        "xpack.security.enabled": "true",
        "xpack.security.http.ssl.enabled": "true",
        "xpack.security.http.ssl.key": "certs/node/node.key",
        "xpack.security.http.ssl.certificate": "certs/node/node.crt",
        "xpack.security.http.ssl.certificate_authorities": "certs/ca/ca.crt",
        "xpack.security.transport.ssl.enabled": "true",
        "xpack.security.transport.ssl.verification_mode": "certificate",
        "xpack.security.transport.ssl.key": "certs/node/node.key",
        "xpack.security.transport.ssl.certificate": "certs/node/node.crt",
        "xpack.security.transport.ssl.certificate_authorities": "certs/ca/ca.crt",
        "resource.reload.interval.high": RELOAD_INTERVAL,
    }
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


def prepare_run(engine: Distribution, dist: Path, config: Path, java_home: Path, creds: Credentials) -> None:
    """Certificates, users and roles in the node's config folder, before its first launch."""
    if engine is OPENSEARCH:
        _prepare_opensearch(dist, config, java_home, creds)
    else:
        _prepare_elasticsearch(dist, config, java_home, creds)


def _prepare_opensearch(dist: Path, config: Path, java_home: Path, creds: Credentials) -> None:
    security = config / "opensearch-security"
    shutil.rmtree(security, ignore_errors=True)
    shutil.copytree(dist / "config" / "opensearch-security", security)
    # Only our admin: the demo's other users have well-known passwords. The security index is created from these
    # files on the first start; indexer and searcher are added through the REST API once the node is up.
    env = {**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home), "SPLADE_OS_NEW_PASSWORD": creds.admin_password}
    hasher = dist / "plugins" / "opensearch-security" / "tools" / "hash.sh"
    out = _run(["bash", str(hasher), "-env", "SPLADE_OS_NEW_PASSWORD"], env, "hashing the admin password")
    digest = [line for line in out.splitlines() if line.startswith("$2")]
    if not digest:
        raise NodeError("hashing the admin password failed: the plugin's hash tool printed no hash")
    users = {
        "_meta": {"type": "internalusers", "config_version": 2},
        ADMIN: {"hash": digest[-1], "reserved": True, "backend_roles": ["admin"], "description": "splade-os admin"},
    }
    (security / "internal_users.yml").write_text(json.dumps(users, indent=1) + "\n")


def _prepare_elasticsearch(dist: Path, config: Path, java_home: Path, creds: Credentials) -> None:
    env = {**os.environ, "ES_JAVA_HOME": str(java_home), "ES_PATH_CONF": str(config)}
    env.pop("JAVA_HOME", None)
    certs = config / "certs"
    if not (certs / "ca" / "ca.crt").is_file() or not (certs / "node" / "node.crt").is_file():
        _make_certificates(dist, certs, env)  # kept across restarts: a CA copied elsewhere stays valid
    roles = {name: privileges(ELASTICSEARCH.name, name) for name in ROLES}
    (config / "roles.yml").write_text(roles_yml(roles, NODE_PATTERNS))
    users = str(dist / "bin" / "elasticsearch-users")
    for name, role in ((ADMIN, "superuser"), (INDEXER, INDEXER), (SEARCHER, SEARCHER)):
        password = creds.users[name]
        # The password goes through stdin, never the command line (other local users can read that).
        _run([users, "useradd", name, "-r", role], env, f"adding user {name}", stdin=f"{password}\n{password}\n")


def _make_certificates(dist: Path, certs: Path, env: dict[str, str]) -> None:
    shutil.rmtree(certs, ignore_errors=True)
    certs.mkdir()
    certutil = str(dist / "bin" / "elasticsearch-certutil")
    _run([certutil, "ca", "--pem", "--silent", "--out", str(certs / "ca.zip")], env, "making a CA (certutil)")
    _unzip(certs / "ca.zip", certs)
    _run([certutil, "cert", "--pem", "--silent", "--ca-cert", str(certs / "ca" / "ca.crt"),
          "--ca-key", str(certs / "ca" / "ca.key"), "--ip", "127.0.0.1", "--dns", "localhost", "--name", "node",
          "--out", str(certs / "node.zip")], env, "making the node certificate (certutil)")  # fmt: skip
    _unzip(certs / "node.zip", certs)


def _unzip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    archive.unlink()


def finish_setup(engine: Distribution, url: str, creds: Credentials, timeout: float = 60.0) -> None:
    """After the first start: OpenSearch's indexer and searcher roles and users, through the security REST API."""
    if engine is not OPENSEARCH:
        return
    access = admin_access(creds)
    api = f"{url}/_plugins/_security/api"
    deadline = time.monotonic() + timeout
    for name in ROLES:
        body = opensearch_role(privileges(OPENSEARCH.name, name), NODE_PATTERNS)
        _put(f"{api}/roles/{name}", body, access, deadline)
        user = {"password": creds.users[name], "opendistro_security_roles": [name]}
        _put(f"{api}/internalusers/{name}", user, access, deadline)


def _put(url: str, body: Any, access: Access, deadline: float) -> None:
    # Right after yellow health the security index may still be loading (503): retry until the deadline.
    while True:
        answer = request(url, 30, access, method="PUT", body=body)
        if answer is not None and answer[0] in (200, 201):
            return
        if time.monotonic() > deadline:
            what = f"HTTP {answer[0]}: {answer[2]}" if answer else "no answer"
            raise NodeError(f"creating {'/'.join(url.rsplit('/', 2)[-2:])} on the secured node failed ({what})")
        time.sleep(1)
