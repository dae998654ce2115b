"""What real secured nodes cannot test here, through a TLS proxy in front of the plain test node: API keys and
client certificates.

tests/test_secured_nodes.py runs every command against real secured nodes (OpenSearch with its security plugin,
Elasticsearch with x-pack security): TLS, basic auth, roles, 401 and 403. Neither can test the rest: native API keys
cannot be created on Elasticsearch's integ-test distribution (its `.security` index needs an analysis module that
is not published) and the OpenSearch demo setup has none, and neither node is set up to require client
certificates. So the proxy (tests/secured_proxy.py) checks the `Authorization: ApiKey ...` header splade-os sends,
and a second proxy requires a client certificate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch
from secured_proxy import Certs, SecuredProxy, make_certs, running_proxy

from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import connect
from splade_os.errors import EngineError

pytestmark = [pytest.mark.engine, pytest.mark.opensearch_only]

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


def _settings(proxy: SecuredProxy, **kwargs: object) -> ConnectionSettings:
    values: dict[str, object] = {"urls": (proxy.url,), "username": "admin", "password": PASSWORD}
    values.update(kwargs)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def test_api_key(proxy: SecuredProxy) -> None:
    settings = ConnectionSettings(urls=(proxy.url,), api_key=API_KEY, ca_certs=str(proxy.certs.ca))
    assert connect(settings).info()["version"]["number"]
    with pytest.raises(EngineError, match="401"):
        connect(ConnectionSettings(urls=(proxy.url,), api_key="wrong-key", ca_certs=str(proxy.certs.ca)))
    env = {
        "OPENSEARCH_URL": proxy.url,
        "OPENSEARCH_CA_CERTS": str(proxy.certs.ca),
        "OPENSEARCH_USERNAME": None,
        "OPENSEARCH_PASSWORD": None,
        "SPLADE_OS_CONFIG": None,
    }
    for key, code, says in ((API_KEY, 0, "(API key, TLS verified"), (API_KEY + "-wrong", 1, "credentials (401)")):
        result = CliRunner().invoke(main, ["doctor"], env={**env, "OPENSEARCH_API_KEY": key})
        assert result.exit_code == code and says in result.output, result.output
        assert key not in result.output


def test_client_certificate(engine_client: OpenSearch, certs: Certs) -> None:
    upstream = ConnectionSettings.from_env().urls[0]
    with running_proxy(upstream, certs, user="admin", password=PASSWORD, require_client_cert=True) as mtls:
        base = _settings(mtls, ca_certs=str(certs.ca), max_retries=0)
        with pytest.raises(EngineError, match="--client-cert and --client-key"):
            connect(base)
        with_cert = ConnectionSettings(
            urls=base.urls,
            username="admin",
            password=PASSWORD,
            ca_certs=str(certs.ca),
            client_cert=str(certs.client_cert),
            client_key=str(certs.client_key),
        )
        assert connect(with_cert).info()["version"]["number"]
