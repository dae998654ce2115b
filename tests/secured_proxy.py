"""A TLS-terminating proxy with basic auth, API keys and optional client certificates, in front of the plain test node.

The OpenSearch security plugin is not published for the node's version (2.19.6; Maven Central stops at 2.19.4.0)
and a plugin must match the node exactly, so the secured-cluster tests talk to this proxy instead: it answers a
wrong or missing credential with 401 the way the security plugin does, and forwards everything else unchanged.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_UNAUTHORIZED = json.dumps(
    {
        "error": {
            "root_cause": [{"type": "security_exception", "reason": "Authentication finally failed"}],
            "type": "security_exception",
            "reason": "Authentication finally failed",
        },
        "status": 401,
    }
).encode()


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)


def _issue(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey, **kind: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=kind.get("ca", False), path_length=None), critical=True)
    )
    if kind.get("server"):
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if kind.get("client"):
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if kind.get("ca"):
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certs(folder: Path) -> Certs:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    pem = serialization.Encoding.PEM
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "splade-os test CA")])
    ca = _issue("splade-os test CA", ca_key, ca_name, ca_key, ca=True)
    certs = Certs(*(folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    certs.ca.write_bytes(ca.public_bytes(pem))
    certs.server_cert.write_bytes(_issue("localhost", server_key, ca_name, ca_key, server=True).public_bytes(pem))
    certs.client_cert.write_bytes(
        _issue("splade-os client", client_key, ca_name, ca_key, client=True).public_bytes(pem)
    )
    _write_key(certs.server_key, server_key)
    _write_key(certs.client_key, client_key)
    return certs


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        basic = base64.b64encode(f"{self.server.user}:{self.server.password}".encode()).decode()
        return header == f"Basic {basic}" or (bool(self.server.api_key) and header == f"ApiKey {self.server.api_key}")

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        if not self._authorized():
            self.server.rejected += 1
            self._reply(
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": 'Basic realm="OpenSearch Security"'},
                _UNAUTHORIZED,
            )
            return
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() in ("content-type", "content-encoding")}
            self._reply(response.status, kept, data, length=response.getheader("Content-Length"))
        finally:
            upstream.close()

    def _reply(self, status: int, headers: dict[str, str], data: bytes, length: str | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    user: str
    password: str
    api_key: str | None
    upstream_host: str
    upstream_port: int
    requests: int = 0
    rejected: int = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that rejects our certificate is what some tests are about: no tracebacks on stderr


@dataclass
class SecuredProxy:
    url: str
    user: str
    password: str
    api_key: str
    certs: Certs
    server: _Server


@contextmanager
def running_proxy(
    upstream: str, certs: Certs, *, user: str, password: str, api_key: str = "", require_client_cert: bool = False
) -> Iterator[SecuredProxy]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    parts = urlsplit(upstream)
    server.user, server.password, server.api_key = user, password, api_key
    server.upstream_host, server.upstream_port = parts.hostname or "127.0.0.1", parts.port or 9200
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield SecuredProxy(f"https://127.0.0.1:{server.server_address[1]}", user, password, api_key, certs, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
