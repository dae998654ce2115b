"""Exactness and two-phase search on a whole BEIR collection (default: SciFact), against a real node.

    python benchmarks/search.py [--dataset ../shared/data/scifact] [--model models/splade-tiny] [--repeat 3]

Prints (1) OpenSearch's top-10 against exact in-memory dot products over the same stored vectors (overlap and
worst relative score error), and (2) two-phase search against the exact query: top-10 agreement, and the
latency of the search request (query encoding excluded) for both, with their ratio measured in the same run.
The index is built when missing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from splade_os.engines.clients import connect
from splade_os.evaluation.evaluate import default_index_name, evaluate, exact_run, load_beir, stored_vectors
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--index")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the queries per mode")
    args = parser.parse_args()

    client = connect()
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    index = args.index or default_index_name(dataset, encoder.manifest)
    if not client.indices.exists(index=index):
        print(f"indexing {dataset.corpus} into {index} ...", flush=True)
        evaluate(args.dataset, encoder, client=client, index=index, modes=())
    searcher = Searcher(index, encoder, client=client)
    texts = dict(dataset.queries)
    print(f"{dataset.root.name}: {client.count(index=index)['count']} documents, {len(texts)} queries, index {index}")

    # 1. Exactness against brute force over the very vectors the index stores.
    vectors = dict(zip(texts, encoder.encode_queries(list(texts.values())), strict=True))
    exact = exact_run(stored_vectors(client, index), vectors, depth=10)
    overlap = total = 0
    worst = 0.0
    for query_id, text in texts.items():
        hits = searcher.search(text, k=10).hits
        overlap += len({h.id for h in hits} & set(exact[query_id]))
        total += len(exact[query_id])
        for hit in hits:
            if hit.id in exact[query_id]:
                worst = max(worst, abs(hit.score - exact[query_id][hit.id]) / exact[query_id][hit.id])
    print(
        f"exactness: top-10 overlap with brute force {overlap / total:.4f}; worst relative score error "
        f"{worst:.2e} (bound 2^-8 = {2**-8:.2e})"
    )

    # 2. Two-phase against the exact query: agreement, then latency in alternating timed passes.
    agree = agree_total = 0
    for text in texts.values():
        full = [h.id for h in searcher.search(text, k=10).hits]
        fast = [h.id for h in searcher.search(text, k=10, mode="two-phase").hits]
        agree += len(set(full) & set(fast))
        agree_total += len(full)
    # Time the engine round trip only: query encoding is the same for both modes, so it is done beforehand.
    prepared = {
        mode: [searcher.logic.prepare(text, 10, mode, None, False).requests[0] for text in texts.values()]
        for mode in ("splade", "two-phase")
    }
    latencies: dict[str, list[float]] = {mode: [] for mode in prepared}
    for _ in range(args.repeat):
        for mode, bodies in prepared.items():
            for body in bodies:
                start = time.perf_counter()
                client.search(index=index, body=body)
                latencies[mode].append((time.perf_counter() - start) * 1000)
    print(f"two-phase: top-10 agreement with the exact query {agree / agree_total:.4f} (target >= 0.98)")
    for mode, values in latencies.items():
        print(f"  {mode:<10} p50 {statistics.median(values):6.2f} ms  p95 {np.percentile(values, 95):6.2f} ms")
    ratio = statistics.median(latencies["two-phase"]) / statistics.median(latencies["splade"])
    print(f"  two-phase / exact p50 latency ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
