"""One exception hierarchy: every message says what is wrong and what to do about it."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable


class SpladeOSError(Exception):
    """Base class of every error splade-os raises on purpose."""


class ConfigError(SpladeOSError):
    """A setting, flag or environment variable is missing or invalid."""


class ModelError(SpladeOSError):
    """A model folder is missing, incomplete, or not a splade-os export."""


class MissingDependencyError(SpladeOSError):
    """An optional dependency (for example torch for `export`) is not installed."""


class InputError(SpladeOSError):
    """Input text or a corpus record is not usable."""


class EngineError(SpladeOSError):
    """The cluster (OpenSearch or Elasticsearch) is unreachable, refused a request, or lacks a feature."""


class IndexNotFoundError(EngineError, ConfigError):
    """The index or alias named does not exist (a ConfigError too, as the name given is what is wrong)."""


class NodeError(SpladeOSError):
    """Assembling, starting or stopping a local OpenSearch or Elasticsearch node failed."""


class EncoderMismatchError(SpladeOSError):
    """An index was built with a different encoder than the one used to query it."""


class EncoderClosedError(SpladeOSError):
    """An encoder was used after `close()`; create a new one to encode again."""


class LeaseHeldError(SpladeOSError):
    """Another load holds the lease of the alias (one load per alias at a time), or took it over from this one."""


class KeywordFormWarning(DeprecationWarning):
    """A call in the keyword form of an earlier version (`index_corpus(..., replicas=0)`, `Searcher(..., pruning=...)`)
    where an options object is the form now (`load=LoadOptions(replicas=0)`, `options=SearchOptions(...)`): it still
    works, and goes in a later release."""


def warn_keyword_form(call: str, keywords: Iterable[str], instead: str) -> None:
    """Warn that `call` was given `keywords` where `instead` is the form now, at the first caller outside splade-os."""
    names = ", ".join(f"{name}=" for name in sorted(keywords))
    warnings.warn(
        f"{call}({names}) is deprecated and goes in a later release: pass {instead}",
        KeywordFormWarning,
        stacklevel=_first_caller_outside(),
    )


def _first_caller_outside() -> int:
    """The `stacklevel` of the first frame up the stack that is not splade-os's own, counted from the caller."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "splade_os":
        frame, level = frame.f_back, level + 1
    return level
