"""A load spread over Ray workers: Ray Data hands the blocks of the corpus to a pool of actors, each of which reads,
encodes and bulk-indexes whole blocks into the cluster; the driver records each finished block.

The guarantees are those of the single-process load. The driver writes the dead letters and, after each finished
block, a checkpoint listing the finished blocks, so `resume` sends only the others. A worker that dies has its
actor restarted and its block run again by Ray; the corpus id is the `_id`, so a block sent twice overwrites
itself. The index's count is verified at the end, and the alias moves as in `index_corpus`.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splade_os import errors
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FieldNames
from splade_os.engines.clients import connect
from splade_os.errors import ConfigError, EncoderMismatchError, MissingDependencyError, SpladeOSError
from splade_os.indexing.block_worker import BlockIndexer, BlockResult, WorkerJob
from splade_os.indexing.blocks import Block, Earlier, corpus_files, later_copies, plan_blocks
from splade_os.indexing.lease import Lease
from splade_os.indexing.ledger import CHECKPOINT_VERSION, Checkpoint, Counters, DeadLetters
from splade_os.indexing.load import (
    IndexSummary,
    discard,
    finish,
    load_options,
    model_dir_of,
    new_target,
    reading_names,
    resumed_target,
    run_settings,
)
from splade_os.indexing.options import EncoderRecipe, LoadOptions
from splade_os.indexing.pipeline import IndexingInterrupted
from splade_os.indexing.target import Target, count_documents, try_restore_refresh

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 1000  # records per block: the unit of a retry and of the checkpoint


@dataclass
class RayWorkers:
    """Where and how wide the pool of encoding workers is."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None  # a running Ray cluster ("auto", "ray://host:10001"); None starts one on this machine

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError("a distributed load needs at least one worker, with CPUs and no negative GPU count")


@dataclass
class BlockDone:
    """One finished block, for a progress display: `done` of `total` blocks, counters for the whole corpus."""

    result: BlockResult
    done: int
    total: int
    counters: Counters
    elapsed: float
    processed: int


@dataclass
class RunTally:
    """The sum of what the workers counted, checked by `finish` like a single-process loader."""

    counters: Counters
    created: int = 0
    uncertain: int = 0
    processed: int = 0
    started: float = field(default_factory=time.monotonic)
    seen: set[str] = field(default_factory=set)  # the tokens the workers sent in this run


class BlockLedger:
    """The driver's record of a distributed load: dead letters, counters and the finished blocks, checkpointed after
    each block so a restarted driver knows which blocks not to send again."""

    def __init__(self, state: Checkpoint, letters: DeadLetters, tally: RunTally, fresh: bool) -> None:
        self.state, self.letters, self.tally, self.fresh = state, letters, tally, fresh
        self.finished: set[str] = set(state.data["finished"])

    def record(self, result: BlockResult) -> None:
        if result.block in self.finished:
            return  # Ray ran it twice and both answers reached us: it is counted once
        for letter in result.letters:
            self.letters.write(letter)
        c, t = result.counters, self.tally
        t.counters.add(c)
        t.created += result.created
        t.processed += c.read - c.resumed
        t.seen.update(result.tokens)
        # In place, a document re-sent after its worker died answers "updated" though the first send created it.
        t.uncertain += result.uncertain + (0 if self.fresh else c.replaced)
        self.finished.add(result.block)
        self.state.data.update(
            finished=sorted(self.finished), counters=asdict(t.counters), dead_letter_bytes=self.letters.tell()
        )
        self.state.save()


