"""Connection settings for the OpenSearch cluster, resolved in one place: argument, then environment, then default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

from splade_os.errors import ConfigError, EngineError, MissingDependencyError

DEFAULT_URL = "http://127.0.0.1:9200"


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the cluster is and how to reach it. `password` and `api_key` never appear in `repr`."""

    urls: tuple[str, ...] = (DEFAULT_URL,)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 30.0
    max_retries: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConnectionSettings:
        """Settings from `OPENSEARCH_*` variables; explicit non-None overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("OPENSEARCH_URL"):
            values["urls"] = tuple(u.strip() for u in env["OPENSEARCH_URL"].split(",") if u.strip())
        for key, var in (
            ("username", "OPENSEARCH_USERNAME"),
            ("password", "OPENSEARCH_PASSWORD"),
            ("api_key", "OPENSEARCH_API_KEY"),
            ("ca_certs", "OPENSEARCH_CA_CERTS"),
        ):
            if env.get(var):
                values[key] = env[var]
        if env.get("OPENSEARCH_VERIFY_CERTS"):
            values["verify_certs"] = env["OPENSEARCH_VERIFY_CERTS"].lower() not in ("0", "false", "no")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("urls"), str):
            values["urls"] = (values["urls"],)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.urls:
            raise ConfigError("no OpenSearch URL given: pass --url or set OPENSEARCH_URL")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"OpenSearch URL {url!r} must start with http:// or https://")
        if self.password and not self.username:
            raise ConfigError("a password was given without a user name: set OPENSEARCH_USERNAME or --user")

    def client(self) -> OpenSearch:
        return OpenSearch(**self._client_kwargs())

    def async_client(self) -> Any:
        """An AsyncOpenSearch client (needs aiohttp: `pip install 'splade-os[async]'`)."""
        try:
            import aiohttp  # noqa: F401  (AsyncOpenSearch fails late without it)
            from opensearchpy import AsyncOpenSearch
        except ImportError:
            raise MissingDependencyError("the async searcher needs aiohttp: pip install 'splade-os[async]'") from None
        return AsyncOpenSearch(**self._client_kwargs())

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hosts": list(self.urls),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_on_timeout": True,
        }
        if any(u.startswith("https://") for u in self.urls):
            kwargs.update(use_ssl=True, verify_certs=self.verify_certs, ca_certs=self.ca_certs)
            if not self.verify_certs:
                kwargs["ssl_show_warn"] = False
        if self.username:
            kwargs["http_auth"] = (self.username, self.password or "")
        if self.api_key:
            kwargs["headers"] = {"Authorization": f"ApiKey {self.api_key}"}
        return kwargs


def connect(settings: ConnectionSettings | None = None) -> OpenSearch:
    """A client for the cluster, checked to answer; raises EngineError with what to do when it does not."""
    settings = settings or ConnectionSettings.from_env()
    client = settings.client()
    try:
        client.info()
    except Exception as err:  # the client raises many types; the user needs one clear line
        raise EngineError(
            f"cannot reach OpenSearch at {', '.join(settings.urls)}: {type(err).__name__}. "
            "Start a node with `splade-os node start` or set OPENSEARCH_URL."
        ) from None
    return client
