"""How cost grows with the corpus, and what `tune` buys at each size, against a real node.

    python benchmarks/scale.py [--dataset ../shared/data/scifact] [--sizes 10000,100000] [--queries 100]
                               [--plot docs/scale.png]

For each size N it builds an index of N documents whose vectors follow the real model's statistics: each one
recombines two real splade-tiny SciFact document vectors (the tokens of one, and a third of the other's, keeping
their weights) and their texts, so no encoding is needed at this size. Per size it reports the bulk indexing
rate, the index size on disk against the same documents indexed for BM25 only, and the search request latency
(query encoding excluded; real SciFact test query vectors, k = 10) of exact SPLADE, the fixed default two-phase
setting, the setting `tune` picks (target agreement 0.99) and BM25, each p50 against BM25's p50 measured in the
same run, with the two-phase settings' top-10 agreement with exact search. The dataset is a BEIR folder (SciFact:
https://github.com/beir-cellar/beir); the engine is whichever `OPENSEARCH_URL`/`ELASTICSEARCH_URL` names.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from splade_os.connection import connect
from splade_os.encoder import SpladeEncoder
from splade_os.engines import engine_for
from splade_os.evaluate import default_index_name, evaluate, load_beir, stored_vectors
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.query import build_bm25_query
from splade_os.search import Searcher
from splade_os.tuning import TwoPhaseSettings, tune
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]


def synthetic_documents(base: list[tuple[str, SparseVector, str]], n: int, seed: int = 13) -> Any:
    """N documents recombined from real ones: all tokens of one, a third of another's, texts joined."""
    rng = random.Random(seed)
    for i in range(n):
        (_, first, text_a), (_, second, text_b) = rng.choice(base), rng.choice(base)
        extra = dict(rng.sample(sorted(second.items()), k=len(second) // 3))
        vector = SparseVector({**extra, **first.to_dict()})
        text = " ".join(text_a.split()[:120] + text_b.split()[:60])
        yield f"s{i}", vector, text


def build(client: Any, name: str, base: list[tuple[str, SparseVector, str]], n: int, vectors: bool) -> float:
    """Bulk-load N documents (with or without the vector field); returns documents per second."""
    engine = engine_for(client)
    body = index_body(replicas=0, engine=engine, manifest={"name": "scale", "sha256": "scale"})
    body["settings"]["index"]["refresh_interval"] = "-1"
    if not vectors:
        del body["mappings"]["properties"][VECTOR_FIELD]
    client.indices.create(index=name, body=body)
    start = time.perf_counter()

    def actions() -> Any:
        for doc_id, vector, text in synthetic_documents(base, n):
            source: dict[str, Any] = {"doc_id": doc_id, "text": text}
            if vectors:
                source[VECTOR_FIELD] = engine.to_field(vector)
            yield {"_index": name, "_id": doc_id, "_source": source}

    failed = [item for ok, item in engine.bulk(client, actions(), chunk_size=1000, request_timeout=300) if not ok]
    if failed:
        raise SystemExit(f"{len(failed)} documents failed, first: {failed[0]}")
    rate = n / (time.perf_counter() - start)
    client.indices.put_settings(index=name, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=name)
    return rate


def size_on_disk(client: Any, name: str) -> int:
    patient, timeout = engine_for(client).with_timeout(client, 1800)
    patient.indices.forcemerge(index=name, max_num_segments=1, **timeout)
    client.indices.refresh(index=name)
    return int(client.indices.stats(index=name, metric="store")["indices"][name]["primaries"]["store"]["size_in_bytes"])


def timed(client: Any, index: str, bodies: list[dict[str, Any]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for body in bodies:
            start = time.perf_counter()
            client.search(index=index, body=body)
            times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100, help="SciFact test queries used (tuning and timing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plot", default=str(REPO / "docs" / "scale.png"))
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--keep", action="store_true", help="keep the indices afterwards")
    args = parser.parse_args()
    if not Path(args.dataset, "corpus.jsonl").is_file():
        print(f"no BEIR collection at {args.dataset}: pass --dataset FOLDER (corpus.jsonl, queries.jsonl, qrels/)")
        return 2
    client = connect()
    engine = engine_for(client)
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    real = default_index_name(dataset, encoder.manifest)
    if not client.indices.exists(index=real):
        print(f"encoding and indexing {dataset.corpus} into {real} once ...", flush=True)
        evaluate(args.dataset, encoder, client=client, index=real, modes=())
    texts = {}
    with open(dataset.corpus, encoding="utf-8") as corpus:
        for line in corpus:
            record = json.loads(line)
            texts[str(record["_id"])] = f"{record.get('title', '')} {record.get('text', '')}".strip()
    base = [(doc_id, vector, texts.get(doc_id, "")) for doc_id, vector in stored_vectors(client, real) if vector]
    queries = dict(list(dataset.queries.items())[: args.queries])
    print(f"{engine.label}; {len(base)} real document vectors; {len(queries)} queries; k = 10")

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        name, bm25_name = f"bench-scale-{n}", f"bench-scale-{n}-bm25"
        for old in (name, bm25_name):
            if client.indices.exists(index=old):
                client.indices.delete(index=old)
        rate = build(client, name, base, n, vectors=True)
        build(client, bm25_name, base, n, vectors=False)
        size, bm25_size = size_on_disk(client, name), size_on_disk(client, bm25_name)
        with Searcher(name, encoder, client=client, force=True) as searcher:
            logic = searcher.logic
            vectors = [encoder.encode_queries([t])[0] for t in queries.values()]
            bm25_bodies = [build_bm25_query(t, fields=("text",), size=10, source=False) for t in queries.values()]
            bodies = {
                "exact": [logic.request_for(v, 10, None) for v in vectors],
                "default two-phase": [logic.request_for(v, 10, TwoPhaseSettings()) for v in vectors],
            }
            result = tune(searcher, queries, k=10, target=0.99, repeat=1)
            default = next((t for t in result.trials if t.settings == TwoPhaseSettings(window=50)), None)
            chosen = result.chosen
            if chosen is not None and chosen.settings is not None:
                bodies["tuned two-phase"] = [logic.request_for(v, 10, chosen.settings) for v in vectors]
        # Timed in alternating passes so that every mode sees the same machine state.
        latency: dict[str, list[float]] = {mode: [] for mode in [*bodies, "bm25"]}
        for _ in range(args.repeat):
            for mode, mode_bodies in bodies.items():
                latency[mode] += timed(client, name, mode_bodies, 1)
            latency["bm25"] += timed(client, bm25_name, bm25_bodies, 1)
        bm25_p50 = statistics.median(latency["bm25"])
        row: dict[str, Any] = {
            "documents": n, "docs_per_s": rate, "bytes": size, "bm25_bytes": bm25_size,
            "default_agreement": default.agreement if default else None,
            "tuned": chosen.label if chosen else None, "tuned_agreement": chosen.agreement if chosen else None,
        }  # fmt: skip
        print(f"\n{n:,} documents: indexed at {rate:,.0f} docs/s; {size / 2**20:,.1f} MiB vs BM25 only "
              f"{bm25_size / 2**20:,.1f} MiB = {size / bm25_size:.2f}x")  # fmt: skip
        for mode, values in latency.items():
            p50, p95 = statistics.median(values), float(np.percentile(values, 95))
            row[mode] = {"p50_ms": p50, "p95_ms": p95, "vs_bm25": p50 / bm25_p50}
            agreement = {"default two-phase": row["default_agreement"], "tuned two-phase": row["tuned_agreement"]}
            agree = agreement.get(mode)
            extra = f"  agreement {agree:.3f}" if agree is not None else ""
            print(f"  {mode:<18} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p50 {p50 / bm25_p50:5.2f}x BM25{extra}")
        print(f"  tuned setting: {row['tuned'] or result.reason}")
        rows.append(row)
        if not args.keep:
            client.indices.delete(index=f"{name},{bm25_name}")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"engine": engine.label, "rows": rows}, indent=2))
    _plot(rows, args.plot, engine.label)
    print(f"\nplot: {args.plot}")
    client.close()
    return 0


def _plot(rows: list[dict[str, Any]], path: str, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["documents"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, style in (("exact", "o-"), ("default two-phase", "s--"), ("tuned two-phase", "^-"), ("bm25", "x:")):
        points = [(r["documents"], r[mode]["p50_ms"]) for r in rows if mode in r]
        if points:
            left.plot(*zip(*points, strict=True), style, label=mode)
    left.set_xscale("log")
    left.set_xlabel("documents")
    left.set_ylabel("search request p50 (ms)")
    left.set_title(f"latency ({label})")
    left.legend(fontsize=8)
    right.plot(sizes, [r["bytes"] / 2**20 for r in rows], "o-", label="SPLADE + BM25 fields")
    right.plot(sizes, [r["bm25_bytes"] / 2**20 for r in rows], "x:", label="BM25 only")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("documents")
    right.set_ylabel("index size on disk (MiB, one segment)")
    right.set_title("size")
    right.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
