"""Index mappings shipped with the package, and the `_meta` record of which encoder built an index."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from splade_os.engines import Engine
from splade_os.engines.refusals import is_refusal
from splade_os.errors import ConfigError, EncoderMismatchError, EngineError
from splade_os.vectors import SparseVector

VECTOR_FIELD = "splade"
PRECOMPUTED = "precomputed"  # the encoder `_meta` records for an index built from vectors made elsewhere
# The two-step layout: each document's heaviest terms again in a second field of the same type, which phase one of
# two-phase search queries (far fewer postings per term) before the window is rescored exactly on VECTOR_FIELD.
FIRST_PHASE_FIELD = "splade_first"
FIRST_PHASE_KEY = "first_phase"  # its `_meta` record: {"field": FIRST_PHASE_FIELD, "top_k": k[, "candidates": [k]]}
# The k suggested for the pruned field, which a new index holds only when asked (`index --first-phase-k`): on real
# text, two-phase search on the full field was as fast or faster as built and exact in nDCG (docs/scale.md).
DEFAULT_FIRST_PHASE_K = 128
VECTOR_FIELDS = (VECTOR_FIELD, FIRST_PHASE_FIELD)  # what a document's vector is written to; never copied as data
# Candidate pruned fields (`splade_first_k<k>`) hold other k beside FIRST_PHASE_FIELD, for `tune` to choose among.
_CANDIDATE_FIELD = re.compile(re.escape(FIRST_PHASE_FIELD) + r"_k[1-9][0-9]*")
META_KEY = "splade_os"
AUTO_REPLICAS = "0-1"  # a new index's replicas when none are asked for: as many as the nodes allow, up to one
DEFAULT_ANALYZER = "english"  # of the BM25 text fields; recorded in `_meta`
ANALYZER_ENV = "SPLADE_OS_ANALYZER"
DEFAULT_ENCODED_FROM = {"text": "text", "title": "title"}  # a corpus load always stores what it encodes there

log = logging.getLogger(__name__)


def default_analyzer() -> str:
    """The analyzer of new indices' BM25 fields when none is given: `$SPLADE_OS_ANALYZER`, else `english`.

    Minimal distributions (the engines' integ-test zips) lack the `english` analyzer; `standard` is always there.
    """
    return os.environ.get(ANALYZER_ENV) or DEFAULT_ANALYZER


@cache
def _template() -> dict[str, Any]:
    text = resources.files("splade_os").joinpath("mappings/index.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def encoder_meta(
    manifest: Mapping[str, Any],
    pruning: Mapping[str, Any] | None = None,
    analyzer: str | None = None,
    vectors_in_source: bool = True,
    encoded_from: Mapping[str, str] | None = None,
    encoding: Mapping[str, Any] | None = None,
    first_phase_k: int | None = None,
    first_phase_candidates: tuple[int, ...] = (),
) -> dict[str, Any]:
    """What `_meta` records about the encoder: enough to refuse queries from a different one, and to encode a
    document again as it was indexed (its fields, `encoded_from`; how long texts were cut, `encoding`)."""
    from splade_os import __version__

    encoder = {"name": manifest.get("name"), "sha256": manifest.get("sha256")}
    if manifest.get("name") == PRECOMPUTED:
        encoder["vocabulary"] = manifest.get("vocabulary")  # what its vectors' tokens were checked against
    meta: dict[str, Any] = {
        "encoder": encoder,
        "splade_os_version": __version__,
        "pruning": dict(pruning or {}),
        "analyzer": analyzer or default_analyzer(),
        "vectors_in_source": vectors_in_source,
        "encoded_from": dict(encoded_from or DEFAULT_ENCODED_FROM),
    }
    if encoding:
        meta["encoding"] = dict(encoding)
    if first_phase_k:
        meta[FIRST_PHASE_KEY] = {"field": FIRST_PHASE_FIELD, "top_k": first_phase_k}
        if candidates := candidate_ks(first_phase_k, first_phase_candidates):
            meta[FIRST_PHASE_KEY]["candidates"] = list(candidates)
    return meta


def candidate_field(k: int) -> str:
    """The name of the candidate pruned field that holds each document's top `k` terms."""
    return f"{FIRST_PHASE_FIELD}_k{k}"


def candidate_ks(first_phase_k: int | None, candidates: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The candidate k an index with the pruned field of `first_phase_k` holds beside it: sorted, once each, never
    the main field's own k; none without a main field."""
    return tuple(sorted({k for k in candidates if k != first_phase_k})) if first_phase_k else ()


def is_vector_field(name: str) -> bool:
    """Whether `name` is a field splade-os writes a document's vector to (the full vector, a pruned copy)."""
    return name in VECTOR_FIELDS or _CANDIDATE_FIELD.fullmatch(name) is not None


def first_phase_fields(first_phase_k: int | None, candidates: tuple[int, ...] = ()) -> dict[str, int]:
    """{field: k} of every pruned field of an index: FIRST_PHASE_FIELD first, then the candidates."""
    if not first_phase_k:
        return {}
    others = {candidate_field(k): k for k in candidate_ks(first_phase_k, candidates)}
    return {FIRST_PHASE_FIELD: first_phase_k, **others}


def recorded_first_phase(meta: Mapping[str, Any]) -> int | None:
    """The k of an index's pruned first-phase field (`FIRST_PHASE_FIELD`) from its `_meta`; None when it has none."""
    record = meta.get(FIRST_PHASE_KEY)
    if not isinstance(record, Mapping) or record.get("field") != FIRST_PHASE_FIELD:
        return None
    top_k = record.get("top_k")
    return top_k if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0 else None


def recorded_candidates(meta: Mapping[str, Any]) -> tuple[int, ...]:
    """The k of an index's candidate pruned fields (beside `FIRST_PHASE_FIELD`) from its `_meta`; () when none."""
    record = meta.get(FIRST_PHASE_KEY)
    listed = record.get("candidates") if isinstance(record, Mapping) else None
    if not isinstance(listed, list):
        return ()
    ks = [k for k in listed if isinstance(k, int) and not isinstance(k, bool) and k > 0]
    return candidate_ks(recorded_first_phase(meta), ks)


def recorded_concurrent_search(meta: Mapping[str, Any]) -> bool | None:
    """An index's recorded choice of concurrent segment search from its `_meta`; None when it followed the
    cluster's setting."""
    value = meta.get("concurrent_segment_search")
    return value if isinstance(value, bool) else None


def vector_fields(
    engine: Engine, vector: SparseVector, first_phase_k: int | None, candidates: tuple[int, ...] = ()
) -> dict[str, dict[str, float]]:
    """The fields a document's vector is written to: the full vector, and its heaviest `first_phase_k` terms in the
    pruned first-phase field when the index has one (and its heaviest k in each candidate field of `candidates`)."""
    fields = {VECTOR_FIELD: engine.to_field(vector)}
    for field, k in first_phase_fields(first_phase_k, candidates).items():
        fields[field] = engine.to_field(vector.top_k(k))
    return fields


def recorded_fields(meta: Mapping[str, Any]) -> dict[str, str]:
    """The fields ("text", "title") an index's vectors were encoded from; `text` and `title` for an index that
    recorded none (built before splade-os recorded them, or not by splade-os)."""
    recorded = meta.get("encoded_from")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    return {k: v if isinstance(v := recorded.get(k), str) and v else k for k in DEFAULT_ENCODED_FROM}


def index_body(
    *,
    shards: int = 1,
    replicas: int | None = None,
    manifest: Mapping[str, Any] | None = None,
    pruning: Mapping[str, Any] | None = None,
    extra_properties: Mapping[str, Any] | None = None,
    engine: Engine,
    analyzer: str | None = None,
    vectors_in_source: bool = True,
    encoded_from: Mapping[str, str] | None = None,
    encoding: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
    first_phase_k: int | None = None,
    concurrent_segment_search: bool | None = None,
    first_phase_candidates: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The create-index body: BM25 text fields with `analyzer`, the engine's vector field, and the encoder in `_meta`.

    `extra_properties` and `analysis` map more fields (a re-encode keeps the source's mappings of its documents'
    own fields, and the analyzers those use).

    `vectors_in_source=False` leaves the vector out of the stored `_source`: the postings still score it, but
    reading a document back no longer returns its vector (explanations then re-encode the document's text).

    `first_phase_k` adds the pruned first-phase field (each document's top-k terms, same type as the vector field),
    left out of `_source` with the vector, and records it in `_meta`; `first_phase_candidates` adds a candidate
    pruned field for each other k, for `tune` to choose among.
    `concurrent_segment_search` sets the engine's index setting for searching a shard's segments in parallel
    (None: the cluster's default); an engine without one refuses it. `_meta` records what was asked.

    `replicas=None` sets `auto_expand_replicas` to `AUTO_REPLICAS` (green on a single node) instead of a count.

    The template is written for OpenSearch (`rank_features`); each engine puts in its own vector field.
    """
    if shards < 1 or (replicas is not None and replicas < 0):
        raise ValueError(f"shards must be >= 1 and replicas >= 0, got {shards} and {replicas}")
    analyzer = analyzer or default_analyzer()
    body = copy.deepcopy(_template())
    # No replica count given: one replica where a second node can hold it, none on a single node (which a fixed
    # replica would leave yellow, with shards that can never be assigned).
    copies = {"auto_expand_replicas": AUTO_REPLICAS} if replicas is None else {"number_of_replicas": replicas}
    for key in ("number_of_replicas", "auto_expand_replicas"):
        body["settings"]["index"].pop(key, None)
    body["settings"]["index"].update(number_of_shards=shards, **copies, **engine.index_settings())
    if concurrent_segment_search is not None:
        concurrent = engine.concurrent_search_settings(concurrent_segment_search)
        if concurrent is None:
            raise ConfigError(
                f"{engine.label} has no index setting for concurrent segment search (OpenSearch 2.12+ has; "
                "Elasticsearch decides per query on its own): leave the option out"
            )
        body["settings"]["index"].update(concurrent)
    properties = body["mappings"]["properties"]
    properties[VECTOR_FIELD] = engine.vector_mapping()
    pruned = first_phase_fields(first_phase_k, first_phase_candidates)
    for field in pruned:
        properties[field] = engine.vector_mapping()
    for name in ("title", "text"):
        properties[name]["analyzer"] = analyzer
    if not vectors_in_source:
        body["mappings"]["_source"] = {"excludes": [VECTOR_FIELD, *pruned]}
    if manifest is not None:
        meta = encoder_meta(
            manifest,
            pruning,
            analyzer,
            vectors_in_source,
            encoded_from,
            encoding,
            first_phase_k,
            first_phase_candidates,
        )
        if concurrent_segment_search is not None:
            meta["concurrent_segment_search"] = concurrent_segment_search
        body["mappings"]["_meta"] = {META_KEY: meta}
    if extra_properties:
        body["mappings"]["properties"].update(extra_properties)
    if analysis:
        body["settings"]["index"]["analysis"] = dict(analysis)
    return body


def template_fields() -> frozenset[str]:
    """The fields every splade-os index maps itself: `doc_id`, `title`, `text`, the vector and its pruned copy."""
    return frozenset(_template()["mappings"]["properties"]) | frozenset(VECTOR_FIELDS)


def meta_from_mapping(response: Mapping[str, Any]) -> dict[str, Any]:
    """The splade-os `_meta` from a get-mapping response (one index, or the one behind an alias)."""
    metas = [m.get("mappings", {}).get("_meta", {}).get(META_KEY, {}) for m in response.values()]
    return dict(metas[0]) if metas else {}


def read_index_meta(client: Any, index: str) -> dict[str, Any]:
    """The splade-os `_meta` of an index; {} when it has none."""
    try:
        return meta_from_mapping(client.indices.get_mapping(index=index))
    except Exception as err:
        if is_refusal(err):
            raise  # the CLI names the permission to add
        raise EngineError(f"cannot read the mapping of index {index!r}: {err}") from None


def check_encoder_meta(
    index: str, meta: Mapping[str, Any], manifest: Mapping[str, Any], *, force: bool = False
) -> None:
    """Raise when the index's `_meta` names another encoder than `manifest` describes, unless `force`."""
    built_with = meta.get("encoder") or {}
    if manifest.get("name") == PRECOMPUTED and not force:
        check_vocabulary(index, built_with, manifest)
        return
    if built_with.get("name") == PRECOMPUTED and not force:
        check_query_model(index, built_with, manifest)
        return
    if force or not built_with.get("sha256"):
        return  # forced, or an index not built by splade-os: nothing recorded to compare
    if built_with.get("sha256") != manifest.get("sha256"):
        raise EncoderMismatchError(
            f"index {index!r} was built with encoder {built_with.get('name')!r} "
            f"(sha256 {str(built_with.get('sha256'))[:12]}), "
            f"but the query encoder is {manifest.get('name')!r} (sha256 {str(manifest.get('sha256'))[:12]}): "
            "scores would be meaningless. Use the same model folder, or pass --force if the vocabularies match."
        )


def check_query_model(index: str, built_with: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Raise when an index of vectors made elsewhere records the model that made them (`index --vectors --model`)
    and the query encoder is another one."""
    made_by = (built_with.get("vocabulary") or {}).get("model_sha256")
    if made_by and made_by != manifest.get("sha256"):
        name = (built_with.get("vocabulary") or {}).get("name")
        raise EncoderMismatchError(
            f"index {index!r} holds vectors made by {name!r} (sha256 {str(made_by)[:12]}), but the query encoder is "
            f"{manifest.get('name')!r} (sha256 {str(manifest.get('sha256'))[:12]}): scores would be meaningless. "
            "Use the model folder that made the vectors, or pass --force if the vocabularies match."
        )


def check_vocabulary(index: str, built_with: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Raise when vectors made elsewhere (`manifest` of `PrecomputedVectors`) are checked against another
    vocabulary than the one of index `index` (`built_with`, its `_meta` encoder); warn when nothing says."""
    mine = manifest.get("vocabulary") or {}
    if built_with.get("name") == PRECOMPUTED:
        theirs = built_with.get("vocabulary") or {}
        if theirs.get("sha256") and mine.get("sha256"):
            if theirs["sha256"] != mine["sha256"]:
                raise EncoderMismatchError(
                    f"index {index!r} holds vectors in the vocabulary of {theirs.get('name')!r} (sha256 "
                    f"{str(theirs['sha256'])[:12]}), but these are checked against the vocabulary of "
                    f"{mine.get('name')!r} (sha256 {str(mine['sha256'])[:12]}): scores would be meaningless. Give "
                    "--model the folder of the model that made the index's vectors, or index into a new index"
                )
            return
        if theirs:
            log.warning(
                "cannot check the vector tokens against the vocabulary of %r, that index %r holds: pass "
                "--model with that model's folder to check them",
                theirs.get("name"),
                index,
            )
        else:
            log.warning(
                "index %r records no vocabulary (it was built from unchecked vectors): the vector tokens "
                "cannot be checked",
                index,
            )
        return
    if not built_with.get("sha256"):
        return  # an index not built by splade-os: nothing recorded to compare
    if not mine:
        log.warning(
            "cannot check the vector tokens against the vocabulary of %r, the encoder index %r was built with: pass "
            "--model with that model's folder to check them",
            built_with.get("name"),
            index,
        )
    elif mine.get("model_sha256") != built_with["sha256"]:
        raise EncoderMismatchError(
            f"index {index!r} was built with encoder {built_with.get('name')!r} (sha256 "
            f"{str(built_with['sha256'])[:12]}), but these vectors are checked against the vocabulary of "
            f"{mine.get('name')!r} (sha256 {str(mine.get('model_sha256'))[:12]}): scores would be meaningless. Give "
            "--model the folder of the model that built the index, or index into a new index"
        )


def vector_field_problem(
    index: str, mapping: Mapping[str, Any], field_name: str = VECTOR_FIELD, *, engine: Engine
) -> str | None:
    """Why the indices of a get-mapping response cannot hold splade-os vectors; None when they can."""
    for concrete, body in mapping.items():
        field_type = engine.field_type(body, field_name)
        if field_type != engine.vector_type:
            found = f"maps it as {field_type!r}" if field_type else "does not map it"
            return (
                f"index {concrete!r} has no {engine.vector_type} field {field_name!r} (it {found}): it was not "
                f"created by splade-os for {engine.label}. Index into a new name, or rebuild it with `splade-os "
                f"index CORPUS --index {index} --recreate`."
            )
    return None


def check_vector_field(
    index: str, mapping: Mapping[str, Any], field_name: str = VECTOR_FIELD, *, engine: Engine
) -> None:
    """Raise unless every index in a get-mapping response maps `field_name` as the engine's vector type.

    Without this, documents would land with the vector dynamically mapped as plain floats, and queries would
    match nothing without any error.
    """
    problem = vector_field_problem(index, mapping, field_name, engine=engine)
    if problem:
        raise EngineError(problem)


def check_encoder(client: Any, index: str, manifest: Mapping[str, Any], *, force: bool = False) -> None:
    """`check_encoder_meta` on the index's current mapping."""
    if not force:
        check_encoder_meta(index, read_index_meta(client, index), manifest)
