"""Encode a JSON Lines file (BEIR corpus or queries layout) into JSON Lines of sparse vectors.

In:  `{"_id": "4983", "title": "...", "text": "..."}` (corpus) or `{"_id": "0", "text": "..."}` (queries).
Out: `{"_id": "4983", "title": "...", "text": "...", ..., "vector": {"token": weight, ...}}`, one line per good
input record, in input order: the record's fields as `index --vectors` reads them (title and text under those names,
every other field as it is) with the vector beside them; `keep_fields=False` writes `_id` and `vector` alone.

Records are read and checked by `splade_os.corpus`, with the same rules as `splade-os index`: a line that is not
valid UTF-8 or JSON, a record without an id or text, a field the index would overwrite, or an id seen before is a
`RecordError` naming the line and the fix. Bad records are reported and left out; the good ones are all written.

A corpus record is encoded as `title + " " + text` when the title is not empty, which is what BEIR's
evaluation code and SPLADE's BEIR runs feed the model; queries use `text` only. Records stream through in
blocks so memory stays bounded whatever the input size (apart from the set of ids seen, to refuse duplicates);
each block is length-sorted by the encoder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from splade_os.corpus import CorpusReader, FieldNames, Item, Record, RecordError
from splade_os.errors import ConfigError, InputError
from splade_os.model.encoder import SpladeEncoder

BLOCK_SIZE = 512
VECTOR_KEY = "vector"  # where each output line holds its vector; `index --vectors` reads it there


@dataclass
class EncodeSummary:
    """What one encode run did: every non-blank input record was either written or failed."""

    written: int = 0
    failed: int = 0

    @property
    def read(self) -> int:
        return self.written + self.failed


def record_text(record: Record, *, query: bool = False) -> str:
    """The text SPLADE sees for one BEIR record."""
    title = "" if query else record.title
    return f"{title} {record.text}" if title.strip() else record.text


def unique_ids(items: Iterable[Item]) -> Iterator[Item]:
    """The items, with every record whose id an earlier record already had turned into a RecordError."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Record):
            if item.doc_id in seen:
                reason = (
                    f"duplicate id {item.doc_id!r}: an earlier record has it and was kept; give each record its own id"
                )
                yield RecordError(item.line, reason, doc_id=item.doc_id)
                continue
            seen.add(item.doc_id)
        yield item


def _blocks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    block: list[Item] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def encode_records(
    encoder: SpladeEncoder,
    items: Iterable[Item],
    sink: IO[str],
    *,
    queries: bool = False,
    block_size: int = BLOCK_SIZE,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[RecordError], None] | None = None,
    keep_fields: bool = True,
) -> EncodeSummary:
    """Encode the good records of `items` to vector lines on `sink`; each bad one goes to `on_error` instead."""
    encode = encoder.encode_queries if queries else encoder.encode_documents
    summary = EncodeSummary()
    items = unique_ids(items)
    if keep_fields:
        items = (_no_vector_field(item) for item in items)
    for block in _blocks(items, block_size):
        records = [item for item in block if isinstance(item, Record)]
        vectors = encode([record_text(record, query=queries) for record in records])
        for record, vector in zip(records, vectors, strict=True):
            line = _fields(record, queries) if keep_fields else {"_id": record.doc_id}
            sink.write(json.dumps({**line, VECTOR_KEY: vector.to_dict()}, ensure_ascii=False) + "\n")
        for item in block:
            if isinstance(item, RecordError) and on_error is not None:
                on_error(item)
        summary.written += len(records)
        summary.failed += len(block) - len(records)
        if on_progress is not None:
            on_progress(len(block))
    sink.flush()
    return summary


def _fields(record: Record, queries: bool) -> dict[str, object]:
    """What a later `index --vectors` (or any store) needs beside the vector: the id, the texts, the other fields."""
    texts = {"text": record.text} if queries else {"title": record.title, "text": record.text}
    return {"_id": record.doc_id, **texts, **record.fields}


def _no_vector_field(item: Item) -> Item:
    if isinstance(item, Record) and VECTOR_KEY in item.fields:
        return RecordError(
            item.line,
            f"field {VECTOR_KEY!r} would be overwritten by the encoded vector: rename it in "
            "the input, or pass --vectors-only",
            doc_id=item.doc_id,
        )
    return item


def describe(error: RecordError, source: str) -> str:
    """One line for a bad record: where it is, which id it has, what is wrong and what to do."""
    where = f"{source} line {error.line}" + (f" (id {error.doc_id!r})" if error.doc_id is not None else "")
    return f"{where}: {error.reason}; not encoded"


def encode_path(
    encoder: SpladeEncoder,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    queries: bool = False,
    names: FieldNames | None = None,
    block_size: int = BLOCK_SIZE,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    stdin: BinaryIO | None = None,
    keep_fields: bool = True,
) -> EncodeSummary:
    """`encode_records` over a JSON Lines file; `-` (or no output path) means stdin / stdout.

    `on_error` gets one line per bad record (see `describe`); the output holds every good record.
    """
    if str(input_path) != "-":
        path = Path(input_path)
        if path.is_dir():
            raise InputError(
                f"{path} is a folder: give the JSON Lines file to encode (its corpus.jsonl or queries.jsonl)"
            )
        if not path.is_file():
            raise InputError(f"input file {path} does not exist")
    with ExitStack() as stack:
        reader = CorpusReader(input_path, corpus_format="jsonl", names=names, stdin=stdin)
        stack.callback(reader.close)
        if output_path is None or str(output_path) == "-":
            sink: IO[str] = sys.stdout
        else:
            try:
                sink = stack.enter_context(Path(output_path).open("w", encoding="utf-8"))
            except OSError as err:
                raise ConfigError(f"cannot write the output file {output_path}: {err.strerror or err}") from err
        report = None if on_error is None else (lambda error: on_error(describe(error, reader.label)))
        return encode_records(
            encoder,
            reader,
            sink,
            queries=queries,
            block_size=block_size,
            on_progress=on_progress,
            on_error=report,
            keep_fields=keep_fields,
        )
