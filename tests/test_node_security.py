"""`node start --secure` without starting anything: which node it means, where its secrets go, what it writes."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from splade_os.cli import main
from splade_os.cli.node import _print_info
from splade_os.node import distributions as node_dist
from splade_os.node.distributions import ELASTICSEARCH, OPENSEARCH, pom
from splade_os.node.security import (
    ADMIN_DN,
    NODE_DN,
    config_text,
    demo_setup,
    load_credentials,
    make_certificates,
    new_credentials,
    write_private,
)
from splade_os.node.spec import NodeInfo, render_config, resolve


def test_secure_defaults_to_the_newest_opensearch_with_a_security_plugin(tmp_path: Path) -> None:
    spec = resolve("opensearch", None, 9210, tmp_path, secure=True)
    assert (spec.version, spec.url) == ("2.19.4", "https://127.0.0.1:9210")
    assert spec.run.name == "run-opensearch-2.19.4-9210-secure"
    plugin = "opensearch-security</artifactId><version>2.19.4.0</version><type>zip"
    assert plugin in pom("2.19.4", OPENSEARCH, secure=True)
    assert "opensearch-security" not in pom("2.19.4", OPENSEARCH)
    es = resolve("elasticsearch", None, 9212, tmp_path, secure=True)
    assert es.version == "9.2.0" and "security" not in pom("9.2.0", ELASTICSEARCH, secure=True)
    text = render_config(es) + config_text(ELASTICSEARCH)
    assert 'xpack.security.enabled: "false"' not in text and 'xpack.security.enabled: "true"' in text
    assert "xpack.security.http.ssl.enabled" in text and 'resource.reload.interval.high: "1s"' in text


def test_passwords_live_in_a_private_file_and_nowhere_else(tmp_path: Path) -> None:
    path = tmp_path / "credentials" / "run-x.json"
    creds = new_credentials(path, "https://127.0.0.1:9210", tmp_path / "ca.pem")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert set(creds.users) == {"admin", "splade_indexer", "splade_searcher"}
    assert len(set(creds.users.values())) == 3 and all(len(p) >= 20 for p in creds.users.values())
    assert all(p not in repr(creds) for p in creds.users.values())
    assert load_credentials(path) == creds
    info = NodeInfo(
        url=creds.url,
        version="2.19.4",
        modules=[],
        pid=1,
        home=tmp_path,
        log_file=tmp_path / "log",
        reused=False,
        credentials_file=path,
        ca_certs=creds.ca_certs,
        new_passwords=creds.users,
    )
    printed = CliRunner().invoke(_print_command(info)).output
    assert f"CA certificate: {creds.ca_certs}" in printed
    assert (
        f"users and passwords: {path} (mode 0600; new passwords of admin, splade_indexer, splade_searcher; "
        "`splade-os node credentials --port 9210` shows them)"
    ) in printed
    # Not even by the start that made them: start output lands in terminal and CI logs.
    assert all(p not in printed for p in creds.users.values())
    reused = NodeInfo(**{**info.__dict__, "new_passwords": None})
    assert all(p not in CliRunner().invoke(_print_command(reused)).output for p in creds.users.values())
    assert all(p not in repr(info) for p in creds.users.values())


def _secured_home(tmp_path: Path, port: int) -> dict[str, str]:
    spec = resolve("opensearch", None, port, tmp_path, secure=True)
    creds = new_credentials(spec.credentials_file, spec.url, spec.run / "config" / "certs" / "ca.pem")
    return creds.users


def test_node_credentials_shows_the_passwords_only_when_asked(tmp_path: Path) -> None:
    users = _secured_home(tmp_path, 9210)
    args = ["node", "credentials", "--port", "9210", "--home", str(tmp_path)]
    refused = CliRunner().invoke(main, args)  # CliRunner's stdout is not a terminal, as a pipe or a CI log is not
    assert refused.exit_code == 1 and all(p not in refused.output for p in users.values())
    assert "stdout is not a terminal: the passwords in " in refused.output and "pass --show" in refused.output
    shown = CliRunner().invoke(main, [*args, "--show"])
    assert shown.exit_code == 0, shown.output
    assert all(f"password of {u}: {p}" in shown.output for u, p in users.items())
    as_json = CliRunner().invoke(main, [*args, "--force", "--json"])
    assert json.loads(as_json.output)["users"] == users
    missing = CliRunner().invoke(main, ["node", "credentials", "--port", "9299", "--home", str(tmp_path), "--show"])
    assert missing.exit_code == 1 and "start the secured node first" in missing.output


def test_status_of_a_secured_node_whose_folder_was_deleted_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing answers on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _secured_home(tmp_path, port)  # its CA file never existed: as after `rm -r` of the node's folder
    result = CliRunner().invoke(main, ["node", "status", "--secure", "--port", str(port), "--home", str(tmp_path)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert result.output == f"no OpenSearch node answers at https://127.0.0.1:{port}\n"


def _print_command(info: NodeInfo):  # type: ignore[no-untyped-def]
    import click

    return click.command()(lambda: _print_info(info))


def test_each_opensearch_node_gets_a_ca_and_an_admin_of_its_own(tmp_path: Path) -> None:
    made = {}
    for name in ("a", "b"):
        make_certificates(tmp_path / name / "certs", tmp_path / name / "private", f"run-{name}")
        made[name] = {
            p.name: x509.load_pem_x509_certificate(p.read_bytes())
            for p in (tmp_path / name).rglob("*.pem")
            if not p.name.endswith("key.pem")
        }
    a, b = made["a"], made["b"]
    assert a["ca.pem"].public_key() != b["ca.pem"].public_key()  # nothing shared between nodes, nothing public
    assert a["admin.pem"].subject.rfc4514_string() == ADMIN_DN and a["node.pem"].subject.rfc4514_string() == NODE_DN
    for leaf in ("node.pem", "admin.pem"):
        a[leaf].verify_directly_issued_by(a["ca.pem"])
    san = a["node.pem"].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = a["admin.pem"].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # The node's folder gets the CA certificate and its own key; the CA key and the admin's stay apart.
    assert sorted(p.name for p in (tmp_path / "a" / "certs").iterdir()) == ["ca.pem", "node-key.pem", "node.pem"]
    private = sorted(p.name for p in (tmp_path / "a" / "private").iterdir())
    assert private == ["admin-key.pem", "admin.pem", "ca-key.pem"]
    for path in (tmp_path / "a").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_opensearch_settings_trust_only_the_nodes_own_admin() -> None:
    text = config_text(OPENSEARCH)
    assert f'plugins.security.authcz.admin_dn: ["{ADMIN_DN}"]' in text
    assert "certs/node-key.pem" in text and "certs/ca.pem" in text
    for demo in ("kirk", "esnode", "root-ca.pem", "allow_unsafe_democertificates", "audit"):
        assert demo not in text


def test_an_older_demo_setup_is_recognised_and_its_distribution_rebuilt(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "opensearch.yml").write_text(config_text(OPENSEARCH))
    assert not demo_setup(config)
    (config / "kirk.pem").write_text("demo")
    assert demo_setup(config)
    plugins = OPENSEARCH.security_plugin("2.19.4", True)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / node_dist.MARKER).write_text("\n".join([*(m.name for m in node_dist.MODULES), *plugins]) + "\n")
    assert not node_dist._assembled(dist, node_dist.MODULES, plugins)  # what an older splade-os wrote


def test_private_files_are_private_from_the_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("old")
    path.chmod(0o664)
    write_private(path, "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "secret"
