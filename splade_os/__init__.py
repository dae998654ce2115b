"""splade-os: SPLADE learned sparse retrieval on an existing OpenSearch or Elasticsearch cluster."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

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

# The library's main entry points, imported on first use so that `import splade_os` stays light (no onnxruntime,
# no engine client) for code that needs only the errors or vectors. Type checkers read the same names below.
_LAZY = {
    "SpladeEncoder": "splade_os.model.encoder",
    "EncoderSettings": "splade_os.model.settings",
    "Searcher": "splade_os.retrieval.search",
    "AsyncSearcher": "splade_os.retrieval.search",
    "HybridParams": "splade_os.retrieval.options",
    "SearchOptions": "splade_os.retrieval.options",
    "SearchResult": "splade_os.retrieval.search",
    "Pruning": "splade_os.retrieval.query",
    "TwoPhaseSettings": "splade_os.retrieval.two_phase",
    "ConnectionSettings": "splade_os.connection",
    "connect": "splade_os.engines.clients",
    "index_corpus": "splade_os.indexing.load",
    "reencode_index": "splade_os.indexing.load",
    "BulkOptions": "splade_os.indexing.options",
    "LoadOptions": "splade_os.indexing.options",
}

if TYPE_CHECKING:
    from splade_os.connection import ConnectionSettings
    from splade_os.engines.clients import connect
    from splade_os.indexing.load import index_corpus, reencode_index
    from splade_os.indexing.options import BulkOptions, LoadOptions
    from splade_os.model.encoder import SpladeEncoder
    from splade_os.model.settings import EncoderSettings
    from splade_os.retrieval.options import HybridParams, SearchOptions
    from splade_os.retrieval.query import Pruning
    from splade_os.retrieval.search import AsyncSearcher, Searcher, SearchResult
    from splade_os.retrieval.two_phase import TwoPhaseSettings


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'splade_os' has no attribute {name!r}")


try:
    __version__ = version("splade-os")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AsyncSearcher",
    "BulkOptions",
    "ConfigError",
    "ConnectionSettings",
    "EncoderClosedError",
    "EncoderMismatchError",
    "EncoderSettings",
    "EngineError",
    "HybridParams",
    "InputError",
    "LoadOptions",
    "MissingDependencyError",
    "ModelError",
    "NodeError",
    "Pruning",
    "SearchOptions",
    "SearchResult",
    "Searcher",
    "SparseVector",
    "SpladeEncoder",
    "SpladeOSError",
    "TwoPhaseSettings",
    "__version__",
    "connect",
    "escape_token",
    "index_corpus",
    "reencode_index",
    "unescape_token",
]
