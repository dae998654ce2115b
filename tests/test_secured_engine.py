"""splade-os against a secured cluster: TLS with a private CA, basic auth, API keys, client certificates.

The security plugin is not published for the node's version, so the secured cluster is the real node behind a
TLS-terminating proxy that checks credentials and answers 401 like the plugin (tests/secured_proxy.py).
Every command is run with the password, right and wrong, and the password must appear nowhere in what it prints.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from opensearchpy import OpenSearch
from secured_proxy import Certs, SecuredProxy, make_certs, running_proxy

from splade_os.cli import main
from splade_os.connection import ConnectionSettings, connect
from splade_os.errors import EngineError

pytestmark = [pytest.mark.engine, pytest.mark.opensearch_only]

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "splade-tiny")
PASSWORD = f"s3cr3t-{uuid.uuid4().hex[:12]}"
API_KEY = f"k3y-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def proxy(engine_client: OpenSearch, certs: Certs) -> Iterator[SecuredProxy]:
    upstream = ConnectionSettings.from_env().urls[0]
    with running_proxy(upstream, certs, user="admin", password=PASSWORD, api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BEIR folder: corpus, queries and qrels, usable by `index` and by `eval`."""
    root = tmp_path_factory.mktemp("beir")
    topics = ["sparse retrieval with learned term weights", "opensearch cluster security with tls",
              "alias swaps give zero downtime re-indexing", "bm25 ranks documents by term frequency"]  # fmt: skip
    with open(root / "corpus.jsonl", "w") as out:
        for i, text in enumerate(topics * 3):
            out.write(json.dumps({"_id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "secure cluster tls"}) + "\n")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def _settings(proxy: SecuredProxy, **kwargs: object) -> ConnectionSettings:
    values: dict[str, object] = {"urls": (proxy.url,), "username": "admin", "password": PASSWORD}
    values.update(kwargs)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def test_basic_auth_over_verified_tls(proxy: SecuredProxy) -> None:
    before = proxy.server.requests
    info = connect(_settings(proxy, ca_certs=str(proxy.certs.ca))).info()
    assert info["version"]["distribution"] == "opensearch"
    assert proxy.server.requests > before  # it really went through the proxy


def test_wrong_password_is_refused_with_401(proxy: SecuredProxy) -> None:
    rejected = proxy.server.rejected
    with pytest.raises(EngineError) as caught:
        connect(_settings(proxy, password="not-" + PASSWORD, ca_certs=str(proxy.certs.ca), max_retries=0))
    assert "refused the credentials (401)" in str(caught.value)
    assert proxy.server.rejected == rejected + 1


def test_verification_is_on_by_default_and_insecure_turns_it_off(proxy: SecuredProxy) -> None:
    with pytest.raises(EngineError, match="TLS verification of .* failed .*--ca-certs"):
        connect(_settings(proxy))  # the test CA is in no system bundle
    assert connect(_settings(proxy, verify_certs=False)).info()["version"]["number"]


def test_api_key(proxy: SecuredProxy) -> None:
    settings = ConnectionSettings(urls=(proxy.url,), api_key=API_KEY, ca_certs=str(proxy.certs.ca))
    assert connect(settings).info()["version"]["number"]
    with pytest.raises(EngineError, match="401"):
        connect(ConnectionSettings(urls=(proxy.url,), api_key="wrong-key", ca_certs=str(proxy.certs.ca)))


def test_client_certificate(engine_client: OpenSearch, certs: Certs) -> None:
    upstream = ConnectionSettings.from_env().urls[0]
    with running_proxy(upstream, certs, user="admin", password=PASSWORD, require_client_cert=True) as mtls:
        base = _settings(mtls, ca_certs=str(certs.ca), max_retries=0)
        with pytest.raises(EngineError, match="--client-cert and --client-key"):
            connect(base)
        with_cert = ConnectionSettings(
            urls=base.urls, username="admin", password=PASSWORD, ca_certs=str(certs.ca),
            client_cert=str(certs.client_cert), client_key=str(certs.client_key),
        )  # fmt: skip
        assert connect(with_cert).info()["version"]["number"]


def test_config_file_drives_the_cli(proxy: SecuredProxy, tmp_path: Path) -> None:
    config = tmp_path / "splade-os.toml"
    config.write_text(
        f'[opensearch]\nurl = "{proxy.url}"\nuser = "admin"\npassword = "{PASSWORD}"\nca_certs = "{proxy.certs.ca}"\n'
    )
    result = _run(["doctor", "--config", str(config)], env={})
    assert result.exit_code == 0, result.output
    assert f"{proxy.url} (basic auth as admin, TLS verified with CA {proxy.certs.ca})" in result.output


def _run(args: list[str], env: dict[str, str]) -> Result:
    # None unsets what the test runner's environment may hold, so only what a test passes counts.
    base = {var: None for var in ("OPENSEARCH_URL", "OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD", "SPLADE_OS_CONFIG",
                                  "OPENSEARCH_CA_CERTS", "OPENSEARCH_API_KEY")}  # fmt: skip
    return CliRunner().invoke(main, args, env={**base, **env}, catch_exceptions=True)


def _assert_secret_kept(result: Result, caplog: pytest.LogCaptureFixture, what: str) -> None:
    texts = [result.stdout, result.stderr, caplog.text]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        texts.append("".join(traceback.format_exception(result.exception)))
        pytest.fail(f"{what} raised instead of printing one line: {texts[-1]}")
    for text in texts:
        assert PASSWORD not in text, f"{what} printed the password: {text}"


def _commands(corpus: Path, alias: str, tmp: Path) -> list[list[str]]:
    return [
        ["index", str(corpus / "corpus.jsonl"), "--index", alias, "--model", MODEL, "--replicas", "0",
         "--dead-letter", str(tmp / "dl.jsonl"), "--checkpoint", str(tmp / "cp.json")],
        ["alias", alias],
        ["search", "secure tls cluster", "--index", alias, "--model", MODEL, "--explain"],
        ["reindex", alias, "--from-index", "--model", MODEL, "--replicas", "0", "--delete-previous",
         "--dead-letter", str(tmp / "dl2.jsonl")],
        ["stats", alias, "--model", MODEL],
        ["doctor", "--index", alias, "--model", MODEL],
        ["eval", str(corpus), "--model", MODEL, "--index", alias, "--mode", "splade"],
    ]  # fmt: skip


def test_every_command_keeps_the_password_secret(
    proxy: SecuredProxy, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the client's own request logs must not carry it either
    alias = f"test-secured-{uuid.uuid4().hex[:8]}"
    tls = ["--url", proxy.url, "--ca-certs", str(proxy.certs.ca), "--user", "admin"]
    try:
        for args in _commands(corpus, alias, tmp_path):
            result = _run([*args, *tls, "--password", PASSWORD], env={})
            _assert_secret_kept(result, caplog, args[0])
            assert result.exit_code == 0, f"{args[0]} over TLS failed: {result.output}"
        # Wrong password from the environment: refused, one line, and neither password shows.
        wrong = {"OPENSEARCH_PASSWORD": PASSWORD + "-wrong", "OPENSEARCH_USERNAME": "admin"}
        for args in _commands(corpus, alias, tmp_path):
            result = _run([*args, "--url", proxy.url, "--ca-certs", str(proxy.certs.ca)], env=wrong)
            _assert_secret_kept(result, caplog, args[0])
            assert result.exit_code == 1, f"{args[0]} accepted a wrong password: {result.output}"
            assert "refused the credentials (401)" in result.output
            if args[0] != "doctor":  # doctor prints its checklist; the others one line
                assert result.stderr.count("\n") == 1, result.stderr
        # Commands that never connect still see the password in their environment.
        queries = corpus / "queries.jsonl"
        for args in (["encode", str(queries), "--queries", "--model", MODEL], ["node", "status", "--port", "1"],
                     ["export", "/no/such/model", str(tmp_path / "out")]):  # fmt: skip
            result = _run(args, env={"OPENSEARCH_PASSWORD": PASSWORD, "OPENSEARCH_USERNAME": "admin"})
            _assert_secret_kept(result, caplog, args[0])
    finally:
        admin = connect(_settings(proxy, ca_certs=str(proxy.certs.ca)))
        admin.indices.delete(index=f"{alias}*", ignore_unavailable=True, allow_no_indices=True)
        admin.indices.delete(index=f"eval-{corpus.name}*", ignore_unavailable=True, allow_no_indices=True)
