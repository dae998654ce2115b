"""Connection settings for the cluster (OpenSearch or Elasticsearch), resolved in one place: flag, then environment
(`OPENSEARCH_*`, then the Elasticsearch-style `ELASTICSEARCH_*`/`ELASTIC_*`), then config file, then default.
Secrets (password, API key, credentials inside a URL) never reach `repr`, errors or output: every secret a settings
object holds is registered with `redact`, which the CLI applies to each line it prints.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from splade_os.engines.refusals import refused_line
from splade_os.errors import ConfigError, EngineError, MissingDependencyError

DEFAULT_URL = "http://127.0.0.1:9200"
CONFIG_ENV = "SPLADE_OS_CONFIG"

# Environment variable of each setting; the CLI flags use the same names through click's `envvar=`.
ENV_VARS: dict[str, str] = {
    "urls": "OPENSEARCH_URL",
    "username": "OPENSEARCH_USERNAME",
    "password": "OPENSEARCH_PASSWORD",
    "api_key": "OPENSEARCH_API_KEY",
    "ca_certs": "OPENSEARCH_CA_CERTS",
    "verify_certs": "OPENSEARCH_VERIFY_CERTS",
    "client_cert": "OPENSEARCH_CLIENT_CERT",
    "client_key": "OPENSEARCH_CLIENT_KEY",
    "aws_region": "OPENSEARCH_AWS_REGION",
    "aws_service": "OPENSEARCH_AWS_SERVICE",
    "timeout": "OPENSEARCH_TIMEOUT",
    "max_retries": "OPENSEARCH_MAX_RETRIES",
    "pool_maxsize": "OPENSEARCH_POOL_MAXSIZE",
    "engine": "SPLADE_OS_ENGINE",
    "cloud_id": "ELASTIC_CLOUD_ID",
    "ssl_assert_fingerprint": "ELASTICSEARCH_SSL_FINGERPRINT",
}
# Read when the OPENSEARCH_* variable of the same setting is not set: what Elasticsearch users already export.
ELASTIC_ENV_VARS: dict[str, tuple[str, ...]] = {
    "urls": ("ELASTICSEARCH_URL", "ELASTICSEARCH_HOSTS"),
    "username": ("ELASTICSEARCH_USERNAME", "ELASTIC_USERNAME"),
    "password": ("ELASTICSEARCH_PASSWORD", "ELASTIC_PASSWORD"),
    "api_key": ("ELASTICSEARCH_API_KEY", "ELASTIC_API_KEY"),
    "ca_certs": ("ELASTICSEARCH_CA_CERTS", "ELASTICSEARCH_CA_CERT"),
}
_FILE_ALIASES = {"url": "urls", "user": "username"}
_PATH_KEYS = ("ca_certs", "client_cert", "client_key")

_SECRETS: set[str] = set()
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """`text` with every secret this process was given, and any `user:pass@` in a URL, replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(r"\1***@", text)


