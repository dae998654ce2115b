"""splade-os: SPLADE learned sparse retrieval on an existing OpenSearch or Elasticsearch cluster."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from splade_os import _moved
from splade_os.errors import (
    ConfigError,
    EncoderClosedError,
    EncoderMismatchError,
    EngineError,
    InputError,
    MissingDependencyError,
    ModelError,
    NodeError,
    SpladeOSError,
)
from splade_os.vectors import SparseVector, escape_token, unescape_token

_moved.install()

try:
    __version__ = version("splade-os")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "EncoderClosedError",
    "EncoderMismatchError",
    "EngineError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "NodeError",
    "SparseVector",
    "SpladeOSError",
    "__version__",
    "escape_token",
    "unescape_token",
]
