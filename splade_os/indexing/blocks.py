"""A corpus cut into blocks for a distributed load: the same input always gives the same blocks.

A block is a range of one file: whole lines of a JSON Lines file (byte offsets) or rows of a Parquet file. Its id
names the file and the range, so a checkpoint that lists finished block ids still means the same documents after a
restart. Each block is read by the worker that indexes it, with the record rules of `splade_os.corpus`.

Which copy of a repeated id is indexed must not depend on which block reaches the cluster first, so the driver
finds every later copy before the load (`later_copies`) and each block is told which of its lines to dead-letter.
"""

from __future__ import annotations

import hashlib
import io
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade_os.corpus import CorpusReader, FieldNames, Item, Record, to_record
from splade_os.errors import ConfigError, InputError, MissingDependencyError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Block:
    path: str
    format: str  # "jsonl" or "parquet"
    start: int  # jsonl: byte offset of the first line; parquet: index of the first row
    stop: int
    first_line: int  # 1-based line (jsonl) or row (parquet) number of the first record, for dead-letter entries

    @property
    def id(self) -> str:
        unit = "bytes" if self.format == "jsonl" else "rows"
        return f"{self.path}:{unit}:{self.start}-{self.stop}"


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ConfigError(f"a distributed load reads JSON Lines and Parquet files; cannot tell what {path} holds")


