"""`node start --secure` without starting anything: which node it means, where its secrets go, what it writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from splade_os.cli.node import _print_info
from splade_os.node.distributions import ELASTICSEARCH, OPENSEARCH, pom
from splade_os.node.run import NodeInfo, render_config, resolve
from splade_os.node.security import config_text, load_credentials, new_credentials


def test_secure_defaults_to_the_newest_opensearch_with_a_security_plugin(tmp_path: Path) -> None:
    spec = resolve("opensearch", None, 9210, tmp_path, secure=True)
    assert (spec.version, spec.url) == ("2.19.4", "https://127.0.0.1:9210")
    assert spec.run.name == "run-opensearch-2.19.4-9210-secure"
    plugin = "opensearch-security</artifactId><version>2.19.4.0</version><type>zip"
    assert plugin in pom("2.19.4", OPENSEARCH, secure=True)
    assert "opensearch-security" not in pom("2.19.4", OPENSEARCH)
    es = resolve("elasticsearch", None, 9212, tmp_path, secure=True)
    assert es.version == "9.2.0" and "security" not in pom("9.2.0", ELASTICSEARCH, secure=True)
    text = render_config(es) + config_text(ELASTICSEARCH, tmp_path)
    assert "xpack.security.enabled: \"false\"" not in text and "xpack.security.enabled: \"true\"" in text
    assert "xpack.security.http.ssl.enabled" in text and 'resource.reload.interval.high: "1s"' in text


def test_passwords_live_in_a_private_file_and_nowhere_else(tmp_path: Path) -> None:
    path = tmp_path / "credentials" / "run-x.json"
    creds = new_credentials(path, "https://127.0.0.1:9210", tmp_path / "ca.pem")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert set(creds.users) == {"admin", "splade_indexer", "splade_searcher"}
    assert len(set(creds.users.values())) == 3 and all(len(p) >= 20 for p in creds.users.values())
    assert all(p not in repr(creds) for p in creds.users.values())
    assert load_credentials(path) == creds
    info = NodeInfo(url=creds.url, version="2.19.4", modules=[], pid=1, home=tmp_path, log_file=tmp_path / "log",
                    reused=False, credentials_file=path, ca_certs=creds.ca_certs,
                    new_passwords=creds.users)  # fmt: skip
    printed = CliRunner().invoke(_print_command(info)).output
    assert f"users and passwords: {path} (mode 0600)" in printed and f"CA certificate: {creds.ca_certs}" in printed
    # Printed by the start that made them, and only then.
    assert all(f"password of {u}: {p}" in printed for u, p in creds.users.items())
    reused = NodeInfo(**{**info.__dict__, "new_passwords": None})
    assert all(p not in CliRunner().invoke(_print_command(reused)).output for p in creds.users.values())
    assert all(p not in repr(info) for p in creds.users.values())


def _print_command(info: NodeInfo):  # type: ignore[no-untyped-def]
    import click

    return click.command()(lambda: _print_info(info))
