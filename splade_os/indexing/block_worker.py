"""The worker of a distributed load: a Ray actor that loads its encoder and client once, then reads, encodes and
bulk-indexes whole blocks with the single-process pipeline, and hands the driver one result per block.

A block may be sent twice (its worker died and Ray ran it again, or the driver was restarted before it recorded
the block): the corpus id is the `_id`, so the second send overwrites instead of duplicating. Into a new index
documents are sent with `create`; a conflict with a document identical to the one being sent is the first send of
this same record, not a duplicate id, and counts as indexed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from splade_os.connection import ConnectionSettings
from splade_os.corpus import FieldNames, Item, Record
from splade_os.engines import clients, engine_for
from splade_os.errors import ConfigError, warn_keyword_form
from splade_os.indexing.blocks import Block, Earlier, read_block
from splade_os.indexing.ledger import Counters
from splade_os.indexing.options import BulkOptions, DocumentEncoder, EncoderRecipe
from splade_os.indexing.pipeline import Loader, Result, run, stored_documents
from splade_os.indexing.target import Target
from splade_os.mappings import is_vector_field
from splade_os.model.settings import EncoderSettings


@dataclass(frozen=True, init=False)
class SpladeRecipe:
    """A `SpladeEncoder` as each worker builds it: a model folder and its `EncoderSettings`, plain data that travels
    to the workers. The model folder must be at this path on every worker (`settings.device="cuda"` on a worker given
    GPUs).

    The fields of `EncoderSettings` as keywords (`SpladeRecipe(folder, threads=2)`) are the form of 0.1: they still
    work, with a `KeywordFormWarning` (a DeprecationWarning).
    """

    model_dir: str
    settings: EncoderSettings

    def __init__(self, model_dir: str | Path, settings: EncoderSettings | None = None, **fields: Any) -> None:
        if fields:
            if settings is not None:
                raise ConfigError("give the recipe settings=EncoderSettings(...) or its fields as keywords, not both")
            warn_keyword_form("SpladeRecipe", fields, "settings=EncoderSettings(...)")
            settings = EncoderSettings(**fields)
        object.__setattr__(self, "model_dir", str(model_dir))
        object.__setattr__(self, "settings", settings or EncoderSettings())

    @cached_property
    def manifest(self) -> Mapping[str, Any]:
        from splade_os.model.folders import load_manifest

        return load_manifest(Path(self.model_dir))

    @property
    def tokens(self) -> list[str]:
        """Every token the model's vectors can hold, read from its tokenizer (no session is started)."""
        from splade_os.model.encoder import model_vocabulary

        return model_vocabulary(self.model_dir)

    def build(self) -> DocumentEncoder:
        from splade_os.model.encoder import SpladeEncoder

        return SpladeEncoder(self.model_dir, settings=self.settings)


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, as plain data. `settings` keeps its password and API key out of `repr`."""

    settings: ConnectionSettings
    recipe: EncoderRecipe
    target: Target
    names: FieldNames = FieldNames()
    skip_empty: bool = True
    bulk: BulkOptions = field(default_factory=BulkOptions)


@dataclass
class BlockResult:
    """What indexing one block did, as the driver records it."""

    block: str
    counters: Counters
    created: int
    uncertain: int
    letters: list[dict[str, Any]]
    began: float  # wall-clock time (time.time()) the worker started this block
    seconds: float  # reading, encoding and sending this block
    worker: int  # process id of the worker
    startup: float = 0.0  # seconds the worker took to load its encoder and client; on its first block only
    tokens: list[str] = field(default_factory=list)  # of the vectors sent: what the driver's df table counts

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> BlockResult:
        data = json.loads(text)
        return cls(**{**data, "counters": Counters(**data["counters"])})


class LetterList:
    """A worker's dead letters for one block, each naming its file; the driver writes them to the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []

    def write(self, entry: Mapping[str, Any]) -> None:
        self.entries.append({"file": self.path, **entry})

    def tell(self) -> int:
        return len(self.entries)


