"""Where a load writes: the index readers use (in place) or a new version behind the alias, and its refreshes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from splade_os import aliases
from splade_os.engines import engine_for
from splade_os.engines.refusals import is_refusal
from splade_os.errors import ConfigError, EngineError
from splade_os.indexing.options import EncoderDescription, LoadOptions
from splade_os.mappings import (
    DEFAULT_FIRST_PHASE_K,
    candidate_ks,
    check_encoder,
    check_vector_field,
    default_analyzer,
    index_body,
    read_index_meta,
    recorded_candidates,
    recorded_first_phase,
)
from splade_os.model.settings import EncoderSettings, settings_of

log = logging.getLogger(__name__)


@dataclass
class Target:
    alias: str
    index: str
    fresh: bool  # created by this load: `create` ops, and duplicate ids are errors instead of overwrites
    swap: bool  # move the alias here once the load is verified
    refresh_restore: Any
    first_phase_k: int | None = None  # the index's pruned first-phase field holds each document's top k terms
    first_phase_candidates: tuple[int, ...] = ()  # ... and each candidate field its top k, one field per k

    def __post_init__(self) -> None:
        self.first_phase_candidates = tuple(self.first_phase_candidates)  # a list, read back from a checkpoint


def encoding_settings(encoder: EncoderDescription) -> dict[str, Any]:
    """How the encoder cuts long documents, for `_meta` (`EncoderSettings.to_meta`): an explanation that re-encodes a
    hit's text (an index without vectors in `_source`) must cut it the same way to rebuild the indexed vector. An
    encoder without settings (`PrecomputedVectors`) is taken to truncate at its model's length; {} when its
    manifest names none."""
    return (settings_of(encoder) or EncoderSettings()).to_meta(encoder.manifest.get("max_length"))


def document_pruning(encoder: EncoderDescription) -> dict[str, Any]:
    """The pruning the encoder applies to documents, for `_meta`: part of what the index holds. {} for an encoder
    without settings."""
    settings = settings_of(encoder)
    return settings.document_pruning() if settings is not None else {}


def first_phase_k(opts: LoadOptions) -> int | None:
    """The k of a new index's pruned first-phase field; None for an index without one, the default (measured: see
    `DEFAULT_FIRST_PHASE_K`). Candidate fields asked for without a k sit beside the field at that default k."""
    if opts.first_phase_k is None and opts.first_phase_candidates:
        return DEFAULT_FIRST_PHASE_K
    return opts.first_phase_k or None


def create_index(client: Any, index: str, encoder: EncoderDescription, opts: LoadOptions) -> Any:
    analyzer = opts.analyzer or default_analyzer()
    candidates = opts.first_phase_candidates or ()
    body = index_body(
        shards=opts.shards,
        replicas=opts.replicas,
        manifest=encoder.manifest,
        engine=engine_for(client),
        analyzer=analyzer,
        pruning=document_pruning(encoder),
        vectors_in_source=opts.vectors_in_source is not False,
        encoded_from=opts.encoded_from,
        encoding=encoding_settings(encoder),
        extra_properties=opts.properties,
        analysis=opts.analysis,
        first_phase_k=first_phase_k(opts),
        first_phase_candidates=candidates,
        concurrent_segment_search=opts.concurrent_segment_search,
    )
    restore = body["settings"]["index"].get("refresh_interval")
    body["settings"]["index"]["refresh_interval"] = "-1"  # no refreshes during a bulk load; restored at the end
    try:
        client.indices.create(index=index, body=body)
    except Exception as err:
        if is_refusal(err):
            raise  # the CLI names the permission to add
        if f"analyzer [{analyzer}]" in str(err):
            raise ConfigError(
                f"the cluster has no {analyzer!r} analyzer for the BM25 fields (minimal distributions lack the "
                "language analyzers): pass --analyzer standard, or set SPLADE_OS_ANALYZER"
            ) from None
        raise EngineError(f"cannot create index {index!r}: {err}") from None
    return restore


def prepare_target(client: Any, alias: str, encoder: EncoderDescription, opts: LoadOptions) -> Target:
    current = aliases.resolve(client, alias)
    if len(current) > 1:
        raise ConfigError(
            f"alias {alias!r} points at {len(current)} indices ({', '.join(current)}): point it at one with "
            "`splade-os alias`"
        )
    if current and not opts.recreate:
        # An in-place load writes to the index readers use: its refresh interval is left alone, so a load that dies
        # (even by SIGKILL) never leaves a live index that stops refreshing.
        index = current[0]
        check_vector_field(index, client.indices.get_mapping(index=index), engine=engine_for(client))
        check_encoder(client, index, encoder.manifest)
        # Documents written into an existing index fill the fields it has: its pruned field, if any, with its k.
        meta = read_index_meta(client, index)
        k, candidates = recorded_first_phase(meta), recorded_candidates(meta)
        return Target(
            alias,
            index,
            fresh=False,
            swap=False,
            refresh_restore=None,
            first_phase_k=k,
            first_phase_candidates=candidates,
        )
    if current and not aliases.is_alias(client, alias):
        raise ConfigError(
            f"{alias!r} is a concrete index, not an alias: moving an alias to a new version would delete it. Build "
            f"versions behind an alias instead: splade-os index --from-index {alias} --index NEW_NAME"
        )
    index = aliases.next_version(client, alias)
    restore = create_index(client, index, encoder, opts)
    if not current:
        aliases.swap(client, alias, index)  # nothing to protect readers from: expose the alias right away
    k = first_phase_k(opts)
    return Target(
        alias,
        index,
        fresh=True,
        swap=bool(current),
        refresh_restore=restore,
        first_phase_k=k,
        first_phase_candidates=candidate_ks(k, opts.first_phase_candidates or ()),
    )


def restore_refresh(client: Any, target: Target) -> None:
    if target.fresh:  # only an index this load created had its refreshes turned off
        client.indices.put_settings(index=target.index, body={"index": {"refresh_interval": target.refresh_restore}})


def try_restore_refresh(client: Any, target: Target) -> None:
    # Best effort after a failure, so an abandoned load does not leave an index that never refreshes; a resumed
    # run turns refreshes off again.
    try:
        restore_refresh(client, target)
    except Exception as err:  # the cluster may be the reason we are here
        # A refusal is the error the caller reports already, with the privilege to add: not a second line.
        log.log(
            logging.DEBUG if is_refusal(err) else logging.WARNING,
            "could not restore refresh_interval of %s: %s",
            target.index,
            err,
        )


def count_documents(client: Any, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])