def _register_secret(value: str | None) -> None:
    if value and len(value) >= 3:  # a one- or two-character "secret" would blank out ordinary text
        _SECRETS.add(value)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the cluster is and how to reach it. `password` and `api_key` never appear in `repr`.

    Authentication is one of: basic auth (`username`/`password`), an API key, or AWS SigV4 (`aws_region` set; the
    credentials come from boto3's usual chain). Credentials written into a URL move to `username`/`password`.
    """

    urls: tuple[str, ...] = (DEFAULT_URL,)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    aws_region: str | None = None
    aws_service: str = "es"  # "aoss" for OpenSearch Serverless
    timeout: float = 30.0
    max_retries: int = 3
    pool_maxsize: int = 10  # open connections kept per node: at least the number of threads sharing one client
    engine: str | None = None  # "opensearch" or "elasticsearch"; None: ask the cluster
    cloud_id: str | None = None  # Elastic Cloud deployment id (instead of URLs)
    ssl_assert_fingerprint: str | None = None  # SHA-256 of the server certificate, pinned (Elasticsearch)

    def __post_init__(self) -> None:
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        clean: list[str] = []
        for url in urls:
            url, user, password = _split_userinfo(url)
            clean.append(url)
            if user and not self.username:
                object.__setattr__(self, "username", user)
            if password and not self.password:
                object.__setattr__(self, "password", password)
        object.__setattr__(self, "urls", tuple(clean))
        _register_secret(self.password)
        _register_secret(self.api_key)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, config: str | Path | None = None, **overrides: Any
    ) -> ConnectionSettings:
        """Settings from explicit non-None `overrides`, then `OPENSEARCH_*` variables, then the TOML config file
        (`config`, else `$SPLADE_OS_CONFIG`), then the defaults."""
        env = os.environ if env is None else env
        path = config or env.get(CONFIG_ENV)
        values: dict[str, Any] = load_config(path) if path else {}
        values.update(_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown connection setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.urls:
            raise ConfigError("no cluster URL given: pass --url or set OPENSEARCH_URL (or ELASTICSEARCH_URL)")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"cluster URL {url!r} must start with http:// or https://")
        if self.password and not self.username:
            raise ConfigError("a password was given without a user name: set OPENSEARCH_USERNAME or --user")
        methods = [m for m, on in (("basic auth", self.username), ("an API key", self.api_key),
                                   ("AWS SigV4", self.aws_region)) if on]  # fmt: skip
        if len(methods) > 1:
            raise ConfigError(f"pick one way to authenticate, not {' and '.join(methods)}")
        if self.client_key and not self.client_cert:
            raise ConfigError("--client-key was given without --client-cert")
        for name in _PATH_KEYS:
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{name.replace('_', '-')} file {path} does not exist")
        if self.pool_maxsize < 1:
            raise ConfigError("the connection pool size must be at least 1")
        if self.timeout <= 0 or self.max_retries < 0:
            raise ConfigError("the request timeout must be positive and retries not negative")
        if self.aws_service not in ("es", "aoss"):
            raise ConfigError(f"AWS service must be 'es' (managed) or 'aoss' (serverless), not {self.aws_service!r}")
        if self.engine not in (None, "opensearch", "elasticsearch"):
            raise ConfigError(f"unknown engine {self.engine!r}: use opensearch or elasticsearch (SPLADE_OS_ENGINE)")
        if self.engine == "opensearch" and (self.cloud_id or self.ssl_assert_fingerprint):
            raise ConfigError("an Elastic Cloud id and a certificate fingerprint are Elasticsearch settings")
        if self.engine == "elasticsearch" and self.aws_region:
            raise ConfigError("AWS SigV4 signing is for Amazon OpenSearch Service, not Elasticsearch")

    def client(self) -> Any:
        """A client of the cluster's engine: `--engine`/`SPLADE_OS_ENGINE` when given, else asked from the cluster.

        Asking costs the one request (`GET /`) that a first connection makes anyway: its answer (or failure) is
        remembered, so `engines.engine_for` on the returned client sends nothing more.
        """
        from splade_os.engines import OpenSearchEngine, parse_version, remember, remember_failure

        if self.engine == "elasticsearch" or (self.engine is None and (self.cloud_id or self.ssl_assert_fingerprint)):
            return self.elasticsearch_client()
        if self.engine == "opensearch" or self.aws_region:
            return self.opensearch_client()
        probe = self.opensearch_client()
        try:
            info = probe.info()
        except os_errors.TransportError as err:
            if err.status_code == 405:  # OpenSearch always answers GET /; the Elasticsearch integ-test node does not
                probe.close()
                return self.elasticsearch_client()
            remember_failure(probe, err)  # unreachable or refused: the caller's first engine lookup reports it
            return probe
        version = info.get("version", {}) if isinstance(info, Mapping) else {}
        if version.get("distribution") == "opensearch":
            remember(probe, OpenSearchEngine(version=parse_version(version.get("number", "0"))))
            return probe
        probe.close()
        return self.elasticsearch_client()

    def opensearch_client(self, **overrides: Any) -> OpenSearch:
        kwargs = {**self._client_kwargs(), **overrides}
        if self.aws_region:
            from opensearchpy import Urllib3AWSV4SignerAuth

            kwargs["http_auth"] = Urllib3AWSV4SignerAuth(_aws_credentials(), self.aws_region, self.aws_service)
        return OpenSearch(**kwargs)

    def elasticsearch_client(self, *, asynchronous: bool = False) -> Any:
        """The official Elasticsearch client (`pip install 'splade-os[elasticsearch]'`), sync or asyncio."""
        from splade_os.engines.elasticsearch import import_client

        es = import_client()
        kwargs: dict[str, Any] = {
            "request_timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_on_timeout": True,
            "connections_per_node": self.pool_maxsize,
        }
        if self.cloud_id:
            kwargs["cloud_id"] = self.cloud_id
        else:
            kwargs["hosts"] = list(self.urls)
        if any(u.startswith("https://") for u in self.urls) or self.cloud_id:
            kwargs.update(verify_certs=self.verify_certs)
            if self.ca_certs:
                kwargs["ca_certs"] = self.ca_certs
            if self.ssl_assert_fingerprint:
                kwargs["ssl_assert_fingerprint"] = self.ssl_assert_fingerprint
            if self.client_cert:
                kwargs.update(client_cert=self.client_cert, client_key=self.client_key)
            if not self.verify_certs:
                kwargs["ssl_show_warn"] = False
        if self.username:
            kwargs["basic_auth"] = (self.username, self.password or "")
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if asynchronous:
            try:
                import aiohttp  # noqa: F401  (AsyncElasticsearch fails late without it)
            except ImportError:
                raise MissingDependencyError("the async client needs aiohttp: pip install 'splade-os[async]'") from None
            return es.AsyncElasticsearch(**kwargs)
        return es.Elasticsearch(**kwargs)

    def async_client(self) -> Any:
        """An asyncio client of the cluster's engine (needs aiohttp: `pip install 'splade-os[async]'`)."""
        engine = self.engine
        if engine is None:  # ask with a synchronous client: an asyncio client cannot be used outside its loop
            probe = self.client()
            engine = "elasticsearch" if type(probe).__module__.startswith("elasticsearch") else "opensearch"
            probe.close()
        if engine == "elasticsearch":
            return self.elasticsearch_client(asynchronous=True)
        try:
            import aiohttp  # noqa: F401  (AsyncOpenSearch fails late without it)
            from opensearchpy import AsyncOpenSearch
        except ImportError:
            raise MissingDependencyError("the async searcher needs aiohttp: pip install 'splade-os[async]'") from None
        kwargs = self._client_kwargs()
        if self.aws_region:
            from opensearchpy import AWSV4SignerAsyncAuth

            kwargs["http_auth"] = AWSV4SignerAsyncAuth(_aws_credentials(), self.aws_region, self.aws_service)
        return AsyncOpenSearch(**kwargs)

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hosts": list(self.urls),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "pool_maxsize": self.pool_maxsize,
            "retry_on_timeout": True,
        }
        if any(u.startswith("https://") for u in self.urls):
            kwargs.update(use_ssl=True, verify_certs=self.verify_certs, ca_certs=self.ca_certs)
            if self.client_cert:
                kwargs.update(client_cert=self.client_cert, client_key=self.client_key)
            if not self.verify_certs:
                kwargs["ssl_show_warn"] = False
        if self.username:
            kwargs["http_auth"] = (self.username, self.password or "")
        if self.api_key:
            kwargs["headers"] = {"Authorization": f"ApiKey {self.api_key}"}
        return kwargs

    def describe(self) -> str:
        """One line for output: where and how, never the secret itself."""
        how = "no authentication"
        where = ", ".join(self.urls)
        if self.cloud_id:
            where = f"Elastic Cloud {self.cloud_id.split(':')[0]}"
        if self.username:
            how = f"basic auth as {self.username}"
        elif self.api_key:
            how = "API key"
        elif self.aws_region:
            how = f"AWS SigV4 ({self.aws_service}, {self.aws_region})"
        tls = ""
        if any(u.startswith("https://") for u in self.urls):
            tls = ", TLS " + ("verified" if self.verify_certs else "NOT verified")
            tls += f" with CA {self.ca_certs}" if self.ca_certs and self.verify_certs else ""
            tls += ", client certificate" if self.client_cert else ""
            tls += ", pinned certificate" if self.ssl_assert_fingerprint else ""
        return f"{where} ({how}{tls})"

    def with_urls(self, *urls: str) -> ConnectionSettings:
        return replace(self, urls=tuple(urls))


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """`https://user:pw@host/` -> (`https://host/`, user, pw): credentials must not travel inside a URL."""
    parts = urlsplit(url.strip())
    if "@" not in parts.netloc:
        return url.strip(), None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    _register_secret(unquote(password))
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None, unquote(password) or None


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _coerce(key: str, value: Any, where: str) -> Any:
    try:
        if key == "urls":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(u).strip() for u in items if str(u).strip())
        if key == "verify_certs":
            return _parse_bool(where, value)
        if key == "timeout":
            return float(value)
        if key in ("max_retries", "pool_maxsize"):
            return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has an invalid value for {key}") from None
    return str(value)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, names in ELASTIC_ENV_VARS.items():
        for var in reversed(names):  # the first name wins
            if env.get(var):
                values[key] = _coerce(key, env[var], var)
    values.update({key: _coerce(key, env[var], var) for key, var in ENV_VARS.items() if env.get(var)})
    return values