class BlockSource:
    """One block as the source of the single-process pipeline (which runs it batch by batch)."""

    resumable = False
    size: int | None = None
    offset = line = 0

    def __init__(self, block: Block, names: FieldNames) -> None:
        self.block, self.names, self.label = block, names, block.id

    def __iter__(self) -> Iterator[Item]:
        return read_block(self.block, self.names)

    def identity(self) -> dict[str, Any]:
        return {"block": self.block.id}

    def digest(self) -> str:
        return ""

    def skip_to(self, offset: int, line: int, digest: str) -> None:
        raise ConfigError("a block is never resumed part-way: it is indexed again whole")


class BlockLoader(Loader):
    """The pipeline's loader, except that a `create` conflicting with an identical document counts as indexed, and
    that the records the driver found repeating an earlier id (`earlier`, by line) are dead-lettered, never sent:
    blocks land in any order, so the cluster cannot tell which copy came first."""

    def __init__(self, *args: Any, block: Block, earlier: Earlier, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block, self.earlier = block, earlier

    def first_copy(self, record: Record, batch: Mapping[str, Record]) -> str | None:
        if record.line not in self.earlier:
            return super().first_copy(record, batch)
        path, line = self.earlier[record.line]
        return f"line {line}" if path == self.block.path else f"line {line} of {path}"

    def _send(self, actions: list[dict[str, Any]]) -> dict[str, Result]:
        results = super()._send(actions)
        if self.op_type != "create":
            return results
        conflicts = [a for a in actions if not results[a["_id"]].ok and results[a["_id"]].status == 409]
        if conflicts:
            stored = stored_documents(self.client, self.target.index, [a["_id"] for a in conflicts], source=True)
            for action in conflicts:
                if same_document(stored.get(action["_id"]), action["_source"]):
                    results[action["_id"]] = Result(ok=True, created=False)  # counted as replaced
        return results


def same_document(stored: Mapping[str, Any] | None, sent: Mapping[str, Any]) -> bool:
    # The vectors are left out: the same text encoded in another batch may differ in the last bits of a weight.
    if stored is None:
        return False
    return {k: v for k, v in stored.items() if not is_vector_field(k)} == json.loads(
        json.dumps({k: v for k, v in sent.items() if not is_vector_field(k)})
    )


class BlockIndexer:
    """The Ray Data actor: built once per worker, then called with batches of one block each."""

    def __init__(self, job: WorkerJob) -> None:
        began = time.monotonic()
        self.job = job
        self.encoder = job.recipe.build()
        client = clients.client_for(job.settings)
        self.client, self._close = engine_for(client).without_retries(client)
        self.startup = time.monotonic() - began

    def __repr__(self) -> str:  # Ray shows actors by repr: never the connection settings
        return f"BlockIndexer(pid={os.getpid()})"

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        results = []
        for planned, copies in zip(batch["block"], batch["earlier"], strict=True):
            earlier = {int(line): (path, first) for line, path, first in json.loads(str(copies))}
            results.append(self.index_block(Block(**json.loads(str(planned))), earlier).to_json())
        return {"result": results}

    def index_block(self, block: Block, earlier: Earlier | None = None) -> BlockResult:
        """Index `block`, dead-lettering the lines of `earlier` as repeats of the record each one names."""
        began, clock = time.monotonic(), time.time()
        job, letters = self.job, LetterList(block.path)
        loader = BlockLoader(
            self.client,
            job.target,
            self.encoder,
            job.bulk,
            None,
            letters,
            skip_empty=job.skip_empty,
            landed=set(),
            counters=Counters(),
            total=None,
            on_progress=None,
            block=block,
            earlier=earlier or {},
        )
        run(loader, BlockSource(block, job.names))
        startup, self.startup = self.startup, 0.0
        return BlockResult(
            block.id,
            loader.counters,
            loader.created,
            loader.uncertain,
            letters.entries,
            clock,
            time.monotonic() - began,
            os.getpid(),
            startup,
            sorted(loader.seen),
        )
