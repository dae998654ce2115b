"""One exception hierarchy: every message says what is wrong and what to do about it."""

from __future__ import annotations


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
