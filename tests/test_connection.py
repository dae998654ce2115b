"""Connection settings without a node: precedence, the config file, secrets kept out of text, error lines."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from opensearchpy import exceptions as os_errors

from splade_os.cli.options import cli_errors, connection_options
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import _opensearch_kwargs, client_for
from splade_os.engines.errors import describe_error
from splade_os.engines.refusals import refused_line
from splade_os.errors import ConfigError, EngineError, MissingDependencyError
from splade_os.redaction import redact

SECRET = "s3cr3t-unit-9f2c"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "os.toml"
    config.write_text('[opensearch]\nurl = "https://file:9200"\nuser = "file-user"\ntimeout = 5\nmax_retries = 7\n')
    env = {"OPENSEARCH_URL": "https://env:9200", "OPENSEARCH_TIMEOUT": "9", "SPLADE_OS_CONFIG": str(config)}
    from_file_and_env = ConnectionSettings.from_env(env)
    assert from_file_and_env.urls == ("https://env:9200",)  # env beats file
    assert from_file_and_env.username == "file-user"  # only the file sets it
    assert from_file_and_env.timeout == 9.0 and from_file_and_env.max_retries == 7
    flagged = ConnectionSettings.from_env(env, urls=("https://flag:9200",), timeout=1.5)
    assert flagged.urls == ("https://flag:9200",) and flagged.timeout == 1.5
    assert ConnectionSettings.from_env({}) == ConnectionSettings()  # defaults


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = tmp_path / "os.toml"
    config.write_text('urls = ["https://a:9200", "https://b:9200"]\nca_certs = "ca.pem"\nverify_certs = true\n')
    settings = ConnectionSettings.from_env({}, config=config)
    assert settings.urls == ("https://a:9200", "https://b:9200")
    assert settings.ca_certs == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("urls = [", "is not valid TOML"),
        ('pasword = "x"', "unknown key 'pasword'"),
        ("timeout = 'soon'", "invalid value for timeout"),
    ],
)
def test_bad_config_file_says_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "os.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        ConnectionSettings.from_env({}, config=config)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="config file /nonexistent.toml does not exist"):
        ConnectionSettings.from_env({"SPLADE_OS_CONFIG": "/nonexistent.toml"})


def test_credentials_in_a_url_move_out_of_it() -> None:
    settings = ConnectionSettings.from_env({"OPENSEARCH_URL": f"https://admin:{SECRET}@db.example:9200"})
    assert settings.urls == ("https://db.example:9200",)
    assert (settings.username, settings.password) == ("admin", SECRET)
    assert SECRET not in repr(settings) and SECRET not in settings.describe()
    assert redact(f"GET https://admin:{SECRET}@db.example:9200/_search failed") == (
        "GET https://***@db.example:9200/_search failed"
    )


def test_secrets_are_not_in_repr_and_are_redacted() -> None:
    settings = ConnectionSettings(username="u", password=SECRET, urls=("https://h:1",))
    api = ConnectionSettings(api_key="k3y-" + SECRET)
    assert SECRET not in repr(settings) and SECRET not in repr(api)
    assert redact(f"header was Basic u:{SECRET} and ApiKey k3y-{SECRET}") == "header was Basic u:*** and ApiKey ***"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"urls": ("db:9200",)}, "must start with http:// or https://"),
        ({"password": "x"}, "password was given without a user name"),
        ({"username": "u", "api_key": "k"}, "pick one way to authenticate, not basic auth and an API key"),
        ({"api_key": "k", "aws_region": "eu-west-1"}, "not an API key and AWS SigV4"),
        ({"client_key": "/k.pem"}, "--client-key was given without --client-cert"),
        ({"ca_certs": "/no/ca.pem"}, "ca-certs file /no/ca.pem does not exist"),
        ({"aws_region": "eu-west-1", "aws_service": "s3"}, "AWS service must be 'es'"),
    ],
)
def test_invalid_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConnectionSettings.from_env({}, **kwargs)


def test_client_kwargs_for_tls_and_auth(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    settings = ConnectionSettings(
        urls=("https://h:9200",),
        username="u",
        password=SECRET,
        ca_certs=str(tmp_path / "ca.pem"),
        client_cert=str(tmp_path / "c.pem"),
        client_key=str(tmp_path / "k.pem"),
        timeout=4,
        max_retries=1,
    )
    kwargs = _opensearch_kwargs(settings)
    assert kwargs["use_ssl"] and kwargs["verify_certs"] is True  # verification on by default
    assert kwargs["ca_certs"].endswith("ca.pem") and kwargs["client_cert"].endswith("c.pem")
    assert kwargs["http_auth"] == ("u", SECRET) and kwargs["timeout"] == 4 and kwargs["max_retries"] == 1
    api = _opensearch_kwargs(ConnectionSettings(api_key="abc"))
    assert api["headers"] == {"Authorization": "ApiKey abc"} and "use_ssl" not in api


def test_sigv4_needs_boto3_or_signs_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ConnectionSettings(urls=("https://search-x.eu-west-1.es.amazonaws.com",), aws_region="eu-west-1")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "boto3", None)  # as if not installed
        with pytest.raises(MissingDependencyError, match=r"pip install 'splade-os\[aws\]'"):
            client_for(settings)
    if importlib.util.find_spec("boto3") is None:
        return
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    auth = client_for(settings).transport.kwargs["http_auth"]
    signed = auth("GET", "https://search-x.eu-west-1.es.amazonaws.com/", None)
    assert signed["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/es/aws4_request" in signed["Authorization"] and SECRET not in str(signed)


def test_describe_error_gives_one_actionable_line() -> None:
    settings = ConnectionSettings(urls=("https://h:9200",), username="u", password=SECRET)
    cases = [
        (os_errors.AuthenticationException(401, "security_exception", {}), "refused the credentials (401)"),
        (os_errors.SSLError("N/A", "CERTIFICATE_VERIFY_FAILED", None), "pass the cluster's CA bundle with --ca-certs"),
        (os_errors.SSLError("N/A", "[SSL: WRONG_VERSION_NUMBER]", None), "does not speak TLS: use an http:// URL"),
        (os_errors.ConnectionError("N/A", "Connection refused", None), "cannot reach the cluster at https://h:9200"),
        (os_errors.NotFoundError(404, "index_not_found_exception", {}), "not found"),
    ]
    for err, message in cases:
        line = describe_error(err, settings)
        assert message in line and "\n" not in line and SECRET not in line


def test_cli_errors_redacts_what_a_library_error_carries() -> None:
    ConnectionSettings(username="u", password=SECRET)  # registers the secret, as every command does

    @click.command()
    def leaky() -> None:
        with cli_errors():
            raise EngineError(f"request to https://u:{SECRET}@h:9200 failed, auth {SECRET}")

    result = CliRunner().invoke(leaky)
    assert result.exit_code == 1
    assert result.output == "Error: request to https://***@h:9200 failed, auth ***\n"


def test_connection_options_resolve_flags_env_and_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('user = "from-file"\nurl = "https://file:9200"\n')
    seen: list[ConnectionSettings] = []

    @click.command()
    @connection_options
    def show(settings: ConnectionSettings) -> None:
        seen.append(settings)

    env = {"OPENSEARCH_PASSWORD": SECRET, "OPENSEARCH_URL": "https://env:9200"}
    result = CliRunner().invoke(show, ["--config", str(config), "--request-timeout", "3", "--insecure"], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.urls == ("https://env:9200",) and settings.username == "from-file" and settings.password == SECRET
    assert settings.timeout == 3.0 and settings.verify_certs is False
    result = CliRunner().invoke(show, ["--url", "db:9200"], env={})
    assert result.exit_code == 1 and result.output == (
        "Error: cluster URL 'db:9200' must start with http:// or https://\n"
    )


def test_elasticsearch_style_variables_fill_in_and_opensearch_ones_win() -> None:
    env = {
        "ELASTICSEARCH_URL": "https://es:9200",
        "ELASTIC_USERNAME": "elastic",
        "ELASTIC_PASSWORD": "pw-es-123",
        "ELASTICSEARCH_API_KEY": "",
        "ELASTIC_CLOUD_ID": "",
    }
    settings = ConnectionSettings.from_env(env)
    assert (settings.urls, settings.username, settings.password) == (("https://es:9200",), "elastic", "pw-es-123")
    assert "pw-es-123" not in redact("password pw-es-123")
    both = ConnectionSettings.from_env({**env, "OPENSEARCH_URL": "http://os:9200", "ELASTICSEARCH_USERNAME": "first"})
    assert both.urls == ("http://os:9200",) and both.username == "first"  # ELASTICSEARCH_* before ELASTIC_*
    assert ConnectionSettings.from_env({"SPLADE_OS_ENGINE": "elasticsearch"}).engine == "elasticsearch"
    with pytest.raises(ConfigError, match="unknown engine 'solr'"):
        ConnectionSettings.from_env({"SPLADE_OS_ENGINE": "solr"})
    with pytest.raises(ConfigError, match="SigV4 signing is for Amazon OpenSearch Service"):
        ConnectionSettings.from_env({"SPLADE_OS_ENGINE": "elasticsearch", "OPENSEARCH_AWS_REGION": "eu-west-1"})


FINGERPRINT = ":".join(["AB"] * 32)  # SHA-256


def test_elasticsearch_client_carries_the_settings_without_connecting() -> None:
    settings = ConnectionSettings(
        urls=("https://es:9200",),
        api_key="a2V5OnNlY3JldA==",
        ssl_assert_fingerprint=FINGERPRINT,
        engine="elasticsearch",
        timeout=12,
        max_retries=2,
        pool_maxsize=24,
    )
    client = client_for(settings)
    try:
        assert type(client).__module__.startswith("elasticsearch")
        assert client._headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        node = client.transport.node_pool.all()[0]
        assert (node.config.host, node.config.port, node.config.scheme) == ("es", 9200, "https")
        assert node.config.ssl_assert_fingerprint == FINGERPRINT and node.config.connections_per_node == 24
        assert (client._max_retries, client._request_timeout) == (2, 12)
        assert "a2V5OnNlY3JldA==" not in repr(settings) and "pinned certificate" in settings.describe()
    finally:
        client.close()
    cloud = ConnectionSettings(cloud_id="deploy:" + "ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm")
    assert cloud.describe().startswith("Elastic Cloud deploy")
    assert type(client_for(cloud)).__module__.startswith("elasticsearch")  # a cloud id means Elasticsearch, no probe


def test_describe_error_covers_the_elasticsearch_client() -> None:
    import elastic_transport
    import elasticsearch

    meta = elastic_transport.ApiResponseMeta(403, "1.1", elastic_transport.HttpHeaders(), 0.1, None)  # type: ignore[arg-type]
    reason = "action [indices:data/write/bulk] is unauthorized"
    body = {"error": {"root_cause": [{"type": "security_exception", "reason": reason}]}}
    denied = elasticsearch.AuthorizationException("denied", meta, body)
    assert describe_error(denied).startswith("the cluster refused indices:data/write/bulk (403): ")
    refused = elastic_transport.ConnectionError("Connection refused")
    assert describe_error(refused).startswith("cannot reach the cluster")
    tls = elastic_transport.TlsError("CERTIFICATE_VERIFY_FAILED")
    assert "--ca-certs" in describe_error(tls)


def test_a_refusal_names_the_action_the_user_and_what_to_add() -> None:
    es = (
        "action [indices:admin/create] is unauthorized for user [reader] with effective roles [reader] on indices "
        "[docs-v2], this action is granted by the index privileges [create_index,manage,all]"
    )
    assert refused_line("https://es:9200", es) == (
        "https://es:9200 refused indices:admin/create for user reader on docs-v2 (403): add the index privilege "
        "create_index to one of its roles (or one of manage)"
    )
    user = "User [name=reader, backend_roles=[], requestedTenant=null]"
    shard = f"no permissions for [indices:data/write/bulk[s]] and {user}"
    assert refused_line("the cluster", shard) == (
        "the cluster refused indices:data/write/bulk[s] for user reader (403): add indices:data/write/bulk* to the "
        "index_permissions of one of its roles for that index"
    )
    cluster = f"no permissions for [cluster:monitor/main] and {user}"
    fix = "add cluster:monitor/main to the cluster_permissions of one of its roles"
    assert refused_line("x", cluster).endswith(fix)
    assert refused_line("x", "something else") == (
        "x denied the request (403): the user lacks a permission it needs (something else)"
    )