def index_corpus_on_ray(
    settings: ConnectionSettings,
    source: str | Path,
    *,
    index: str,
    recipe: EncoderRecipe,
    pool: RayWorkers | None = None,
    names: FieldNames | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_block: Callable[[BlockDone], None] | None = None,
    load: LoadOptions | None = None,
    **legacy: Any,
) -> IndexSummary:
    """Index JSON Lines or Parquet files (one file, a BEIR folder, or a folder of them) into alias `index` with a
    pool of Ray workers; see the module docstring. Each worker connects with `settings` and builds its encoder from
    `recipe`. `load` says how, as for `index_corpus` (whose deprecated keyword form this takes too). Call
    `summary.problems()` to decide whether the run succeeded.
    """
    client = connect(settings)
    try:
        opts = load_options("index_corpus_on_ray", client, index, load, legacy)
        resume = opts.resume
        names = reading_names(names, recipe)
        pool = pool or RayWorkers()
        assert opts.checkpoint is not None
        own = (opts.checkpoint, opts.dead_letter_path)  # in the corpus folder when given there
        blocks, files = plan_blocks(corpus_files(source, exclude=own), block_size)
        identity = {"files": files, "fields": names.listed(), "block_size": block_size}
        expected = {"mode": "ray", "input": identity, "settings": run_settings(recipe, opts)}
        lease = Lease.acquire(client, index, break_lock=opts.break_lock)  # the driver holds it for the whole run
    except BaseException:
        client.close()
        raise
    target: Target | None = None
    letters: DeadLetters | None = None
    tally: RunTally | None = None
    try:
        if resume:
            state, target = resumed_target(client, opts.checkpoint, expected)
            if target.fresh:
                client.indices.put_settings(index=target.index, body={"index": {"refresh_interval": "-1"}})
        else:
            target = new_target(client, index, recipe, opts)
            data = {"version": CHECKPOINT_VERSION, "target": asdict(target), **expected}
            state = Checkpoint(opts.checkpoint, {**data, "finished": [], "counters": asdict(Counters())})
            state.data["dead_letter_bytes"] = 0
            state.save()
        letters = DeadLetters(opts.dead_letter_path, keep_bytes=state.data["dead_letter_bytes"])
        tally = RunTally(Counters(**state.data["counters"]))
        ledger = BlockLedger(state, letters, tally, target.fresh)
        resumed = len(ledger.finished)
        todo = [b for b in blocks if b.id not in ledger.finished]
        count_at_start = count_documents(client, target.index)
        job = WorkerJob(settings, recipe, target, names, opts.skip_empty, opts.bulk)
        # Into a new index the first copy of an id in corpus order is kept, as in a single-process load: found here,
        # from the files alone, so a resumed run finds the same copies again. In place, a copy overwrites.
        earlier = later_copies(blocks, names, opts.skip_empty) if target.fresh else {}

        def record(result: BlockResult) -> None:
            ledger.record(result)
            if on_block:
                elapsed = time.monotonic() - tally.started
                on_block(BlockDone(result, len(ledger.finished), len(blocks), tally.counters, elapsed, tally.processed))

        run_blocks(todo, job, pool, record, earlier)
        summary = finish(
            client,
            target,
            tally,
            letters,
            count_at_start,
            opts,
            seen=tally.seen,
            whole=lambda: getattr(recipe, "tokens", None),
            lease=lease,
            model=model_dir_of(recipe),
        )
    except KeyboardInterrupt:
        cleanup(client, target, letters)
        raise IndexingInterrupted(
            "interrupted: the finished blocks are safely indexed; run the same command with --resume to continue"
        ) from None
    except BaseException as err:
        cleanup(client, target, letters)
        # Vectors in another vocabulary than the index's are refused before their block is sent: when no block was
        # recorded, the new index and the checkpoint would only stand in the way of the corrected command.
        if isinstance(err, EncoderMismatchError) and target and tally and not resume and not tally.counters.read:
            discard(client, target, opts)
        raise
    finally:
        lease.release()
        client.close()
    if resumed:
        summary.notes.append(f"resumed: {resumed} of {len(blocks)} blocks were indexed before and were not sent again")
    if not summary.verified and target.fresh and tally.counters.replaced:
        summary.notes.append(
            f"{tally.counters.replaced} documents were found already indexed, identical: a block sent again after its "
            "worker died"
        )
    return summary


def cleanup(client: Any, target: Target | None, letters: DeadLetters | None) -> None:
    # The checkpoint stays: it lists the blocks that are safely indexed.
    if letters is not None:
        letters.close()
    if target is not None:
        try_restore_refresh(client, target)


def run_blocks(
    blocks: list[Block],
    job: WorkerJob,
    pool: RayWorkers,
    record: Callable[[BlockResult], None],
    earlier: Mapping[str, Earlier] | None = None,
) -> None:
    """Index `blocks` on a Ray Data actor pool, handing each block's result to `record` as it finishes (in any
    order); the lines of `earlier` (by block id) repeat an earlier id and are dead-lettered, never sent. Ray is
    started on this machine for the run unless it is running or `pool.address` names a cluster."""
    if not blocks:
        return
    ray, data = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=pool.address, include_dashboard=False, logging_level=logging.WARNING)
    context = data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    earlier = earlier or {}
    items = [
        {"block": json.dumps(asdict(b)), "earlier": json.dumps([[n, *at] for n, at in earlier.get(b.id, {}).items()])}
        for b in blocks
    ]
    dataset = data.from_items(items, override_num_blocks=len(items)).map_batches(
        BlockIndexer,
        batch_size=1,
        compute=data.ActorPoolStrategy(size=pool.workers),
        fn_constructor_kwargs={"job": job},
        num_cpus=pool.cpus_per_worker,
        num_gpus=pool.gpus_per_worker or None,
    )
    # Ray Data restarts an actor pool's dead workers and runs their blocks again (max_restarts and max_task_retries
    # default to -1 there), which is what makes a killed worker lose nothing.
    rows = dataset.iter_rows()
    failure: SpladeOSError | None = None
    try:
        for row in rows:
            record(BlockResult.from_json(str(row["result"])))
    except Exception as err:
        failure = detached(worker_error(err))
    finally:
        close = getattr(rows, "close", None)
        if close:
            close()
        rows = dataset = None
        if started_here:
            ray.shutdown()
        else:
            # A stopped pool lets its actors go by reference counting, and Ray Data's executor holds them in
            # cycles: collected now, their CPUs are free for the caller's next run on the same Ray.
            gc.collect()
    if failure is not None:
        raise failure


def detached(error: SpladeOSError) -> SpladeOSError:
    """`error` without the traceback and chain it was raised with: they hold the Ray executor's frames, and through
    them the pool's actors and their CPUs, for as long as the caller keeps the error."""
    error.__traceback__ = None
    error.__cause__ = error.__context__ = None
    return error


_RAISED = re.compile(r"splade_os\.errors\.(\w+): (.+)")


def worker_error(err: BaseException) -> SpladeOSError:
    """The splade-os error a worker raised (a broken encoder, a cluster down for too long, a model folder missing on
    its machine), out of Ray's wrappers; any other failure of the workers as an interruption to resume."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, SpladeOSError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    # An actor that failed while starting reaches the driver as text only.
    for name, message in reversed(_RAISED.findall(str(err))):
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, SpladeOSError):
            return kind(message)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return IndexingInterrupted(
        f"the Ray workers stopped ({type(err).__name__}: {first[:300]}); the finished blocks are safely indexed: run "
        "the same command with --resume to continue"
    )


def _ray() -> tuple[Any, Any]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("a distributed load needs Ray: pip install 'splade-os[ray]'") from None
    return ray, ray.data
