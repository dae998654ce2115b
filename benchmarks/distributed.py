"""Distributed indexing (`index --ray`) against the single-process `index`, in one run, on the same machine.

    python benchmarks/distributed.py --model models/splade-tiny --corpus ../shared/data/scifact --workers 1,2

Single process: `index_corpus` with one encoder using --threads threads. Ray: `index_corpus_on_ray` on a Ray
instance started on this machine with --threads CPUs, once per worker count, each worker encoding with
--threads / N threads. Every run writes a fresh index and is verified. Reported per Ray run: documents/s over the
whole run (Ray already started), how long Ray took to start, each worker's startup (from the start of the run to
its first block: process, imports, encoder and client), the gap a worker waits between two of its blocks (the
per-block overhead of Ray Data), and the tail after the last block (refresh and count check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from splade_os.connection import ConnectionSettings
from splade_os.corpus import CorpusReader
from splade_os.engines.clients import connect
from splade_os.indexing import BulkOptions, LoadOptions, index_corpus
from splade_os.indexing.block_worker import BlockResult, SpladeRecipe
from splade_os.indexing.distributed import BlockDone, RayWorkers, index_corpus_on_ray
from splade_os.model.encoder import SpladeEncoder
from splade_os.model.settings import EncoderSettings

REPO = Path(__file__).resolve().parents[1]


def single_process(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    encoder = SpladeEncoder(args.model, threads=args.threads)
    client = connect()
    start = time.perf_counter()
    summary = index_corpus(
        client,
        args.corpus,
        index=f"{args.index}-single",
        encoder=encoder,
        load=LoadOptions(
            recreate=True,
            replicas=0,
            checkpoint=workdir / f"{args.index}-single.checkpoint.json",
            dead_letter=workdir / f"{args.index}-single.dead-letter.jsonl",
            bulk=BulkOptions(batch_size=args.batch_size),
        ),
    )
    wall = time.perf_counter() - start
    client.close()
    return {
        "docs_per_s": round(summary.counters.indexed / wall, 1),
        "seconds": round(wall, 1),
        "indexed": summary.counters.indexed,
        "verified": summary.verified,
    }


def on_ray(args: argparse.Namespace, workdir: Path, workers: int) -> dict[str, Any]:
    threads = max(1, args.threads // workers)
    results: list[BlockResult] = []

    def record(done: BlockDone) -> None:
        results.append(done.result)

    recipe = SpladeRecipe(str(args.model), EncoderSettings(threads=threads))
    name = f"{args.index}-ray{workers}"
    start, clock = time.perf_counter(), time.time()
    summary = index_corpus_on_ray(
        ConnectionSettings.from_env(),
        args.corpus,
        index=name,
        recipe=recipe,
        pool=RayWorkers(workers=workers, cpus_per_worker=threads),
        block_size=args.block_size,
        on_block=record,
        load=LoadOptions(
            recreate=True,
            replicas=0,
            checkpoint=workdir / f"{name}.checkpoint.json",
            dead_letter=workdir / f"{name}.dead-letter.jsonl",
            bulk=BulkOptions(batch_size=args.batch_size),
        ),
    )
    wall, ended = time.perf_counter() - start, time.time()
    by_worker: dict[int, list[BlockResult]] = {}
    for r in sorted(results, key=lambda r: r.began):
        by_worker.setdefault(r.worker, []).append(r)
    startups = [blocks[0].began - clock for blocks in by_worker.values()]
    loads = [r.startup for r in results if r.startup]
    pairs = [(a, b) for blocks in by_worker.values() for a, b in zip(blocks, blocks[1:], strict=False)]
    gaps = [b.began - (a.began + a.seconds) for a, b in pairs]
    last_end = max(r.began + r.seconds for r in results)
    busy = sum(r.seconds for r in results)
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "docs_per_s": round(summary.counters.indexed / wall, 1),
        "seconds": round(wall, 1),
        "indexed": summary.counters.indexed,
        "verified": summary.verified,
        "blocks": len(results),
        "worker_processes": len(by_worker),
        "worker_startup_s": [round(s, 1) for s in startups],
        "encoder_and_client_load_s": [round(s, 2) for s in loads],
        "block_s_mean": round(busy / len(results), 1),
        "docs_per_s_inside_blocks": round(summary.counters.indexed / (busy / max(1, len(by_worker))), 1),
        "gap_between_blocks_s_mean": round(statistics.mean(gaps), 3) if gaps else None,
        "tail_after_last_block_s": round(ended - last_end, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "splade-tiny")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--index", default="bench-distributed")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPUs for encoding, shared by the workers")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--block-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, help="only the first N documents (a quick check, not the figure)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    args.corpus = CorpusReader(args.corpus).path or args.corpus  # a BEIR folder's corpus.jsonl
    if args.limit:
        sample = workdir / f"{args.index}-sample.jsonl"
        with open(args.corpus, "rb") as full, open(sample, "wb") as out:
            out.writelines(line for _, line in zip(range(args.limit), full, strict=False))
        args.corpus = sample

    import ray

    figures: dict[str, Any] = {
        "corpus": str(args.corpus),
        "threads": args.threads,
        "block_size": args.block_size,
        "batch_size": args.batch_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, Ray {ray.__version__}",
    }
    figures["single_process"] = single_process(args, workdir)
    print("single process:", json.dumps(figures["single_process"]), flush=True)
    start = time.perf_counter()
    ray.init(num_cpus=args.threads, include_dashboard=False)
    figures["ray_init_s"] = round(time.perf_counter() - start, 1)
    print("ray.init:", figures["ray_init_s"], "s", flush=True)
    figures["ray"] = []
    for workers in (int(n) for n in args.workers.split(",")):
        figures["ray"].append(on_ray(args, workdir, workers))
        print(f"ray, {workers} workers:", json.dumps(figures["ray"][-1]), flush=True)
    ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["single_process"]["verified"] and all(r["verified"] for r in figures["ray"]) else 1


if __name__ == "__main__":
    sys.exit(main())
