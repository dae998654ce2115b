"""Secured local nodes (`splade-os node start --secure`): TLS on HTTP and transport, an admin, and the indexer and
searcher users of docs/security.md, so that users can try role definitions before applying them to their cluster.
They are try-out nodes on 127.0.0.1, not a production setup.

OpenSearch: the integ-test zip plus the security plugin of the same version (Maven Central has it up to 2.19.4.0,
hence the default 2.19.4). Never the plugin's demo installer: its certificates' keys are public, and anyone with
its admin certificate (`kirk.pem`) could rewrite the security configuration of every node that trusts it. Each
node gets a CA of its own, a node certificate and an admin certificate (`make_certificates`); the plugin's
security configuration (users, roles, mappings, authentication) is written here and applied with that admin
certificate (`securityadmin.sh`) on every start. Elasticsearch: x-pack security of the zip, a CA and node
certificate made by `elasticsearch-certutil`, file-realm users (`elasticsearch-users`) and file roles (`roles.yml`,
reloaded within seconds of a change): the zip cannot hold native users, roles or API keys (its `.security` index
needs an analysis module that is not published).

Passwords are generated per node and kept in one file, mode 0600, under the node home; only `node start` prints
them, once, when it creates them. The CA key and the admin certificate's key lie beside it, where the node's own
user cannot read them. Everything in a secured node's folder is its user's alone (files 0600, folders 0700).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
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

ORG_UNIT = "splade-os"
ADMIN_DN = f"CN=admin,OU={ORG_UNIT}"
"""The subject of a node's admin certificate (RFC 2253, as the plugin compares it), trusted only from its own CA."""
NODE_DN = f"CN=node,OU={ORG_UNIT}"
CERT_DAYS = 3650
CA_CERT, NODE_CERT, NODE_KEY = "ca.pem", "node.pem", "node-key.pem"
"""In the node's config/certs: what the node reads. The CA certificate is what clients pass as --ca-certs."""
CA_KEY, ADMIN_CERT, ADMIN_KEY = "ca-key.pem", "admin.pem", "admin-key.pem"
"""Beside the passwords: what only splade-os uses (signing, securityadmin), never readable by the node's user."""
HOST = "127.0.0.1"
DEMO_FILES = ("esnode.pem", "esnode-key.pem", "kirk.pem", "kirk-key.pem", "root-ca.pem", "securityadmin_demo.sh")
"""What the plugin's demo installer left in a node's config folder (an older splade-os used it)."""
_DEMO_START = "######## Start OpenSearch Security Demo Configuration ########"


def default_version(engine: Distribution) -> str:
    return SECURE_OPENSEARCH_VERSION if engine is OPENSEARCH else engine.default_version


