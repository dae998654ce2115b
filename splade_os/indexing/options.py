"""How a load runs (`BulkOptions` for batching and sending, `LoadOptions` for the rest) and what it needs from an
encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from splade_os.corpus import Record
from splade_os.errors import ConfigError, warn_keyword_form
from splade_os.indexing.ledger import default_checkpoint, default_dead_letter
from splade_os.mappings import DEFAULT_ENCODED_FROM
from splade_os.vectors import SparseVector


class EncoderDescription(Protocol):
    """What creating an index needs to know of its encoder: the manifest it records in `_meta`."""

    @property
    def manifest(self) -> Mapping[str, Any]: ...


class DocumentEncoder(EncoderDescription, Protocol):
    """What indexing needs from an encoder; `SpladeEncoder` is one, a test can bring a tiny fake."""

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...


@runtime_checkable
class RecordEncoder(Protocol):
    """An encoder that takes whole records: `PrecomputedVectors` passes through the vectors they carry."""

    def encode_records(self, records: Sequence[Record]) -> list[SparseVector]: ...


class EncoderRecipe(EncoderDescription, Protocol):
    """How the workers of a distributed load each build their own encoder: plain data that travels to them."""

    def build(self) -> DocumentEncoder: ...


@dataclass(frozen=True)
class BulkOptions:
    """How records are batched and sent, and how long an unhealthy cluster is waited for."""

    batch_size: int = 256  # records encoded and sent together; also the unit of a checkpoint
    chunk_bytes: int = 8 * 1024 * 1024  # a bulk request never exceeds this, except a single larger document
    max_retries: int = 6  # rounds of 429 retries inside one bulk call
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    retry_for: float = 300.0  # how long a batch is retried through connection errors and 5xx before giving up
    request_timeout: float = 120.0
    queue_size: int = 1  # encoded batches waiting for the sender: bounds memory

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_bytes < 1 or self.queue_size < 1:
            raise ConfigError("batch size, chunk bytes and queue size must be positive")


@dataclass(frozen=True)
class LoadOptions:
    """What a load does besides sending: where it writes, what it keeps, how it reports."""

    recreate: bool = False  # build a new version behind the alias (the previous one is kept unless delete_previous)
    resume: bool = False  # continue an interrupted run from its checkpoint
    skip_empty: bool = True  # corpus records with no text and no title go to the dead letters as skipped
    allow_failures: bool = False  # failed documents do not stop the alias from moving
    delete_previous: bool = False  # after a verified switch, delete the version readers used before
    shards: int = 1
    replicas: int | None = None  # None: auto_expand_replicas 0-1 (green on one node)
    # Of the BM25 text fields of a new index. None: SPLADE_OS_ANALYZER or english; a re-encode: the source's.
    analyzer: str | None = None
    # False: a new index leaves vectors out of `_source` (postings only). None: True; a re-encode: the source's.
    vectors_in_source: bool | None = None
    # The k of a new index's pruned first-phase field (two-step search); 0 or None: none (two-phase search runs on
    # the full field, measured the faster as built on real text). A re-encode or reindex given None: the source's
    # (none when it recorded none). An existing index keeps what it has.
    first_phase_k: int | None = None
    # Candidate pruned fields beside it, one per k, for `tune` to choose the k among. None: none; a re-encode or
    # reindex: the source's. An existing index keeps what it has.
    first_phase_candidates: tuple[int, ...] | None = None
    # The stored fields the vectors are encoded from, recorded in `_meta`: a corpus load stores them as text/title.
    encoded_from: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ENCODED_FROM))
    # A re-encode maps the documents' own fields as the source index did (and defines the analyzers they use).
    properties: Mapping[str, Any] = field(default_factory=dict)
    analysis: Mapping[str, Any] = field(default_factory=dict)
    # Index setting of a new index: search a shard's segments in parallel (True/False); None: the engine's default.
    concurrent_segment_search: bool | None = None
    optimize: bool = False  # after a successful load, force-merge the index to one segment before the alias moves
    break_lock: bool = False  # take over the lease another load left, once it expired (see indexing/lease.py)
    # None: `ALIAS.checkpoint.json` and `ALIAS.dead-letter.jsonl` in the state folder of the cluster and alias
    # (indexing/state.py); a re-encode keeps no checkpoint.
    checkpoint: Path | None = None
    dead_letter: Path | None = None
    state_dir: Path | None = None  # None: $SPLADE_OS_STATE_DIR, $XDG_STATE_HOME/splade-os or ~/.local/state/splade-os
    bulk: BulkOptions = field(default_factory=lambda: BulkOptions())

    def __post_init__(self) -> None:
        if self.first_phase_k is not None and self.first_phase_k < 0:
            raise ConfigError(f"the first-phase k must be at least 1 (or 0 for none), got {self.first_phase_k}")
        if self.first_phase_candidates is not None:
            if any(k < 1 for k in self.first_phase_candidates):
                listed = list(self.first_phase_candidates)
                raise ConfigError(f"candidate first-phase k must be at least 1, got {listed}")
            if self.first_phase_candidates and self.first_phase_k == 0:
                raise ConfigError("candidate first-phase fields need the pruned field: leave out --no-first-phase")

    @classmethod
    def from_keywords(cls, given: Mapping[str, Any], **defaults: Any) -> LoadOptions:
        """Options from the loose keywords the entry points took before they took one `LoadOptions` (`options` was
        the `BulkOptions`); `defaults` are the entry point's own defaults for what `given` leaves out."""
        values = {**defaults, **{k: v for k, v in given.items() if k != "options"}}
        if given.get("options") is not None:
            values["bulk"] = given["options"]
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def of_call(cls, call: str, load: LoadOptions | None, legacy: Mapping[str, Any], **defaults: Any) -> LoadOptions:
        """The options entry point `call` was given: `load`, or its keyword form of earlier versions (`legacy`, see
        `from_keywords`), which still works with a `KeywordFormWarning`; never both."""
        if load is not None and legacy:
            raise ConfigError(f"give load=LoadOptions(...) or its fields as keywords, not both ({', '.join(legacy)})")
        if load is not None:
            return load
        opts = cls.from_keywords(legacy, **defaults)
        if legacy:
            bulk = " (options= is its bulk=)" if "options" in legacy else ""
            warn_keyword_form(call, legacy, f"load=LoadOptions(...){bulk}")
        return opts

    def for_alias(self, alias: str) -> LoadOptions:
        """These options with the run's files named after `alias` in the current folder where none were given: where
        a run of an earlier version kept them (`indexing.state.locate` names them in the state folder)."""
        return replace(
            self,
            checkpoint=self.checkpoint or default_checkpoint(alias),
            dead_letter=self.dead_letter or default_dead_letter(alias),
        )

    @property
    def dead_letter_path(self) -> Path:
        if self.dead_letter is None:
            raise ValueError("indexing.state.locate names the dead-letter file before a load starts")
        return self.dead_letter
