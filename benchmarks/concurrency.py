"""Load as a search application produces it: S concurrent clients sharing one searcher, against a real node.

    python benchmarks/concurrency.py [--dataset ../shared/data/scifact] [--model models/splade-tiny]
                                     [--queries 300] [--clients 1,4,16]

Threads share one `Searcher` (one encoder, one client), as a threaded web server does; asyncio tasks share one
`AsyncSearcher`. Each client count runs the same fixed list of queries, modes mixed (splade, two-phase, hybrid,
bm25) so the shared encoder, the shared client and every request builder are exercised at once. Every result
(query vector, hit ids and scores) is compared with the serial result of the same query: the run exits 1 on any
mismatch or error. Throughput is reported against the single-client throughput measured in the same run.

The dataset is a BEIR folder (SciFact: https://github.com/beir-cellar/beir); the index is built when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scifact_common import beir_missing

from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import client_for
from splade_os.evaluation.evaluate import default_index_name, evaluate, load_beir
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import AsyncSearcher, Searcher, SearchResult

REPO = Path(__file__).resolve().parents[1]
MODES = ("splade", "two-phase", "hybrid", "bm25")
Outcome = tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]


def outcome(result: SearchResult) -> Outcome:
    """What must not depend on concurrency: the query vector and the ranked hits with their scores."""
    return tuple(result.query_vector.sorted_items()), tuple((h.id, h.score) for h in result.hits)


@dataclass
class Run:
    kind: str
    clients: int
    seconds: float
    latencies: list[float]
    errors: int
    mismatches: int

    @property
    def qps(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def thread_run(searcher: Searcher, work: list[tuple[str, str]], expected: list[Outcome], clients: int) -> Run:
    def one(i: int) -> tuple[float, bool]:
        text, mode = work[i]
        start = time.perf_counter()
        result = searcher.search(text, k=10, mode=mode)  # type: ignore[arg-type]
        return time.perf_counter() - start, outcome(result) == expected[i]

    latencies: list[float] = []
    errors = mismatches = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(one, i) for i in range(len(work))]:
            try:
                seconds, same = future.result()
            except Exception as err:  # counted and shown: the benchmark must report every failure
                errors += 1
                print(f"  error: {type(err).__name__}: {err}", file=sys.stderr)
                continue
            latencies.append(seconds)
            mismatches += not same
    return Run("threads", clients, time.perf_counter() - start, latencies, errors, mismatches)


async def async_run(searcher: AsyncSearcher, work: list[tuple[str, str]], expected: list[Outcome], clients: int) -> Run:
    gate = asyncio.Semaphore(clients)
    latencies: list[float] = []
    errors = mismatches = 0

    async def one(i: int) -> None:
        nonlocal errors, mismatches
        text, mode = work[i]
        async with gate:
            start = time.perf_counter()
            try:
                result = await searcher.search(text, k=10, mode=mode)  # type: ignore[arg-type]
            except Exception as err:
                errors += 1
                print(f"  error: {type(err).__name__}: {err}", file=sys.stderr)
                return
            latencies.append(time.perf_counter() - start)
            mismatches += outcome(result) != expected[i]

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(work))))
    return Run("asyncio", clients, time.perf_counter() - start, latencies, errors, mismatches)


def report(run: Run, baseline: float) -> str:
    return (
        f"{run.kind:<8} S={run.clients:<3} {run.qps:7.1f} q/s  x{run.qps / baseline:4.2f}  "
        f"p50 {run.pct(50) * 1000:6.1f} ms  p95 {run.pct(95) * 1000:6.1f} ms  p99 {run.pct(99) * 1000:6.1f} ms  "
        f"errors {run.errors}  mismatches {run.mismatches}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--index")
    parser.add_argument("--queries", type=int, default=300, help="queries per run (cycled over the dataset's)")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts; the first is the baseline")
    args = parser.parse_args()
    if beir_missing(args.dataset):
        return 2
    counts = [int(c) for c in args.clients.split(",")]
    settings = ConnectionSettings.from_env(pool_maxsize=max(counts))
    client = client_for(settings)
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    index = args.index or default_index_name(dataset, encoder.manifest)
    if not client.indices.exists(index=index):
        print(f"indexing {dataset.corpus} into {index} ...", flush=True)
        evaluate(args.dataset, encoder, client=client, index=index, modes=())
    texts = list(dataset.queries.values())
    work = [(texts[i % len(texts)], MODES[i % len(MODES)]) for i in range(args.queries)]
    searcher = Searcher(index, encoder, client=client)
    expected = [outcome(searcher.search(text, k=10, mode=mode)) for text, mode in work]  # type: ignore[arg-type]
    print(
        f"{dataset.root.name}: {client.count(index=index)['count']} documents, {len(work)} queries per run, "
        f"modes {', '.join(MODES)}, encoder threads {encoder.threads}"
    )

    runs = [thread_run(searcher, work, expected, s) for s in counts]

    async def async_all() -> list[Run]:
        async with await AsyncSearcher.create(index, encoder, settings=settings) as shared:
            return [await async_run(shared, work, expected, s) for s in counts]

    runs += asyncio.run(async_all())
    for kind in ("threads", "asyncio"):
        mine = [r for r in runs if r.kind == kind]
        for run in mine:
            print(report(run, mine[0].qps))
    bad = sum(r.errors + r.mismatches for r in runs)
    print(
        f"total: {bad} errors and mismatches over {sum(len(r.latencies) + r.errors for r in runs)} searches; "
        f"median latency at S=1 {statistics.median(runs[0].latencies) * 1000:.1f} ms"
    )
    client.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