def new_password() -> str:
    # Upper, lower, digit and symbol, and long: the security plugin's strength rules accept it.
    return f"Sp1-{secrets.token_urlsafe(18)}"


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file that only its owner may read, from its first byte on (never a moment world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC


def private_folder(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def make_private(root: Path) -> None:
    """Files 0600 and folders 0700 under `root`: a secured node's folder holds its keys, realm files, keystore and
    security index, and nobody but its user (and whoever started it, as owner or root) needs to read them."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)


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

    @property
    def private(self) -> Path:
        """The folder of the CA key and the admin certificate, beside the passwords."""
        return self.path.parent / self.path.stem

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
    private_folder(creds.path.parent)
    data = {"url": creds.url, "ca_certs": creds.ca_certs, "users": creds.users}
    write_private(creds.path, json.dumps(data, indent=1) + "\n")


def new_credentials(path: Path, url: str, ca_certs: Path) -> Credentials:
    users = {name: new_password() for name in (ADMIN, *ROLES)}
    creds = Credentials(path, url, str(ca_certs), users)
    save_credentials(creds)
    return creds


def with_ca(creds: Credentials, ca_certs: Path) -> Credentials:
    """The same users with another CA (a node an older splade-os set up with the demo CA), saved."""
    if creds.ca_certs == str(ca_certs):
        return creds
    moved = replace(creds, ca_certs=str(ca_certs))
    save_credentials(moved)
    return moved


# ------------------------------------------------------------------------------------------ certificates


def make_certificates(certs: Path, private: Path, label: str) -> None:
    """A CA of the node's own, signing the node's certificate (127.0.0.1 and localhost) and the admin's (`ADMIN_DN`).

    The node gets the CA certificate and its own key pair (`certs`); the CA key and the admin's key pair go to
    `private`, which the node's user cannot read. Keys are unencrypted PKCS#8 PEM, as the plugin reads them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        # Listed from the root down; RFC 2253 writes it leaf first: CN=...,OU=splade-os.
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORG_UNIT),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not sign,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign,
            crl_sign=sign,
            encipher_only=False,
            decipher_only=False,
        )

    start = datetime.now(timezone.utc) - timedelta(days=1)  # a clock a little behind still accepts them
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = name(f"splade-os CA of {label}")

    def issue(subject: x509.Name, key: Any, *extensions: x509.ExtensionType) -> x509.Certificate:
        public = key.public_key()
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public)
        builder = builder.serial_number(x509.random_serial_number()).not_valid_before(start)
        builder = builder.not_valid_after(start + timedelta(days=CERT_DAYS))
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        if subject != ca_name:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
            builder = builder.add_extension(aki, critical=False)
        for ext in extensions:
            critical = isinstance(ext, x509.BasicConstraints | x509.KeyUsage)
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = issue(ca_name, ca_key, x509.BasicConstraints(ca=True, path_length=0), usage(sign=True))
    leaf = (x509.BasicConstraints(ca=False, path_length=None), usage(sign=False))
    node_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    both = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    where = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))])
    node = issue(name("node"), node_key, *leaf, both, where)
    admin_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    admin = issue(name("admin"), admin_key, *leaf, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]))

    def pem_key(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    private_folder(certs)
    private_folder(private)
    write_private(certs / CA_CERT, ca.public_bytes(serialization.Encoding.PEM))
    write_private(certs / NODE_CERT, node.public_bytes(serialization.Encoding.PEM))
    write_private(certs / NODE_KEY, pem_key(node_key))
    write_private(private / CA_KEY, pem_key(ca_key))
    write_private(private / ADMIN_CERT, admin.public_bytes(serialization.Encoding.PEM))
    write_private(private / ADMIN_KEY, pem_key(admin_key))


def has_certificates(certs: Path, private: Path) -> bool:
    names = [certs / n for n in (CA_CERT, NODE_CERT, NODE_KEY)] + [private / n for n in (CA_KEY, ADMIN_CERT, ADMIN_KEY)]
    return all(path.is_file() for path in names)


def demo_setup(config: Path) -> bool:
    """Whether a node's config still holds the plugin's demo setup (public keys, `kirk` as admin)."""
    if any((config / name).exists() for name in DEMO_FILES):
        return True
    try:
        return _DEMO_START in (config / OPENSEARCH.config_file).read_text()
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class Access:
    """How to talk to a secured node: verify with its CA, log in with a password or a client certificate."""

    ca_certs: str
    user: str
    password: str
    client_cert: tuple[str, str] | None = None
    """(certificate, key): OpenSearch's admin certificate, which needs no password."""

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_certs)
        if self.client_cert is not None:
            context.load_cert_chain(*self.client_cert)
        return context

    def header(self) -> str | None:
        if not self.password:
            return None
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


def admin_access(creds: Credentials) -> Access:
    """The admin certificate where the node has one (OpenSearch): it works whatever the users' passwords are."""
    cert, key = creds.private / ADMIN_CERT, creds.private / ADMIN_KEY
    if cert.is_file() and key.is_file():
        return Access(creds.ca_certs, ADMIN_DN, "", (str(cert), str(key)))
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
    header = access.header() if access is not None else None
    if header is not None:
        req.add_header("Authorization", header)
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
    """Install the plugin into an assembled distribution; each node gets its own certificates (`prepare_run`)."""
    plugin = jars / f"opensearch-security-{version}.0.zip"
    if not plugin.is_file():
        raise NodeError(f"installing the security plugin failed: {plugin.name} was not fetched")
    env = {**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home), "OPENSEARCH_PATH_CONF": str(dist / "config")}
    _run(
        [str(dist / "bin" / "opensearch-plugin"), "install", "--batch", plugin.as_uri()],
        env,
        "installing the OpenSearch security plugin",
    )


