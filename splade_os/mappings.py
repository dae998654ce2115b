"""Index mappings shipped with the package, and the `_meta` record of which encoder built an index."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from opensearchpy import OpenSearch

from splade_os.errors import EncoderMismatchError, EngineError

VECTOR_FIELD = "splade"
META_KEY = "splade_os"


@cache
def _template() -> dict[str, Any]:
    text = resources.files("splade_os").joinpath("mappings/index.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def encoder_meta(manifest: Mapping[str, Any], pruning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `_meta` records about the encoder: enough to refuse queries from a different one."""
    from splade_os import __version__

    return {
        "encoder": {"name": manifest.get("name"), "sha256": manifest.get("sha256")},
        "splade_os_version": __version__,
        "pruning": dict(pruning or {}),
    }


def index_body(
    *,
    shards: int = 1,
    replicas: int = 1,
    manifest: Mapping[str, Any] | None = None,
    pruning: Mapping[str, Any] | None = None,
    extra_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The create-index body: BM25 text fields, the `rank_features` vector, and the encoder in `_meta`."""
    if shards < 1 or replicas < 0:
        raise ValueError(f"shards must be >= 1 and replicas >= 0, got {shards} and {replicas}")
    body = copy.deepcopy(_template())
    body["settings"]["index"].update(number_of_shards=shards, number_of_replicas=replicas)
    if manifest is not None:
        body["mappings"]["_meta"] = {META_KEY: encoder_meta(manifest, pruning)}
    if extra_properties:
        body["mappings"]["properties"].update(extra_properties)
    return body


def meta_from_mapping(response: Mapping[str, Any]) -> dict[str, Any]:
    """The splade-os `_meta` from a get-mapping response (one index, or the one behind an alias)."""
    metas = [m.get("mappings", {}).get("_meta", {}).get(META_KEY, {}) for m in response.values()]
    return dict(metas[0]) if metas else {}


def read_index_meta(client: OpenSearch, index: str) -> dict[str, Any]:
    """The splade-os `_meta` of an index; {} when it has none."""
    try:
        return meta_from_mapping(client.indices.get_mapping(index=index))
    except Exception as err:
        raise EngineError(f"cannot read the mapping of index {index!r}: {err}") from None


def check_encoder_meta(
    index: str, meta: Mapping[str, Any], manifest: Mapping[str, Any], *, force: bool = False
) -> None:
    """Raise when the index's `_meta` names another encoder than `manifest` describes, unless `force`."""
    built_with = meta.get("encoder") or {}
    if force or not built_with.get("sha256"):
        return  # forced, or an index not built by splade-os: nothing recorded to compare
    if built_with.get("sha256") != manifest.get("sha256"):
        raise EncoderMismatchError(
            f"index {index!r} was built with encoder {built_with.get('name')!r} "
            f"(sha256 {str(built_with.get('sha256'))[:12]}), "
            f"but the query encoder is {manifest.get('name')!r} (sha256 {str(manifest.get('sha256'))[:12]}): "
            "scores would be meaningless. Use the same model folder, or pass --force if the vocabularies match."
        )


def check_vector_field(index: str, mapping: Mapping[str, Any], field_name: str = VECTOR_FIELD) -> None:
    """Raise unless every index in a get-mapping response maps `field_name` as `rank_features`.

    Without this, documents would land with the vector dynamically mapped as plain floats, and queries would
    match nothing without any error.
    """
    for concrete, body in mapping.items():
        field_type = body.get("mappings", {}).get("properties", {}).get(field_name, {}).get("type")
        if field_type != "rank_features":
            found = f"maps it as {field_type!r}" if field_type else "does not map it"
            raise EngineError(
                f"index {concrete!r} has no rank_features field {field_name!r} (it {found}): it was not created by "
                f"splade-os. Index into a new name, or rebuild it with `splade-os index CORPUS --index {index} "
                "--recreate`."
            )


def check_encoder(client: OpenSearch, index: str, manifest: Mapping[str, Any], *, force: bool = False) -> None:
    """`check_encoder_meta` on the index's current mapping."""
    if not force:
        check_encoder_meta(index, read_index_meta(client, index), manifest)