def corpus_files(source: str | Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """The files of a corpus: one file, a BEIR folder's corpus.jsonl, or every JSON Lines and Parquet file of a
    folder (below it too), in name order, except `exclude`: the run's own checkpoint and dead letters, which are
    JSON files too and lie in the folder when the run starts there."""
    path = Path(source)
    if str(source) == "-":
        raise ConfigError("a distributed load reads files that every worker can open, not stdin")
    if path.is_file():
        file_format(path)
        return [path.resolve()]
    if not path.is_dir():
        raise InputError(f"corpus {str(source)!r} does not exist")
    if (path / "corpus.jsonl").is_file():
        return [(path / "corpus.jsonl").resolve()]
    suffixes = JSONL_SUFFIXES + PARQUET_SUFFIXES
    own = {Path(p).resolve() for p in exclude}
    found = sorted(
        p.resolve() for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and p.resolve() not in own
    )
    if not found:
        raise InputError(f"{path} holds no JSON Lines (.jsonl) or Parquet (.parquet) file")
    return found


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("reading Parquet needs pyarrow: pip install 'splade-os[ray]'") from None
    return pq


def plan_blocks(files: list[Path], rows_per_block: int) -> tuple[list[Block], list[list[Any]]]:
    """Cut `files` into blocks of `rows_per_block` lines or rows, and describe each file (path, size, sha256) so a
    resumed run can prove it reads the same input."""
    if rows_per_block < 1:
        raise ConfigError("the block size must be at least 1")
    blocks: list[Block] = []
    described: list[list[Any]] = []
    for path in files:
        digest = hashlib.sha256()
        if file_format(path) == "jsonl":
            blocks += _jsonl_blocks(path, rows_per_block, digest)
        else:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            rows = _parquet().ParquetFile(path).metadata.num_rows
            for start in range(0, rows, rows_per_block):
                stop = min(rows, start + rows_per_block)
                blocks.append(Block(str(path), "parquet", start, stop, start + 1))
        described.append([str(path), path.stat().st_size, digest.hexdigest()])
    return blocks, described


def _jsonl_blocks(path: Path, rows_per_block: int, digest: Any) -> list[Block]:
    blocks: list[Block] = []
    start = offset = 0
    first_line = line = 1
    with open(path, "rb") as f:
        for raw in f:
            digest.update(raw)
            offset += len(raw)
            if line - first_line + 1 == rows_per_block:
                blocks.append(Block(str(path), "jsonl", start, offset, first_line))
                start, first_line = offset, line + 1
            line += 1
    if offset > start:
        blocks.append(Block(str(path), "jsonl", start, offset, first_line))
    return blocks


def read_block(block: Block, names: FieldNames) -> Iterator[Item]:
    """The records of one block, with the line (or row) numbers they have in their file."""
    if block.format == "jsonl":
        with open(block.path, "rb") as f:
            f.seek(block.start)
            data = f.read(block.stop - block.start)
        if len(data) != block.stop - block.start:
            raise InputError(f"{block.path} is shorter than when the load was planned: it changed during the load")
        reader = CorpusReader("-", corpus_format="jsonl", names=names, stdin=io.BytesIO(data))
        reader.line = block.first_line - 1
        yield from reader
        return
    parquet = _parquet().ParquetFile(block.path)
    groups: list[int] = []
    first_row = row = 0
    for group in range(parquet.metadata.num_row_groups):  # read only the row groups that hold the block
        rows = parquet.metadata.row_group(group).num_rows
        if row < block.stop and row + rows > block.start:
            first_row = first_row if groups else row
            groups.append(group)
        row += rows
    table = parquet.read_row_groups(groups).slice(block.start - first_row, block.stop - block.start)
    for number, obj in enumerate(table.to_pylist(), start=block.first_line):
        yield to_record(obj, names, number)


# Where the first copy of an id is, as (file, line), for each line of a block that repeats an earlier id.
Earlier = dict[int, tuple[str, int]]


def later_copies(blocks: list[Block], names: FieldNames, skip_empty: bool) -> dict[str, Earlier]:
    """For each block id, its records whose id an earlier record in corpus order (`blocks` in their planned order,
    then line) already holds; only blocks that have some are listed. A record holds its id as in the single-process
    load: a valid record, unless it is empty and `skip_empty` (it is skipped, never sent).

    Memory stays at 16 bytes a record: the 64-bit hash of each id (Python's, salted per process: only its equalities
    within this run matter) and its position, sorted with numpy. Equal hashes are then checked against the ids
    themselves, read again from their blocks, so a collision never costs a record; the result is the same whatever
    the hash.
    """
    import numpy as np

    hashes, where = array("q"), array("Q")  # where: block index << 32 | record's line within its block
    for n, block in enumerate(blocks):
        for item in read_block(block, names):
            if _holds_id(item, skip_empty):
                hashes.append(hash(item.doc_id))
                where.append(n << 32 | (item.line - block.first_line))
    if len(hashes) < 2:
        return {}
    order = np.argsort(np.frombuffer(hashes, dtype=np.int64), kind="stable")  # stable: corpus order within a hash
    ordered = np.frombuffer(hashes, dtype=np.int64)[order]
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    if not repeated.any():
        return {}
    positions = np.frombuffer(where, dtype=np.uint64)[order[repeated]]
    groups = np.flatnonzero(np.diff(ordered[repeated])) + 1  # where each run of one hash starts
    ids = _ids_at(blocks, names, {int(p) for p in positions})
    found: dict[str, Earlier] = {}
    for run in np.split(positions, groups):
        first: dict[str, tuple[str, int]] = {}
        for position in map(int, run):
            block = blocks[position >> 32]
            line = block.first_line + (position & 0xFFFFFFFF)
            doc_id = ids[position]
            if doc_id in first:
                found.setdefault(block.id, {})[line] = first[doc_id]
            else:
                first[doc_id] = (block.path, line)
    return found


def _holds_id(item: Item, skip_empty: bool) -> bool:
    return isinstance(item, Record) and not (skip_empty and item.nothing_to_index())


def _ids_at(blocks: list[Block], names: FieldNames, positions: set[int]) -> dict[int, str]:
    """The ids of the records at `positions` (as `later_copies` packs them), reading only the blocks that hold one."""
    ids: dict[int, str] = {}
    for n in sorted({p >> 32 for p in positions}):
        for item in read_block(blocks[n], names):
            position = n << 32 | (item.line - blocks[n].first_line)
            if position in positions and isinstance(item, Record):
                ids[position] = item.doc_id
    return ids