def _run(cmd: list[str], env: dict[str, str], what: str, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise NodeError(f"{what} failed (exit {proc.returncode}): {tail(proc.stdout + proc.stderr, 4)}")
    return proc.stdout


def _tool_env(engine: Distribution, config: Path, java_home: Path) -> dict[str, str]:
    env = {**os.environ, engine.java_home_env: str(java_home), engine.path_conf_env: str(config)}
    if engine is ELASTICSEARCH:
        env.pop("JAVA_HOME", None)  # Elasticsearch reads only ES_JAVA_HOME
    return env


# ------------------------------------------------------------------------------------------ node setup


def ca_path(engine: Distribution, config: Path) -> Path:
    return config / "certs" / (CA_CERT if engine is OPENSEARCH else "ca/ca.crt")


def config_text(engine: Distribution) -> str:
    """Settings to append to the node's config: TLS with the node's own certificates, and who is admin."""
    settings: dict[str, Any]
    if engine is OPENSEARCH:
        files = {
            "pemcert_filepath": f"certs/{NODE_CERT}",
            "pemkey_filepath": f"certs/{NODE_KEY}",
            "pemtrustedcas_filepath": f"certs/{CA_CERT}",
        }
        settings = {f"plugins.security.ssl.{layer}.{k}": v for layer in ("transport", "http") for k, v in files.items()}
        settings.update(
            {
                "plugins.security.ssl.http.enabled": True,
                # The first start loads config/opensearch-security/*.yml into the security index.
                "plugins.security.allow_default_init_securityindex": True,
                "plugins.security.authcz.admin_dn": [ADMIN_DN],
                "plugins.security.nodes_dn": [NODE_DN],
                "plugins.security.restapi.roles_enabled": ["all_access"],
            }
        )
        # No audit log: it would write an index of its own on every request of a try-out node.
        return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
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
    """Certificates, users, roles and a keystore in the node's config folder, before each launch."""
    if engine is OPENSEARCH:
        _prepare_opensearch(dist, config, java_home, creds)
    else:
        _prepare_elasticsearch(dist, config, java_home, creds)
    keystore = config / f"{engine.name}.keystore"
    if not keystore.is_file():
        # Made here, not by the node's first start, which would leave it group-readable (0660).
        tool = str(dist / "bin" / f"{engine.script}-keystore")
        _run([tool, "create"], _tool_env(engine, config, java_home), f"creating the {engine.title} keystore")


def _prepare_opensearch(dist: Path, config: Path, java_home: Path, creds: Credentials) -> None:
    for name in DEMO_FILES:
        (config / name).unlink(missing_ok=True)
    certs = config / "certs"
    if not has_certificates(certs, creds.private):
        make_certificates(certs, creds.private, config.parent.name)
    security = config / "opensearch-security"
    shutil.rmtree(security, ignore_errors=True)
    # The plugin's own files for what splade-os leaves at its defaults (action groups, tenants, audit, ...);
    # the sample users, roles and mappings among them are replaced below.
    shutil.copytree(dist / "config" / "opensearch-security", security)
    for name, content in security_config(dist, java_home, creds).items():
        write_private(security / name, json.dumps(content, indent=1) + "\n")


def security_config(dist: Path, java_home: Path, creds: Credentials) -> dict[str, Any]:
    """The plugin's users, roles, role mappings and authentication: the admin, the indexer and the searcher,
    password logins only (no anonymous access)."""
    users: dict[str, Any] = {"_meta": {"type": "internalusers", "config_version": 2}}
    for name, password in creds.users.items():
        users[name] = {
            "hash": _bcrypt(dist, java_home, password),
            "reserved": name == ADMIN,
            "description": f"splade-os {name}",
        }
    roles: dict[str, Any] = {"_meta": {"type": "roles", "config_version": 2}}
    roles.update({name: opensearch_role(privileges(OPENSEARCH.name, name), NODE_PATTERNS) for name in ROLES})
    mapping: dict[str, Any] = {
        "_meta": {"type": "rolesmapping", "config_version": 2},
        "all_access": {"reserved": True, "users": [ADMIN]},
    }
    mapping.update({name: {"users": [name]} for name in ROLES})
    domain = {
        "http_enabled": True,
        "transport_enabled": True,
        "order": 0,
        "http_authenticator": {"type": "basic", "challenge": True},
        "authentication_backend": {"type": "intern"},
    }
    authc = {"http": {"anonymous_auth_enabled": False}, "authc": {"basic_internal_auth_domain": domain}}
    config = {"_meta": {"type": "config", "config_version": 2}, "config": {"dynamic": authc}}
    return {"internal_users.yml": users, "roles.yml": roles, "roles_mapping.yml": mapping, "config.yml": config}


def _bcrypt(dist: Path, java_home: Path, password: str) -> str:
    # The password goes through the environment, never the command line (other local users can read that).
    env = {**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home), "SPLADE_OS_NEW_PASSWORD": password}
    hasher = dist / "plugins" / "opensearch-security" / "tools" / "hash.sh"
    out = _run(["bash", str(hasher), "-env", "SPLADE_OS_NEW_PASSWORD"], env, "hashing a password")
    digest = [line for line in out.splitlines() if line.startswith("$2")]
    if not digest:
        raise NodeError("hashing a password failed: the security plugin's hash tool printed no hash")
    return digest[-1]


