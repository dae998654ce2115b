"""Where records come from besides a corpus file: the documents of an existing index, to encode again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from splade_os import aliases
from splade_os.corpus import FieldNames, Item, to_record
from splade_os.engines import engine_for
from splade_os.errors import ConfigError
from splade_os.mappings import VECTOR_FIELD


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


class IndexSource:
    """The documents of an existing index, read with a scroll, as records to encode again."""

    resumable = False

    def __init__(self, client: Any, index: str, names: FieldNames, batch_size: int) -> None:
        if not aliases.resolve(client, index):
            raise ConfigError(f"cannot re-encode {index!r}: no index or alias of that name")
        self.client, self.index, self.names, self.batch_size = client, index, names, batch_size
        self.label = f"index {index}"
        self.size: int | None = int(client.count(index=index)["count"])
        self.offset = self.line = 0

    def __iter__(self) -> Iterator[Item]:
        hits = engine_for(self.client).scan(
            self.client, self.index, {"query": {"match_all": {}}, "_source": {"excludes": [VECTOR_FIELD]}},
            size=self.batch_size,
        )  # fmt: skip
        for hit in hits:
            self.offset += 1
            self.line += 1
            fields = dict(hit.get("_source", {}))
            fields.pop("doc_id", None)  # written by splade-os from the id; it is not a field of the document
            # `text` and `title` hold what the source was encoded from; re-encoding other fields replaces them.
            for generated, chosen in (("text", self.names.text), ("title", self.names.title)):
                if chosen != generated:
                    fields.pop(generated, None)
            obj = {**fields, self.names.id: hit["_id"]}
            yield to_record(obj, self.names, self.line)

    def identity(self) -> dict[str, Any]:
        return {"index": self.index}

    def analyzer(self) -> str | None:
        """The BM25 analyzer the source index was built with, from its `_meta` (None if it recorded none)."""
        value = self._meta().get("analyzer")
        return value if isinstance(value, str) else None

    def vectors_in_source(self) -> bool:
        """Whether the source index keeps its vectors in `_source` (indices that recorded nothing do)."""
        return self._meta().get("vectors_in_source", True) is not False

    def _meta(self) -> dict[str, Any]:
        from splade_os.mappings import read_index_meta

        return read_index_meta(self.client, self.index)

    def digest(self) -> str:
        return ""

    def skip_to(self, offset: int, line: int, digest: str) -> None:
        raise ConfigError("a re-encode cannot be resumed: start it again with --recreate")
