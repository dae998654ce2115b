"""Where records come from besides a corpus file: the documents of an existing index, to encode again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

from splade_os import aliases
from splade_os.corpus import FieldNames, Item, Record, to_record
from splade_os.engines import engine_for
from splade_os.errors import ConfigError, IndexNotFoundError
from splade_os.mappings import (
    VECTOR_FIELDS,
    candidate_field,
    is_vector_field,
    read_index_meta,
    recorded_candidates,
    recorded_concurrent_search,
    recorded_fields,
    recorded_first_phase,
    template_fields,
)


class Source(Protocol):
    resumable: bool
    label: str
    size: int | None
    offset: int
    line: int

    def __iter__(self) -> Iterator[Item]: ...

    def identity(self) -> dict[str, Any]: ...

    def digest(self) -> str: ...

    def skip_to(self, offset: int, line: int, digest: str) -> None: ...


def check_source(client: Any, index: str) -> None:
    if not aliases.resolve(client, index):
        raise IndexNotFoundError(f"cannot re-encode {index!r}: no index or alias of that name")


def mapped_properties(client: Any, index: str) -> dict[str, Any]:
    """The top-level field mappings of `index` (of every index behind an alias)."""
    properties: dict[str, Any] = {}
    for body in client.indices.get_mapping(index=index).values():
        properties.update(body.get("mappings", {}).get("properties", {}))
    return properties


def source_names(client: Any, index: str, text_field: str | None, title_field: str | None) -> FieldNames:
    """The fields to encode the documents of `index` from: those given, else those its own vectors were encoded
    from (its `_meta`; `text` and `title` when it records none). A text field that no document of the index has
    is refused: every vector would be empty, or the title's alone."""
    check_source(client, index)
    recorded = recorded_fields(read_index_meta(client, index))
    names = FieldNames(id="_id", text=text_field or recorded["text"], title=title_field or recorded["title"])
    mapped = {name for name in mapped_properties(client, index) if not is_vector_field(name)}
    if names.text not in mapped:
        raise ConfigError(
            f"cannot re-encode {index!r} from field {names.text!r}: no document of it has that field (it maps "
            f"{', '.join(sorted(mapped)) or 'no fields'}); choose another with --text-field"
        )
    return names


def joined(value: Any) -> Any:
    """A text or title field an index holds as an array of strings (any field may hold one) as one text, its
    strings joined by a space, as the engine analyses them for BM25; anything else as it is."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return value


class IndexSource:
    """The documents of an existing index, read with a scroll, as records to encode again.

    Each document is written back as it is, every field under its own name: `names` choose only what its vector
    is encoded from (`_meta` of the new index records them). A document without the text field gets the vector of
    its title alone, or an empty one: a re-encode copies every document.
    """

    resumable = False

    def __init__(self, client: Any, index: str, names: FieldNames, batch_size: int) -> None:
        check_source(client, index)
        self.client, self.index, self.names, self.batch_size = client, index, names, batch_size
        self.label = f"index {index}"
        self.size: int | None = int(client.count(index=index)["count"])
        self.offset = self.line = 0

    def __iter__(self) -> Iterator[Item]:
        hits = engine_for(self.client).scan(
            self.client,
            self.index,
            {"query": {"match_all": {}}, "_source": {"excludes": self._vector_fields()}},
            size=self.batch_size,
        )
        chosen = (self.names.text, self.names.title)
        for hit in hits:
            self.offset += 1
            self.line += 1
            document = dict(hit.get("_source", {}))
            picked = {name: joined(document.get(name)) for name in chosen}
            item = to_record({**picked, self.names.id: hit["_id"]}, self.names, self.line)
            if isinstance(item, Record):
                yield replace(item, document=document)
            else:  # its dead letter carries the document, to replay once fixed
                yield replace(item, record={"_id": hit["_id"], **document})

    def identity(self) -> dict[str, Any]:
        return {"index": self.index}

    def analyzer(self) -> str | None:
        """The BM25 analyzer the source index was built with, from its `_meta` (None if it recorded none)."""
        value = self._meta().get("analyzer")
        return value if isinstance(value, str) else None

    def vectors_in_source(self) -> bool:
        """Whether the source index keeps its vectors in `_source` (indices that recorded nothing do)."""
        return self._meta().get("vectors_in_source", True) is not False

    def first_phase_k(self) -> int:
        """The k of the source's pruned first-phase field; 0 when it has none."""
        return recorded_first_phase(self._meta()) or 0

    def first_phase_candidates(self) -> tuple[int, ...]:
        """The k of the source's candidate pruned fields; () when it has none."""
        return recorded_candidates(self._meta())

    def _vector_fields(self) -> list[str]:
        return [*VECTOR_FIELDS, *(candidate_field(k) for k in self.first_phase_candidates())]

    def concurrent_segment_search(self) -> bool | None:
        """The source's recorded choice of searching segments in parallel; None when it followed the cluster."""
        return recorded_concurrent_search(self._meta())

    def _meta(self) -> dict[str, Any]:
        return read_index_meta(self.client, self.index)

    def field_mappings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The source's mappings of its documents' own fields, and the analysis settings they may use, for the new
        index to map those fields the same way: dynamic mapping would guess again (a nested object would become a
        plain one, a keyword a text). splade-os's own fields (`doc_id`, `title`, `text`, the vector) are left out:
        the new index maps them itself."""
        mapped = mapped_properties(self.client, self.index)
        own = {k: v for k, v in mapped.items() if k not in template_fields() and not is_vector_field(k)}
        analysis: dict[str, Any] = {}
        for body in self.client.indices.get_settings(index=self.index).values():
            analysis.update(body.get("settings", {}).get("index", {}).get("analysis", {}))
        return own, analysis

    def digest(self) -> str:
        return ""

    def skip_to(self, offset: int, line: int, digest: str) -> None:
        raise ConfigError("a re-encode cannot be resumed: start it again with --recreate")
