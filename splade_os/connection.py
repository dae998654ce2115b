"""Connection settings for the cluster (OpenSearch or Elasticsearch), resolved in one place: flag, then environment
(`OPENSEARCH_*`, then the Elasticsearch-style `ELASTICSEARCH_*`/`ELASTIC_*`), then config file, then default.
Secrets (password, API key, credentials inside a URL) never reach `repr`, errors or output: every secret a settings
object holds is registered with `redact`, which the CLI applies to each line it prints.

Plain settings: `engines.clients` builds the clients from them (`connect(settings)`, `client_for(settings)`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from splade_os import _moved
from splade_os.errors import ConfigError, MissingDependencyError
from splade_os.redaction import register_secret

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
        register_secret(self.password)
        register_secret(self.api_key)

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
        methods = [
            m
            for m, on in (("basic auth", self.username), ("an API key", self.api_key), ("AWS SigV4", self.aws_region))
            if on
        ]
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
    register_secret(unquote(password))
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


def __getattr__(name: str) -> Any:
    # `connect` and `describe_error` build and describe clients, which engines/ does: the old names still resolve.
    return _moved.moved_name(__name__, name)
