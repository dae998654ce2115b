"""Both clients' errors described: one line that says what went wrong talking to the cluster and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opensearchpy import exceptions as os_errors

from splade_os.engines.refusals import refused_line
from splade_os.redaction import redact

if TYPE_CHECKING:
    from splade_os.connection import ConnectionSettings


def is_client_error(err: BaseException) -> bool:
    """True for an error raised by either engine's client (what `describe_error` turns into one line)."""
    return isinstance(err, os_errors.OpenSearchException) or is_elasticsearch_error(err)


def is_elasticsearch_error(err: BaseException) -> bool:
    """True for an error raised by the official Elasticsearch client or its transport."""
    return type(err).__module__.split(".")[0] in ("elasticsearch", "elastic_transport")


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
    return (
        f"{where} refused the credentials (401): check --user/--password (OPENSEARCH_USERNAME/"
        "OPENSEARCH_PASSWORD or ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD), --api-key or the AWS "
        "credentials"
    )


def _unreachable(where: str, cause: str) -> str:
    return (
        f"cannot reach the cluster at {where} ({cause}): check the URL, start a node with "
        "`splade-os node start`, or set OPENSEARCH_URL (or ELASTICSEARCH_URL)"
    )


def _describe_elasticsearch(err: BaseException, where: str) -> str | None:
    """The same lines for the official Elasticsearch client's errors; None for anything else."""
    if not is_elasticsearch_error(err):
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
        return (
            f"TLS verification of {where} failed ({cause}): pass the cluster's CA bundle with --ca-certs "
            "(OPENSEARCH_CA_CERTS), or --insecure to skip verification while testing"
        )
    return (
        f"TLS handshake with {where} failed ({cause}): if the cluster requires a client certificate, pass "
        "--client-cert and --client-key; check --ca-certs"
    )


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
    for hint in (
        "CERTIFICATE_VERIFY_FAILED",
        "Connection refused",
        "Name or service not known",
        "WRONG_VERSION",
        "timed out",
        "certificate required",
        "hostname",
        "EOF occurred",
        "fingerprint",
    ):
        if hint.lower() in text.lower():
            return hint
    return fallback if fallback is not None else text[:200]
