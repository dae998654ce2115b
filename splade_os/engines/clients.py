"""Connecting: clients built from `ConnectionSettings` (opensearch-py's for OpenSearch, the official client for
Elasticsearch, sync or asyncio), and the one place that asks a cluster which engine it runs when the settings do
not say."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from splade_os.connection import ConnectionSettings
from splade_os.engines import OpenSearchEngine, engine_for, is_elasticsearch, parse_version, remember, remember_failure
from splade_os.engines.errors import describe_error
from splade_os.errors import ConfigError, EngineError, MissingDependencyError


def client_for(settings: ConnectionSettings) -> Any:
    """A client of the cluster's engine: `--engine`/`SPLADE_OS_ENGINE` when given, else asked from the cluster.

    Asking costs the one request (`GET /`) that a first connection makes anyway: its answer (or failure) is
    remembered, so `engines.engine_for` on the returned client sends nothing more.
    """
    elastic_only = settings.cloud_id or settings.ssl_assert_fingerprint
    if settings.engine == "elasticsearch" or (settings.engine is None and elastic_only):
        return elasticsearch_client(settings)
    if settings.engine == "opensearch" or settings.aws_region:
        return opensearch_client(settings)
    probe = opensearch_client(settings)
    try:
        info = probe.info()
    except os_errors.TransportError as err:
        if err.status_code == 405:  # OpenSearch always answers GET /; the Elasticsearch integ-test node does not
            probe.close()
            return elasticsearch_client(settings)
        remember_failure(probe, err)  # unreachable or refused: the caller's first engine lookup reports it
        return probe
    version = info.get("version", {}) if isinstance(info, Mapping) else {}
    if version.get("distribution") == "opensearch":
        remember(probe, OpenSearchEngine(version=parse_version(version.get("number", "0"))))
        return probe
    probe.close()
    return elasticsearch_client(settings)


def opensearch_client(settings: ConnectionSettings, **overrides: Any) -> OpenSearch:
    kwargs = {**_opensearch_kwargs(settings), **overrides}
    if settings.aws_region:
        from opensearchpy import Urllib3AWSV4SignerAuth

        kwargs["http_auth"] = Urllib3AWSV4SignerAuth(_aws_credentials(), settings.aws_region, settings.aws_service)
    return OpenSearch(**kwargs)


def elasticsearch_client(settings: ConnectionSettings, *, asynchronous: bool = False) -> Any:
    """The official Elasticsearch client (`pip install 'splade-os[elasticsearch]'`), sync or asyncio."""
    from splade_os.engines.elasticsearch import import_client

    es = import_client()
    kwargs: dict[str, Any] = {
        "request_timeout": settings.timeout,
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "connections_per_node": settings.pool_maxsize,
    }
    if settings.cloud_id:
        kwargs["cloud_id"] = settings.cloud_id
    else:
        kwargs["hosts"] = list(settings.urls)
    if any(u.startswith("https://") for u in settings.urls) or settings.cloud_id:
        kwargs.update(_tls_kwargs(settings))
        if settings.ssl_assert_fingerprint:
            kwargs["ssl_assert_fingerprint"] = settings.ssl_assert_fingerprint
    if settings.username:
        kwargs["basic_auth"] = (settings.username, settings.password or "")
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    if asynchronous:
        try:
            import aiohttp  # noqa: F401  (AsyncElasticsearch fails late without it)
        except ImportError:
            raise MissingDependencyError("the async client needs aiohttp: pip install 'splade-os[async]'") from None
        return es.AsyncElasticsearch(**kwargs)
    return es.Elasticsearch(**kwargs)


def async_client(settings: ConnectionSettings) -> Any:
    """An asyncio client of the cluster's engine (needs aiohttp: `pip install 'splade-os[async]'`)."""
    engine = settings.engine
    if engine is None:  # ask with a synchronous client: an asyncio client cannot be used outside its loop
        probe = client_for(settings)
        engine = "elasticsearch" if is_elasticsearch(probe) else "opensearch"
        probe.close()
    if engine == "elasticsearch":
        return elasticsearch_client(settings, asynchronous=True)
    try:
        import aiohttp  # noqa: F401  (AsyncOpenSearch fails late without it)
        from opensearchpy import AsyncOpenSearch
    except ImportError:
        raise MissingDependencyError("the async searcher needs aiohttp: pip install 'splade-os[async]'") from None
    kwargs = _opensearch_kwargs(settings)
    if settings.aws_region:
        from opensearchpy import AWSV4SignerAsyncAuth

        kwargs["http_auth"] = AWSV4SignerAsyncAuth(_aws_credentials(), settings.aws_region, settings.aws_service)
    return AsyncOpenSearch(**kwargs)


def _opensearch_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "hosts": list(settings.urls),
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
        "pool_maxsize": settings.pool_maxsize,
        "retry_on_timeout": True,
    }
    if any(u.startswith("https://") for u in settings.urls):
        kwargs.update(use_ssl=True, **_tls_kwargs(settings))
    if settings.username:
        kwargs["http_auth"] = (settings.username, settings.password or "")
    if settings.api_key:
        kwargs["headers"] = {"Authorization": f"ApiKey {settings.api_key}"}
    return kwargs


def _tls_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    """Certificate verification, the CA and a client certificate: the same keywords in both clients."""
    kwargs: dict[str, Any] = {"verify_certs": settings.verify_certs}
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.client_cert:
        kwargs.update(client_cert=settings.client_cert, client_key=settings.client_key)
    if not settings.verify_certs:
        kwargs["ssl_show_warn"] = False
    return kwargs


def _aws_credentials() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingDependencyError("AWS SigV4 signing needs boto3: pip install 'splade-os[aws]'") from None
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ConfigError(
            "AWS SigV4 was asked for (--aws-region) but boto3 found no AWS credentials: set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    return credentials


def connect(settings: ConnectionSettings | None = None) -> Any:
    """A client of the cluster's engine, checked to answer (its engine and version are then known); raises
    EngineError with what to do when it does not. Settings default to the environment's."""
    settings = settings or ConnectionSettings.from_env()
    client = client_for(settings)
    try:
        engine_for(client)
    except Exception as err:  # the clients raise many types; the user needs one clear line
        client.close()
        raise EngineError(describe_error(err, settings)) from None
    return client


def client_hosts(client: Any) -> list[str]:
    """The nodes a client was given, as `scheme://host:port/prefix`, sorted, never with credentials: what names
    the cluster on this machine (the state folder of its loads)."""
    if is_elasticsearch(client):
        nodes = [f"{n.scheme}://{n.host}:{n.port}{n.path_prefix}" for n in client.transport.node_pool.all()]
    else:
        nodes = []
        for host in client.transport.hosts or ():
            scheme = "https" if host.get("use_ssl") or host.get("scheme") == "https" else "http"
            nodes.append(f"{scheme}://{host.get('host')}:{host.get('port')}{host.get('url_prefix') or ''}")
    return sorted(set(nodes))