def load_config(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: keys at the top level or under `[opensearch]`, named like the fields of
    `ConnectionSettings` (`url` and `user` also accepted). Relative certificate paths are read from the file's
    folder."""
    path = Path(path)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - only on Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise MissingDependencyError("TOML on Python 3.10 needs tomli: pip install tomli") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (from --config or ${CONFIG_ENV})") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        # The decoder's message names a line and column, never the text, so no secret can leak through it.
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    table = data.get("opensearch", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [opensearch] must be a table")
    values: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = _FILE_ALIASES.get(raw_key, raw_key)
        if key not in ENV_VARS:
            raise ConfigError(f"config file {path}: unknown key {raw_key!r} (known: {', '.join(sorted(ENV_VARS))})")
        values[key] = _coerce(key, value, f"config file {path}")
        if key in _PATH_KEYS and not Path(values[key]).is_absolute():
            values[key] = str(path.parent / values[key])
    return values


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


def describe_error(err: BaseException, settings: ConnectionSettings | None = None) -> str:
    """One line that says what went wrong talking to the cluster and what to do; secrets redacted."""
    where = ", ".join(settings.urls) if settings else "the cluster"
    line = _describe_elasticsearch(err, where)
    if line is not None:
        return redact(line)
    if isinstance(err, os_errors.AuthenticationException):
        line = _refused_credentials(where)
    elif isinstance(err, os_errors.AuthorizationException):
        line = refused_line(where, _reason(err))
    elif isinstance(err, os_errors.SSLError):
        line = _tls_advice(where, _cause(err))
    elif isinstance(err, os_errors.ConnectionTimeout):
        line = f"{where} did not answer in time: check the URL, or raise --request-timeout"
    elif isinstance(err, os_errors.ConnectionError):
        line = _unreachable(where, _cause(err))
    elif isinstance(err, os_errors.NotFoundError):
        line = f"not found: {_reason(err)}"
    elif isinstance(err, os_errors.TransportError):
        line = f"the cluster answered {err.status_code}: {_reason(err)}"
    else:
        line = f"{type(err).__name__}: {err}"
    return redact(line)


def _refused_credentials(where: str) -> str:
    return (f"{where} refused the credentials (401): check --user/--password (OPENSEARCH_USERNAME/"
            "OPENSEARCH_PASSWORD or ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD), --api-key or the AWS "
            "credentials")  # fmt: skip


def _unreachable(where: str, cause: str) -> str:
    return (f"cannot reach the cluster at {where} ({cause}): check the URL, start a node with "
            "`splade-os node start`, or set OPENSEARCH_URL (or ELASTICSEARCH_URL)")  # fmt: skip


def _describe_elasticsearch(err: BaseException, where: str) -> str | None:
    """The same lines for the official Elasticsearch client's errors; None for anything else."""
    if type(err).__module__.split(".")[0] not in ("elasticsearch", "elastic_transport"):
        return None
    import elastic_transport
    import elasticsearch

    if isinstance(err, elasticsearch.UnsupportedProductError):
        return f"{where} is not Elasticsearch: pass --engine opensearch (SPLADE_OS_ENGINE=opensearch)"
    if isinstance(err, elastic_transport.TlsError):
        return _tls_advice(where, _cause_of(str(err)))
    if isinstance(err, elastic_transport.ConnectionTimeout):
        return f"{where} did not answer in time: check the URL, or raise --request-timeout"
    if isinstance(err, elastic_transport.ConnectionError):
        return _unreachable(where, _cause_of(str(err)))
    if isinstance(err, elasticsearch.ApiError):
        status, reason = err.meta.status, _body_reason(err.body) or str(err.message)
        if status == 401:
            return _refused_credentials(where)
        if status == 403:
            return refused_line(where, reason)
        if status == 404:
            return f"not found: {reason}"
        return f"the cluster answered {status}: {reason}"
    return f"{type(err).__name__}: {err}"


def _body_reason(body: Any) -> str:
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        root = (error.get("root_cause") or [error])[0]
        return f"{root.get('type')}: {root.get('reason')}"
    return ""


def _tls_advice(where: str, cause: str) -> str:
    if cause == "WRONG_VERSION":
        return f"{where} does not speak TLS: use an http:// URL, or turn TLS on in the cluster"
    if cause in ("CERTIFICATE_VERIFY_FAILED", "hostname"):
        return (f"TLS verification of {where} failed ({cause}): pass the cluster's CA bundle with --ca-certs "
                "(OPENSEARCH_CA_CERTS), or --insecure to skip verification while testing")  # fmt: skip
    return (f"TLS handshake with {where} failed ({cause}): if the cluster requires a client certificate, pass "
            "--client-cert and --client-key; check --ca-certs")  # fmt: skip


def _reason(err: os_errors.TransportError) -> str:
    info = err.info if isinstance(err.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        root = (error.get("root_cause") or [error])[0]
        return f"{root.get('type')}: {root.get('reason')}"
    return str(err.error)


def _cause(err: os_errors.TransportError) -> str:
    # The transport wraps urllib3's error; its class name says enough (refused, name not known, cert verify).
    cause = err.info if isinstance(err.info, BaseException) else None
    return _cause_of(str(cause or err.error), type(cause).__name__ if cause else str(err.error))


def _cause_of(text: str, fallback: str | None = None) -> str:
    for hint in ("CERTIFICATE_VERIFY_FAILED", "Connection refused", "Name or service not known", "WRONG_VERSION",
                 "timed out", "certificate required", "hostname", "EOF occurred", "fingerprint"):  # fmt: skip
        if hint.lower() in text.lower():
            return hint
    return fallback if fallback is not None else text[:200]


def connect(settings: ConnectionSettings | None = None) -> Any:
    """A client of the cluster's engine, checked to answer (its engine and version are then known); raises
    EngineError with what to do when it does not."""
    from splade_os.engines import engine_for

    settings = settings or ConnectionSettings.from_env()
    client = settings.client()
    try:
        engine_for(client)
    except Exception as err:  # the clients raise many types; the user needs one clear line
        client.close()
        raise EngineError(describe_error(err, settings)) from None
    return client
