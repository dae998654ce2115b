"""Streaming corpus readers: JSON Lines (BEIR `corpus.jsonl`), CSV/TSV, a BEIR folder, or `-` for stdin.

A bad record is yielded as a `RecordError` value, never raised, so one broken line cannot stop a load of millions.
Readers work on raw bytes: they know the exact byte offset after each record and a running SHA-256 of the bytes
read, which is what a checkpoint needs to resume after a crash and to prove that the input did not change.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from splade_os.errors import ConfigError, InputError
from splade_os.mappings import VECTOR_FIELD, is_vector_field
from splade_os.vectors import SparseVector, valid_unicode, vector_problem

FORMATS = ("jsonl", "csv", "tsv")
# One record larger than this is reported and skipped instead of being read into memory whole.
DEFAULT_MAX_RECORD_BYTES = 32 * 1024 * 1024
# Fields the index writes itself. A corpus field of the same name that is not the chosen id, text or title field
# would be overwritten, so its record is refused (see `collision`) rather than silently losing that field; so is one
# named like a vector field (`splade`, the pruned `splade_first`, a candidate `splade_first_k64`: `is_vector_field`).
RESERVED_FIELDS = frozenset({"doc_id", "title", "text", VECTOR_FIELD})
_SNIPPET = 200


@dataclass(frozen=True)
class FieldNames:
    """Which input fields hold the id, the text and the title (BEIR names by default)."""

    id: str = "_id"
    text: str = "text"
    title: str = "title"
    # The field holding a vector made elsewhere (`{token: weight}`): read and checked instead of encoding the text,
    # which is then optional. None: records carry no vector.
    vector: str | None = None

    def listed(self) -> list[str]:
        """The names, for a checkpoint to recognise the same reading options (the vector field only when set)."""
        return [self.id, self.text, self.title, *([self.vector] if self.vector else [])]


@dataclass(frozen=True)
class Record:
    """One usable document. `fields` holds the other input fields, passed through to the index unchanged."""

    doc_id: str
    text: str
    title: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0
    # The whole document as an index stored it (a re-encode): written back as it is, under its own field names;
    # None writes `fields` with `doc_id`, `title` and `text`.
    document: Mapping[str, Any] | None = None
    # A vector made elsewhere, read from the input field `vector_field` (see `FieldNames.vector`).
    vector: SparseVector | None = None
    vector_field: str = ""

    def source(self) -> dict[str, Any]:
        """The record as it was read, for a dead-letter entry that can be replayed."""
        if self.document is not None:
            return {"_id": self.doc_id, **self.document}
        carried = {} if self.vector is None else {self.vector_field: self.vector.to_dict()}
        return {"_id": self.doc_id, "title": self.title, "text": self.text, **self.fields, **carried}

    def nothing_to_index(self) -> str | None:
        """Why this record is skipped when empty records are (`--index-empty` indexes them); None when it is not."""
        if self.vector is not None:
            return None if self.vector else "empty vector: nothing to index"
        return None if self.text.strip() or self.title.strip() else "empty text and title: nothing to encode"

    def stored(self) -> dict[str, Any]:
        """The document's `_source` in the index, without the vector."""
        if self.document is not None:
            return dict(self.document)
        return {**self.fields, "doc_id": self.doc_id, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class RecordError:
    """A record that cannot be indexed, with the reason a person can act on."""

    line: int
    reason: str
    doc_id: str | None = None
    raw: str = ""
    # The whole document a re-encode read from an index, for the dead-letter entry to carry (it can be replayed).
    record: Mapping[str, Any] | None = None


Item = Record | RecordError


def _snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def to_record(obj: Any, names: FieldNames, line: int, raw: bytes | str = "") -> Item:
    """Validate one parsed input object; every problem becomes a RecordError naming the field and the fix."""
    if not isinstance(obj, dict):
        return RecordError(line, f"not a JSON object but {type(obj).__name__}", raw=_snippet(raw))
    doc_id = obj.get(names.id)
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        if doc_id is None or doc_id == "":
            reason = f"missing id: no {names.id!r} field (choose another with --id-field)"
        else:
            reason = f"id field {names.id!r} must be a string or an integer, got {type(doc_id).__name__}"
        return RecordError(line, reason, raw=_snippet(raw))
    doc_id = str(doc_id)
    if not doc_id.strip():
        return RecordError(line, f"missing id: field {names.id!r} is empty", raw=_snippet(raw))
    vector: SparseVector | None = None
    if names.vector is not None:  # the vector is given: the text is optional
        if names.vector not in obj:
            reason = f"no {names.vector!r} field (choose another with --vector-field)"
            return RecordError(line, reason, doc_id=doc_id, raw=_snippet(raw))
        problem = vector_problem(obj[names.vector])
        if problem:
            return RecordError(line, f"vector field {names.vector!r}: {problem}", doc_id=doc_id, raw=_snippet(raw))
        vector = SparseVector(obj[names.vector])
    elif names.text not in obj:
        reason = f"no {names.text!r} field (choose another with --text-field)"
        return RecordError(line, reason, doc_id=doc_id, raw=_snippet(raw))
    values: dict[str, str] = {}
    for label, name in (("id", names.id), ("text", names.text), ("title", names.title)):
        value = obj.get(name)
        if label == "id":
            value = doc_id
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            reason = f"{label} field {name!r} must be a string, got {type(value).__name__}"
            return RecordError(line, reason, doc_id=doc_id, raw=_snippet(raw))
        if not valid_unicode(value):
            reason = f"{label} field {name!r} is not valid Unicode (a lone surrogate escape)"
            return RecordError(line, reason, doc_id=doc_id, raw=_snippet(raw))
        values[label] = value
    used = {names.id, names.text, names.title, names.vector}
    extra: dict[str, Any] = {}
    for key, item in obj.items():
        if key in used:
            continue
        if key in RESERVED_FIELDS or key.startswith("_") or is_vector_field(key):
            lost = collision(key, item, values, names)
            if lost:
                return RecordError(line, lost, doc_id=doc_id, raw=_snippet(raw))
            continue  # a copy of what the index writes anyway (the doc_id of a re-encoded index): nothing is lost
        extra[key] = item
    return Record(
        doc_id=doc_id,
        text=values["text"],
        title=values["title"],
        fields=extra,
        line=line,
        vector=vector,
        vector_field=names.vector or "",
    )


_WRITTEN_AS = {"doc_id": "id", "_id": "id", "text": "text", "title": "title"}
_OPTIONS = {"id": "--id-field", "text": "--text-field", "title": "--title-field"}


def collision(name: str, value: Any, values: Mapping[str, str], names: FieldNames) -> str | None:
    """Why the input field `name`, which the index cannot store under that name, would be lost with its record.

    None when dropping it loses nothing: it is null or empty (an empty CSV cell), or a copy of the record's id, text
    or title (the `doc_id` that every document of a re-encoded index carries). `values` holds the record's "id",
    "text" and "title".
    """
    if value is None or value == "":
        return None
    label = _WRITTEN_AS.get(name)
    if label is not None and not isinstance(value, bool):
        copy = str(value) if label == "id" and isinstance(value, int) else value
        if copy == values[label]:
            return None
    if name == VECTOR_FIELD:
        return f"field {name!r} would be overwritten by the SPLADE vector: rename it in the input"
    if is_vector_field(name):
        return (
            f"field {name!r} would be overwritten by the pruned SPLADE vector splade-os writes there: rename it "
            "in the input"
        )
    if name.startswith("_"):
        return (
            f"field {name!r} starts with '_', which OpenSearch keeps for its own metadata: rename it in the input, "
            "or choose it with --id-field, --text-field or --title-field"
        )
    assert label is not None
    source = {"id": names.id, "text": names.text, "title": names.title}[label]
    return (
        f"field {name!r} would be overwritten by the {label} read from {source!r}: rename it in the input, "
        f"or choose it with {_OPTIONS[label]}"
    )


def detect_format(source: str | Path) -> str:
    """The format from the file name: .jsonl/.ndjson/.json, .csv, .tsv/.tab; a folder is BEIR (JSON Lines)."""
    if str(source) == "-":
        return "jsonl"
    path = Path(source)
    if path.is_dir():
        return "jsonl"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix == ".tab":
        return "tsv"
    raise ConfigError(f"cannot tell the format of {str(source)!r} from its name: pass --format jsonl, csv or tsv")


def resolve_path(source: str | Path) -> Path | None:
    """The file to read (a BEIR folder's corpus.jsonl), or None for stdin."""
    if str(source) == "-":
        return None
    path = Path(source)
    if path.is_dir():
        corpus = path / "corpus.jsonl"
        if not corpus.is_file():
            raise InputError(f"{path} is a folder but holds no corpus.jsonl: give a BEIR folder or a corpus file")
        return corpus
    if not path.is_file():
        raise InputError(f"corpus {str(source)!r} does not exist")
    return path


class CorpusReader:
    """Iterates the records of one corpus; `offset` and `digest()` describe the bytes consumed so far."""

    resumable = True

    def __init__(
        self,
        source: str | Path,
        *,
        corpus_format: str | None = None,
        names: FieldNames | None = None,
        columns: Sequence[str] | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        stdin: BinaryIO | None = None,
    ) -> None:
        self.path = resolve_path(source)
        self.format = corpus_format or detect_format(source)
        if self.format not in FORMATS:
            raise ConfigError(f"unknown corpus format {self.format!r}: use one of {', '.join(FORMATS)}")
        self.names = names or FieldNames()
        self.columns = list(columns) if columns else None
        self.max_record_bytes = max_record_bytes
        self.size = self.path.stat().st_size if self.path else None
        self.label = str(self.path) if self.path else "<stdin>"
        self._stream: BinaryIO = open(self.path, "rb") if self.path else (stdin or sys.stdin.buffer)
        self._hash = hashlib.sha256()
        self.offset = 0
        self.line = 0
        self.header: list[str] | None = None  # a CSV/TSV's columns, once read
        self._ahead: tuple[list[Item], Iterator[Item]] | None = None

    def identity(self) -> dict[str, Any]:
        """What a checkpoint records to recognise this input and these reading options again."""
        return {
            "path": str(self.path.resolve()) if self.path else "-",
            "format": self.format,
            "fields": self.names.listed(),
            "columns": self.columns,
        }

    def digest(self) -> str:
        return self._hash.hexdigest()

    def skip_to(self, offset: int, line: int, digest: str) -> None:
        """Consume the first `offset` bytes (already indexed) and check they are the bytes read before."""
        remaining = offset
        while remaining:
            block = self._stream.read(min(remaining, 1 << 20))
            if not block:
                break
            self._hash.update(block)
            remaining -= len(block)
        if remaining or self.digest() != digest:
            raise InputError(
                f"{self.label} is not the input of the interrupted run (its first {offset} bytes differ): resume "
                "with the same file, or start over with --recreate"
            )
        self.offset, self.line = offset, line

    def close(self) -> None:
        if self.path:
            self._stream.close()

    def _raw_lines(self) -> Iterator[bytes | None]:
        """Lines as bytes; None stands for a line over the size limit, which is consumed but not kept."""
        limit = self.max_record_bytes
        while True:
            raw = self._stream.readline(limit + 1)
            if not raw:
                return
            self._hash.update(raw)
            self.offset += len(raw)
            if len(raw) > limit and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # drain the rest of the oversized line in bounded pieces
                    raw = self._stream.readline(1 << 20)
                    self._hash.update(raw)
                    self.offset += len(raw)
                yield None
            else:
                yield raw

    def __iter__(self) -> Iterator[Item]:
        if self._ahead is not None:  # the records `check_start` read ahead come first
            (ahead, rest), self._ahead = self._ahead, None
            return itertools.chain(ahead, rest)
        if self.format == "jsonl":
            return self._jsonl()
        return self._table(delimiter="," if self.format == "csv" else "\t")

    def check_start(self, n: int) -> None:
        """Refuse, before a load creates anything, an input it could index nothing of: a CSV/TSV without the id or
        text column, or one whose first `n` records all fail. They are read ahead, and iterating yields them again
        (`n` at most a batch, so each batch's checkpoint still records the bytes read up to its end)."""
        items = iter(self)
        ahead = list(itertools.islice(items, n))
        self._ahead = (ahead, items)
        columns = self.columns or self.header
        if columns is not None:
            listed = ",".join(columns)
            wanted = [("--id-field", self.names.id), ("--text-field", self.names.text)]
            for option, name in wanted[: 1 if self.names.vector else 2]:  # with vectors, the text is optional
                if name not in columns:
                    others = [c for c in columns if c not in (self.names.id, self.names.title)] or ["COLUMN"]
                    pick = columns[0] if option == "--id-field" else others[0]
                    raise InputError(f"{self.label} has no {name!r} column: columns: {listed}; pass {option} {pick}")
        failed = [item for item in ahead if isinstance(item, RecordError)]
        if ahead and len(failed) == len(ahead):
            reasons = list(dict.fromkeys(f.reason for f in failed))
            more = len(reasons) - 1
            first = f"line {failed[0].line}: {reasons[0]}" + (f"; and {more} other reasons" if more else "")
            raise InputError(
                f"{self.label}: the first {len(failed)} records all fail ({first}); nothing was created: "
                "fix the input or the options and run again"
            )

    def _too_large(self) -> RecordError:
        return RecordError(self.line, f"record is larger than {self.max_record_bytes} bytes (--max-record-bytes)")

    def _jsonl(self) -> Iterator[Item]:
        for raw in self._raw_lines():
            self.line += 1
            if raw is None:
                yield self._too_large()
                continue
            if not raw.strip():
                continue  # blank lines are layout, not records
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RecordError(self.line, f"invalid UTF-8 at byte {err.start} of the line", raw=_snippet(raw))
                continue
            try:
                obj = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield RecordError(self.line, f"malformed JSON: {err.msg} at column {err.colno}", raw=_snippet(text))
                continue
            yield to_record(obj, self.names, self.line, text)

    def _decoded_lines(self, bad_lines: set[int]) -> Iterator[str]:
        # The csv module wants str; undecodable bytes are kept as surrogates and the row is reported afterwards.
        for raw in self._raw_lines():
            self.line += 1
            if raw is None:
                bad_lines.add(self.line)
                yield "\n"
                continue
            yield raw.decode("utf-8", "surrogateescape")

    def _table(self, delimiter: str) -> Iterator[Item]:
        csv.field_size_limit(max(csv.field_size_limit(), self.max_record_bytes))
        oversized: set[int] = set()
        lines = self._decoded_lines(oversized)
        if delimiter == "\t":  # TSV corpora (MS MARCO style) do not quote: a `"` in a text is just a character
            reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(lines, delimiter=delimiter)
        header = self.columns
        while True:
            first_line = self.line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield RecordError(first_line, f"malformed {self.format.upper()} row: {err}")
                continue
            if oversized & set(range(first_line, self.line + 1)):
                yield self._too_large()
                continue
            if not row or row == [""]:
                continue
            if header is None:
                header = self.header = row
                continue
            raw = delimiter.join(row)
            if not valid_unicode(raw):
                yield RecordError(first_line, "invalid UTF-8 in the row", raw=_snippet(raw.encode("utf-8", "replace")))
                continue
            if len(row) != len(header):
                reason = f"row has {len(row)} fields but the header has {len(header)}"
                yield RecordError(first_line, reason, raw=_snippet(raw))
                continue
            yield to_record(dict(zip(header, row, strict=True)), self.names, first_line, raw)