def _prepare_elasticsearch(dist: Path, config: Path, java_home: Path, creds: Credentials) -> None:
    env = _tool_env(ELASTICSEARCH, config, java_home)
    certs = config / "certs"
    if not (certs / "ca" / "ca.crt").is_file() or not (certs / "node" / "node.crt").is_file():
        _make_certificates(dist, certs, env)  # kept across restarts: a CA copied elsewhere stays valid
    roles = {name: privileges(ELASTICSEARCH.name, name) for name in ROLES}
    write_private(config / "roles.yml", roles_yml(roles, NODE_PATTERNS))
    users = str(dist / "bin" / "elasticsearch-users")
    for name, role in ((ADMIN, "superuser"), (INDEXER, INDEXER), (SEARCHER, SEARCHER)):
        password = creds.users[name]
        # The password goes through stdin, never the command line (other local users can read that).
        _run([users, "useradd", name, "-r", role], env, f"adding user {name}", stdin=f"{password}\n{password}\n")


def _make_certificates(dist: Path, certs: Path, env: dict[str, str]) -> None:
    shutil.rmtree(certs, ignore_errors=True)
    private_folder(certs)
    certutil = str(dist / "bin" / "elasticsearch-certutil")
    _run([certutil, "ca", "--pem", "--silent", "--out", str(certs / "ca.zip")], env, "making a CA (certutil)")
    _unzip(certs / "ca.zip", certs)
    _run(
        [
            certutil,
            "cert",
            "--pem",
            "--silent",
            "--ca-cert",
            str(certs / "ca" / "ca.crt"),
            "--ca-key",
            str(certs / "ca" / "ca.key"),
            "--ip",
            "127.0.0.1",
            "--dns",
            "localhost",
            "--name",
            "node",
            "--out",
            str(certs / "node.zip"),
        ],
        env,
        "making the node certificate (certutil)",
    )
    _unzip(certs / "node.zip", certs)


def _unzip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    archive.unlink()


def finish_setup(engine: Distribution, dist: Path, config: Path, java_home: Path, url: str, creds: Credentials) -> None:
    """Once the node answers: OpenSearch's security configuration, as written by `prepare_run`, applied with the
    admin certificate. The first start has loaded it already; on a later one the security index still holds
    the old one (that of an older splade-os, or roles changed through the REST API)."""
    if engine is not OPENSEARCH:
        return
    admin = creds.private
    port = url.rsplit(":", 1)[1]
    tool = dist / "plugins" / "opensearch-security" / "tools" / "securityadmin.sh"
    cmd = [
        "bash",
        str(tool),
        "-cd",
        str(config / "opensearch-security"),
        "-icl",
        "-h",
        HOST,
        "-p",
        port,
        "-cacert",
        creds.ca_certs,
        "-cert",
        str(admin / ADMIN_CERT),
        "-key",
        str(admin / ADMIN_KEY),
    ]
    _run(cmd, _tool_env(OPENSEARCH, config, java_home), "applying the security configuration (securityadmin.sh)")
