"""What the service answers when it refuses: a status and one JSON line, never a traceback.

Every refusal is `{"error": "...", "error_type": "..."}` (text-embeddings-inference's error shape), and a limit's
refusal adds `"limit"` and `"value"`. Library and client errors become the status that tells a client what to do:
400 for bad input, 404 for an index that does not exist, 409 for an index built by another encoder, 503 (with
Retry-After) for a cluster that does not answer or a full queue.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import exceptions as os_errors

from splade_os.engines.errors import describe_error, is_client_error, is_elasticsearch_error
from splade_os.errors import ConfigError, EncoderMismatchError, InputError, SpladeOSError
from splade_os.redaction import redact
from splade_os.serve.batcher import BatcherClosedError, QueueFullError

RETRY_AFTER_S = 1


class Refusal(Exception):
    """A request the service refuses: the status, the one line saying why and what to do, and extra fields."""

    def __init__(self, status: int, message: str, error_type: str = "Validation", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact(message)
        self.error_type = error_type
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "error_type": self.error_type, **self.extra}


def over_limit(limit: str, value: int, what: str, status: int = 413) -> Refusal:
    """A refusal naming the limit a request went over and the limit's value."""
    return Refusal(status, f"{what}: the limit {limit} is {value}", "Validation", limit=limit, value=value)


def unavailable(message: str) -> Refusal:
    refusal = Refusal(503, message, "Unavailable")
    refusal.headers["Retry-After"] = str(RETRY_AFTER_S)
    return refusal


def refusal_for(err: BaseException, where: str) -> Refusal | None:
    """The refusal for a library or client error (None: an unexpected error, a 500 whose detail stays in the log).

    `where` names the cluster for connection errors (its URLs, never its credentials)."""
    if isinstance(err, Refusal):
        return err
    if isinstance(err, QueueFullError):
        return unavailable(f"the encoder queue is full ({err}): retry after {RETRY_AFTER_S} s or add replicas")
    if isinstance(err, BatcherClosedError):
        return unavailable(str(err))
    if isinstance(err, InputError):
        return Refusal(400, str(err))
    if isinstance(err, EncoderMismatchError):
        return Refusal(409, str(err), "Conflict")
    if isinstance(err, ConfigError):
        return Refusal(400, str(err))
    if isinstance(err, SpladeOSError):
        return Refusal(502, str(err), "Backend")
    if is_client_error(err):
        line = describe_error(err)
        if _unreachable(err):
            return unavailable(f"the cluster at {where} does not answer: {line}")
        if _status(err) == 404:
            return Refusal(404, line, "NotFound")
        return Refusal(502, f"the cluster refused the request: {line}", "Backend")
    return None


def _unreachable(err: BaseException) -> bool:
    if isinstance(err, os_errors.ConnectionError):
        return True
    # The Elasticsearch client's transport errors (connection refused, timeout) carry no HTTP status.
    return is_elasticsearch_error(err) and type(err).__module__.startswith("elastic_transport") and _status(err) is None


def _status(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None)
    meta = getattr(err, "meta", None)
    status = getattr(meta, "status", status)
    return status if isinstance(status, int) else None
