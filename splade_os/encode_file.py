"""Encode a JSON Lines file (BEIR corpus or queries layout) into JSON Lines of sparse vectors.

In:  `{"_id": "4983", "title": "...", "text": "..."}` (corpus) or `{"_id": "0", "text": "..."}` (queries).
Out: `{"_id": "4983", "vector": {"token": weight, ...}}`, one line per input record, in input order.

A corpus record is encoded as `title + " " + text` when the title is not empty, which is what BEIR's
evaluation code and SPLADE's BEIR runs feed the model; queries use `text` only. Records stream through in
blocks so memory stays bounded whatever the input size; each block is length-sorted by the encoder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from splade_os.encoder import SpladeEncoder
from splade_os.errors import InputError

BLOCK_SIZE = 512


def record_text(record: dict[str, Any], *, query: bool = False, where: str = "record") -> str:
    """The text SPLADE sees for one BEIR record."""
    text = record.get("text", "")
    title = "" if query else record.get("title", "")
    for name, value in (("text", text), ("title", title)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: field {name!r} is {type(value).__name__}, expected a string")
    text, title = text or "", title or ""
    return f"{title} {text}" if title.strip() else text


def read_records(lines: Iterable[str], source: str = "input") -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, record) per non-blank JSON line; a line that is not a JSON object with `_id` is an InputError."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where} is a JSON {type(record).__name__}, expected an object with _id and text")
        if "_id" not in record:
            raise InputError(f'{where} has no _id field (BEIR layout: {{"_id": ..., "title": ..., "text": ...}})')
        yield str(record["_id"]), record


def _blocks(records: Iterator[tuple[str, dict[str, Any]]], size: int) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    block: list[tuple[str, dict[str, Any]]] = []
    for item in records:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def encode_jsonl(
    encoder: SpladeEncoder,
    source: IO[str],
    sink: IO[str],
    *,
    queries: bool = False,
    source_name: str = "input",
    block_size: int = BLOCK_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Stream records from `source` to vector lines on `sink`; return the number of records written."""
    encode = encoder.encode_queries if queries else encoder.encode_documents
    written = 0
    for block in _blocks(read_records(source, source_name), block_size):
        texts = [record_text(record, query=queries, where=f"{source_name} record {_id!r}") for _id, record in block]
        for (_id, _), vector in zip(block, encode(texts), strict=True):
            sink.write(json.dumps({"_id": _id, "vector": vector.to_dict()}, ensure_ascii=False) + "\n")
        written += len(block)
        if on_progress is not None:
            on_progress(len(block))
    sink.flush()
    return written


def encode_path(
    encoder: SpladeEncoder,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    queries: bool = False,
    block_size: int = BLOCK_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """`encode_jsonl` over paths; `-` (or no output path) means stdin / stdout."""
    with ExitStack() as stack:
        if str(input_path) == "-":
            source: IO[str] = sys.stdin
            name = "<stdin>"
        else:
            path = Path(input_path)
            if not path.is_file():
                raise InputError(f"input file {path} does not exist")
            source = stack.enter_context(path.open(encoding="utf-8"))
            name = str(path)
        if output_path is None or str(output_path) == "-":
            sink: IO[str] = sys.stdout
        else:
            sink = stack.enter_context(Path(output_path).open("w", encoding="utf-8"))
        return encode_jsonl(
            encoder, source, sink, queries=queries, source_name=name, block_size=block_size, on_progress=on_progress
        )
