"""What a service accepts and who may call it: the request limits, the API key, CORS."""

from __future__ import annotations

import hmac
import stat
from dataclasses import dataclass, field
from pathlib import Path

from splade_os.errors import ConfigError
from splade_os.redaction import register_secret
from splade_os.serve.batcher import BatchSettings


@dataclass(frozen=True)
class Limits:
    """Each refused with a 413 naming the limit and its value."""

    max_inputs: int = 32  # texts per /encode or /embed_sparse request (text-embeddings-inference's default)
    max_text_chars: int = 10_000  # characters per text, and per /search query
    max_body_bytes: int = 1_048_576  # bytes per request body
    max_k: int = 100  # hits per /search request (k), and from + k at most 10,000

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_text_chars", "max_body_bytes", "max_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ServeSettings:
    index: str | None = None  # the index /search and /health use when a request names none
    limits: Limits = field(default_factory=Limits)
    batching: BatchSettings = field(default_factory=BatchSettings)
    api_key: str | None = field(default=None, repr=False)  # None: no authentication
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers at all
    search_threads: int = 16  # searches in flight at once (each holds one worker thread and one connection)

    def authorized(self, header: str | None) -> bool:
        """Whether an `Authorization` header carries the key (compared in constant time)."""
        if self.api_key is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


def read_api_key(path: str | Path) -> str:
    """The bearer token in `path`, a file only its owner may read (0600), as every key file of splade-os."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"API key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read API key file {path}: {getattr(err, 'strerror', None) or err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"API key file {path} can be read by others (mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`"
        )
    if len(key) < 16 or any(c.isspace() for c in key):
        raise ConfigError(f"API key file {path} must hold one key of at least 16 characters without spaces")
    register_secret(key)
    return key
