"""Speed and quality at scale on real text with judged queries: the frontier of every search mode, on one node.

    python benchmarks/realcorpus.py real/ --documents 500000 --needle scifact/ --needle cranfield/
    splade-os encode real/corpus.jsonl --model models/splade-tiny-int8 -o real/vectors.jsonl   # once: ~25 min
    python benchmarks/realscale.py --corpus real/ --documents 500000 --json docs/real-500k-os36.json

The corpus is a `benchmarks/realcorpus.py` folder with its vectors (`vectors.jsonl`, as `splade-os encode` writes
them, in corpus order), so every layout and engine is built from the same vectors. `--documents N` takes the
needles (the judged collections) whole and a seeded sample of the rest. One index holds everything measured: the
BM25 text fields, the full vector field, the two-step layout's pruned fields (`--first-phase-k`: the first in
`splade_first`, the others as candidates) and a ratio-pruned field (`--prune-ratio`: weights under R x the
document's largest dropped), so every mode runs in the same shuffled passes on the same node state.

Modes: BM25; exact SPLADE; the fixed default two-phase setting; the two-step grid (pruned field k x phase-one terms
q x rescore window, each also with the df rule and, on Elasticsearch, the engine's own pruning); index-time pruning
(the full query on a pruned field alone: top-k and ratio, which change the document vectors and are judged by
nDCG, not by agreement); Elasticsearch's pruning on exact search; doc-only queries (no model at query time). For
each: p50 and p95 of the search request (query encoding excluded) on `--queries` judged queries, against BM25's p50
in the same passes; top-10 agreement with exact search; nDCG@10 and R@100 over every judged query (and per needle
collection), with the loss against exact search; the fastest setting within `--ndcg-loss` (what `tune --qrels`
would keep) and the fastest at `--target` agreement. Then throughput (queries per second at saturation with each
of `--clients` concurrent clients) of BM25, exact and those two settings, and the same measurement after a
force-merge to `--merge` segments in turn (as many as cores, then one). The engine is whichever
`OPENSEARCH_URL`/`ELASTICSEARCH_URL` names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scale import agreement, doc_only_vector, phase_one_variants, run_passes, segment_count, size_unmerged

from splade_os.df import DfTable, read_df, store_df
from splade_os.engines import PruningConfig, engine_for
from splade_os.engines.clients import connect
from splade_os.errors import ConfigError
from splade_os.evaluation.evaluate import compute_metrics, read_qrels, read_queries
from splade_os.mappings import VECTOR_FIELD, candidate_field, index_body
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.query import build_bm25_query, build_splade_query, build_two_step_query
from splade_os.retrieval.search import Searcher
from splade_os.retrieval.two_phase import TwoPhaseSettings
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
RATIO_FIELD = "splade_ratio"
DEPTH = 100  # hits kept for R@100


def corpus_records(folder: Path, documents: int, seed: int = 7) -> Iterator[tuple[dict[str, Any], SparseVector]]:
    """(record, vector) of the needles and a seeded sample of the rest, read in step from corpus and vectors."""
    provenance = json.loads((folder / "provenance.json").read_text())
    needles = sum(n["documents"] for n in provenance["needles"].values())
    with (folder / "vectors.jsonl").open(encoding="utf-8") as vectors:
        encoded = sum(1 for _ in vectors)
    share = max(0.0, documents - needles) / max(1, encoded - needles)
    rng = random.Random(seed)
    with (folder / "corpus.jsonl").open(encoding="utf-8") as corpus, (folder / "vectors.jsonl").open() as vectors:
        for i, (line, encoded_line) in enumerate(zip(corpus, vectors, strict=False)):
            if i >= needles and rng.random() >= share:
                continue
            record, vector = json.loads(line), json.loads(encoded_line)
            if record["_id"] != vector["_id"]:
                raise SystemExit(f"realscale.py: line {i + 1}: corpus id {record['_id']}, vector id {vector['_id']}")
            yield record, SparseVector(vector["vector"])


def build(
    client: Any, name: str, folder: Path, documents: int, encoder: SpladeEncoder, ks: list[int], ratio: float
) -> dict[str, Any]:
    """The index of every field measured, bulk-loaded by two sender threads; its build figures."""
    engine = engine_for(client)
    analyzer = "english" if engine.name == "opensearch" else "standard"  # the test zips lack `english` on ES
    extra = {RATIO_FIELD: engine.vector_mapping(), "source": {"type": "keyword"}}
    body = index_body(
        replicas=0,
        engine=engine,
        manifest=encoder.manifest,
        analyzer=analyzer,
        vectors_in_source=False,
        first_phase_k=ks[0],
        first_phase_candidates=tuple(ks[1:]),
        extra_properties=extra,
    )
    body["mappings"]["_source"]["excludes"].append(RATIO_FIELD)
    body["settings"]["index"]["refresh_interval"] = "-1"
    client.indices.create(index=name, body=body)
    fields = {"splade_first": ks[0], **{candidate_field(k): k for k in ks[1:]}}
    lock, sent, df = threading.Lock(), [0], Counter[str]()

    def actions(chunk: list[tuple[dict[str, Any], SparseVector]]) -> Iterator[dict[str, Any]]:
        for record, vector in chunk:
            source = {
                "doc_id": record["_id"],
                "title": record.get("title") or "",
                "text": record.get("text") or "",
                "source": record.get("source"),
                VECTOR_FIELD: engine.to_field(vector),
                RATIO_FIELD: engine.to_field(vector.prune(max_ratio=ratio)),
            }
            for field, k in fields.items():
                source[field] = engine.to_field(vector.top_k(k))
            yield {"_index": name, "_id": record["_id"], "_source": source}

    def send(chunk: list[tuple[dict[str, Any], SparseVector]]) -> None:
        failed = [
            item for ok, item in engine.bulk(client, actions(chunk), chunk_size=500, request_timeout=300) if not ok
        ]
        if failed:
            raise SystemExit(f"{len(failed)} documents failed, first: {failed[0]}")
        seen = Counter(token for _, vector in chunk for token in vector)
        with lock:
            df.update(seen)
            sent[0] += len(chunk)
            if sent[0] % 50_000 < len(chunk):
                print(f"  {sent[0]:,} documents sent", flush=True)

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        chunk: list[tuple[dict[str, Any], SparseVector]] = []
        pending = []
        for pair in corpus_records(folder, documents):
            chunk.append(pair)
            if len(chunk) == 5000:
                pending.append(pool.submit(send, chunk))
                chunk = []
                while sum(not f.done() for f in pending) > 4:  # bounded read-ahead
                    time.sleep(0.05)
        if chunk:
            pending.append(pool.submit(send, chunk))
        for future in pending:
            future.result()
    seconds = time.perf_counter() - began
    client.indices.put_settings(index=name, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=name)
    # The df table the cost rule reads, counted from the vectors sent rather than asked of the index token by token.
    vocabulary = list(encoder.tokenizer.get_vocab())
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    absent = tuple(t for t in vocabulary if t not in df)
    store_df(client, DfTable(name, dict(df), sent[0], now, len(vocabulary), VECTOR_FIELD, 0.0, absent))
    record = {"documents": sent[0], "seconds": seconds, "docs_per_s": sent[0] / seconds}
    meta = client.indices.get_mapping(index=name)[name]["mappings"].get("_meta", {})
    client.indices.put_mapping(index=name, body={"_meta": {**meta, "real_build": record}})  # _meta is replaced whole
    return record


def judged(folder: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    return read_queries(folder / "queries.jsonl", qrels), {q: dict(r) for q, r in qrels.items()}


def with_engine_pruning(body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The same request with the engine's own query-token pruning on every sparse_vector clause."""
    text = json.dumps(body)
    copy = json.loads(text)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "sparse_vector" in node:
                node["sparse_vector"].update(options)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(copy)
    return copy


def mode_bodies(
    client: Any, name: str, encoder: SpladeEncoder, queries: dict[str, str], args: argparse.Namespace, size: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Every mode's request for each query (in `queries` order), asking for `size` hits; figures of the layout."""
    engine = engine_for(client)
    extra: dict[str, Any] = {}
    with Searcher(name, encoder, client=client, force=True) as searcher:
        logic = searcher.logic
        # "default two-phase" is the full field's (ratio 0.4, window 5 x k): the pruned fields have modes of their own.
        logic.first_phase_k = None
        logic.df = read_df(client, name)
        vectors = [encoder.encode_queries([t])[0] for t in queries.values()]
        variants = phase_one_variants(client, engine, name, encoder, args, extra)
        logic.df = read_df(client, name)
        bodies: dict[str, list[dict[str, Any]]] = {
            "bm25": [build_bm25_query(t, fields=("title", "text"), size=size, source=False) for t in queries.values()],
            "exact": [logic.request_for(v, size, None) for v in vectors],
            "default two-phase": [logic.request_for(v, size, TwoPhaseSettings()) for v in vectors],
            "doc-only": [logic.request_for(doc_only_vector(encoder, t), size, None) for t in queries.values()],
        }
        common: dict[str, Any] = {"engine": engine, "size": size, "source": False, "max_clauses": logic.max_clauses}
        ks = [int(k) for k in args.first_phase_k.split(",")]
        for k in ks:
            field = "splade_first" if k == ks[0] else candidate_field(k)
            bodies[f"pruned top-{k} (index time)"] = [
                build_splade_query(v, field_name=field, **common).body for v in vectors
            ]
            for q in [int(t) for t in args.terms.split(",")]:
                for window in [max(int(w), size) for w in args.windows.split(",")]:
                    for suffix, phase_one in variants.items():
                        bodies[f"two-step k{k} q{q} w{window}{suffix}"] = [
                            build_two_step_query(
                                v, first_field=field, terms=q, window=window, **phase_one(v), **common
                            ).body
                            for v in vectors
                        ]
        bodies[f"pruned ratio {args.prune_ratio:g} (index time)"] = [
            build_splade_query(v, field_name=RATIO_FIELD, **common).body for v in vectors
        ]
        try:
            options = engine.pruning_options(PruningConfig())
            bodies["exact, engine pruning"] = [with_engine_pruning(b, options) for b in bodies["exact"]]
        except ConfigError:
            pass  # the engine prunes no query tokens itself
    return bodies, extra


def quality(
    client: Any,
    name: str,
    bodies: dict[str, list[dict[str, Any]]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
) -> dict[str, dict[str, float]]:
    """nDCG@10 and R@100 of every mode over every judged query, and per needle collection (untimed)."""
    ids = list(queries)
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for mode, requests in bodies.items():
        run: dict[str, dict[str, float]] = {}
        for qid, body in zip(ids, requests, strict=True):
            hits = client.search(index=name, body=body)["hits"]["hits"]
            run[qid] = {h["_id"]: float(h["_score"]) for h in hits}
        runs[mode] = run
    collections = sorted({qid.split(":")[0] for qid in ids})
    measured: dict[str, dict[str, float]] = {}
    for mode, run in runs.items():
        scores = compute_metrics(qrels, run, ("nDCG@10", "R@100"))
        row = {"ndcg": scores["nDCG@10"], "recall_100": scores["R@100"]}
        for collection in collections:
            part = {q: r for q, r in qrels.items() if q.startswith(f"{collection}:")}
            row[f"ndcg_{collection}"] = compute_metrics(part, {q: run[q] for q in part}, ("nDCG@10",))["nDCG@10"]
        measured[mode] = row
    return measured


def throughput(
    client: Any, name: str, requests: list[dict[str, Any]], clients: int, seconds: float
) -> dict[str, float]:
    """Queries per second with `clients` threads sending back to back for `seconds`, and their p50/p99."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            start = time.perf_counter()
            client.search(index=name, body=requests[i % len(requests)])
            latencies[slot].append((time.perf_counter() - start) * 1000)
            i += clients

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.perf_counter() - began
    done = [ms for one in latencies for ms in one]
    return {"qps": len(done) / elapsed, "p50_ms": statistics.median(done), "p99_ms": float(np.percentile(done, 99))}


def measure(
    client: Any,
    name: str,
    bodies: dict[str, list[dict[str, Any]]],
    timed_ids: list[int],
    quality_of: dict[str, dict[str, float]],
    args: argparse.Namespace,
    repeat: int,
) -> dict[str, Any]:
    """p50/p95 in shuffled passes (size 10) over the timed queries, agreement, the two choices, throughput."""
    timed = {mode: [requests[i] for i in timed_ids] for mode, requests in bodies.items()}
    latency, hits = run_passes(client, dict.fromkeys(timed, name), timed, repeat)
    bm25 = statistics.median(latency["bm25"])
    exact_ndcg = quality_of["exact"]["ndcg"]
    modes: dict[str, Any] = {}
    for mode, values in latency.items():
        p50 = statistics.median(values)
        modes[mode] = {
            "p50_ms": p50,
            "p95_ms": float(np.percentile(values, 95)),
            "vs_bm25": p50 / bm25,
            **quality_of[mode],
            "ndcg_loss": exact_ndcg - quality_of[mode]["ndcg"],
        }
        if mode != "bm25":
            modes[mode]["agreement"] = agreement(hits[mode], hits["exact"])
    approximate = [m for m in modes if m.startswith(("two-step", "default two-phase"))]
    within = [m for m in approximate if modes[m]["ndcg_loss"] <= args.ndcg_loss]
    agreeing = [m for m in approximate if modes[m]["agreement"] >= args.target]

    def fastest(ms: list[str]) -> str | None:
        return min(ms, key=lambda m: modes[m]["p50_ms"]) if ms else None

    chosen = {"within nDCG loss": fastest(within), "at agreement target": fastest(agreeing)}
    rates: dict[str, Any] = {}
    picked: list[tuple[str, str | None]] = [("bm25", "bm25"), ("exact", "exact"), *chosen.items()]
    for label, pick in picked:
        if pick is not None:
            rates[label] = {str(c): throughput(client, name, timed[pick], c, args.seconds) for c in args.clients}
    return {"segments": segment_count(client, name), "modes": modes, "chosen": chosen, "throughput": rates}


def report(state: str, result: dict[str, Any]) -> None:
    print(f"\n{state}: {result['segments']} segments")
    print(
        f"  {'mode':<44} {'p50 ms':>7} {'p95 ms':>7} {'x BM25':>6} {'agree':>6} {'nDCG@10':>8} {'loss':>7} {'R@100':>6}"
    )
    for mode, row in result["modes"].items():
        agree = f"{row['agreement']:.3f}" if "agreement" in row else "-"
        print(
            f"  {mode:<44} {row['p50_ms']:7.2f} {row['p95_ms']:7.2f} {row['vs_bm25']:6.2f} {agree:>6} "
            f"{row['ndcg']:8.4f} {row['ndcg_loss']:+7.4f} {row['recall_100']:6.4f}"
        )
    for label, mode in result["chosen"].items():
        print(f"  fastest {label}: {mode}")
    for label, levels in result["throughput"].items():
        cells = "  ".join(f"{c} clients {v['qps']:.1f} q/s" for c, v in levels.items())
        print(f"  throughput {label}: {cells}")


def family(mode: str) -> str:
    """The kind of search a mode label names, for the plot's markers."""
    for prefix in ("two-step", "pruned top", "pruned ratio", "exact", "doc-only", "default two-phase", "bm25"):
        if mode.startswith(prefix):
            return prefix
    return mode


def plot_frontier(runs: list[dict[str, Any]], path: str, state: str = "as built") -> None:
    """p50 / BM25 against nDCG@10 loss for every mode of each run (one colour per engine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {
        "two-step": "o",
        "pruned top": "v",
        "pruned ratio": "^",
        "exact": "s",
        "doc-only": "D",
        "default two-phase": "P",
        "bm25": "*",
    }
    fig, ax = plt.subplots(figsize=(8, 5))
    for colour, run in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), runs, strict=False):
        row = next(r for r in run["rows"] if r["state"] == state)
        modes = {m: v for m, v in row.items() if isinstance(v, dict) and "vs_bm25" in v}
        for kind, marker in markers.items():
            points = [(v["ndcg_loss"], v["vs_bm25"]) for m, v in modes.items() if family(m) == kind]
            if points:
                xs, ys = [x for x, _ in points], [y for _, y in points]
                ax.scatter(xs, ys, marker=marker, color=colour, alpha=0.75, s=40, label=f"{run['engine']}: {kind}")
    ax.axvline(0.005, linestyle="--", color="grey", label="nDCG@10 loss 0.005")
    ax.axhline(1.5, linestyle=":", color="grey", label="1.5x BM25")
    ax.set_xlabel("nDCG@10 loss against exact SPLADE (judged queries; lower is better)")
    ax.set_ylabel("search request p50 / BM25's p50")
    ax.set_yscale("log")
    documents = runs[0]["documents"]
    ax.set_title(f"Real text, {documents:,} documents ({state}): every mode, each engine")
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a benchmarks/realcorpus.py folder with vectors")
    parser.add_argument("--documents", type=int, default=500_000)
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny-int8"), help="the model of the vectors")
    parser.add_argument("--queries", type=int, default=200, help="judged queries timed (all are judged for quality)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--first-phase-k", default="32,64,128", help="pruned fields (the first in splade_first)")
    parser.add_argument("--prune-ratio", type=float, default=0.1, help="the ratio-pruned field's ratio")
    parser.add_argument("--terms", default="8,16,32", help="two-step grid: phase-one query terms")
    parser.add_argument("--windows", default="100,300,1000", help="two-step grid: rescore windows")
    parser.add_argument("--df-ratios", default="5", help="two-step grid: the df rule's ratios ('' for none)")
    parser.add_argument("--engine-pruning", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--ndcg-loss", type=float, default=0.005)
    parser.add_argument("--target", type=float, default=0.99, help="top-10 agreement for the agreement choice")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients for throughput")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per throughput measurement")
    parser.add_argument("--merge", default="2,1", help="segment counts to force-merge to and measure again ('' none)")
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--keep", action="store_true", help="keep the index afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a complete index kept by an earlier --keep run")
    parser.add_argument("--build-only", action="store_true", help="build (or keep) the index, measure nothing")
    parser.add_argument("--merged-repeat", type=int, default=1, help="timed passes after each force-merge")
    parser.add_argument("--plot", help="draw the frontier (p50 / BM25 against nDCG@10 loss) as a PNG")
    parser.add_argument("--from-json", help="plot earlier --json runs (comma-separated) instead of measuring")
    args = parser.parse_args()
    if args.from_json:
        plot_frontier([json.loads(Path(f).read_text()) for f in args.from_json.split(",")], args.plot or "frontier.png")
        return 0
    args.clients = [int(c) for c in args.clients.split(",")]
    if not (args.corpus / "vectors.jsonl").is_file():
        print(
            f"no vectors at {args.corpus}/vectors.jsonl: run `splade-os encode {args.corpus}/corpus.jsonl "
            f"--model {args.model} -o {args.corpus}/vectors.jsonl` first"
        )
        return 2
    client = connect()
    engine = engine_for(client)
    encoder = SpladeEncoder(args.model)
    provenance = json.loads((args.corpus / "provenance.json").read_text())
    name = f"bench-real-{args.documents}"
    ks = [int(k) for k in args.first_phase_k.split(",")]
    kept = client.indices.exists(index=name) and client.indices.get_mapping(index=name)[name]["mappings"].get(
        "_meta", {}
    ).get("real_build")
    if args.reuse and kept:
        built = kept
        print(f"reusing {name}: {built['documents']:,} documents built at {built['docs_per_s']:,.0f} docs/s")
    else:
        if client.indices.exists(index=name):
            client.indices.delete(index=name)
        print(f"{engine.label}: building {name} from {args.corpus} ...", flush=True)
        built = build(client, name, args.corpus, args.documents, encoder, ks, args.prune_ratio)
        print(f"  {built['documents']:,} documents in {built['seconds']:,.0f} s ({built['docs_per_s']:,.0f} docs/s)")
    size = size_unmerged(client, name)
    if args.build_only:
        return 0
    queries, qrels = judged(args.corpus)
    timed_ids = sorted(random.Random(3).sample(range(len(queries)), min(args.queries, len(queries))))
    bodies, extra = mode_bodies(client, name, encoder, queries, args, DEPTH)
    print(f"{len(bodies)} modes; {len(queries)} judged queries for quality, {len(timed_ids)} timed", flush=True)
    quality_of = quality(client, name, bodies, queries, qrels)
    bodies10, _ = mode_bodies(client, name, encoder, queries, args, 10)
    result = {
        "engine": engine.label,
        "corpus": "real text: " + ", ".join(provenance["sources"]),
        "documents": built["documents"],
        "build": built,
        "queries_judged": len(queries),
        "queries_timed": len(timed_ids),
        "layout": {"first_phase_k": ks, "prune_ratio": args.prune_ratio},
        "provenance": provenance,
        **extra,
        "rows": [],
    }

    def record(state: str, measured: dict[str, Any], size: int, **more: Any) -> None:
        """One row per index state, shaped as scale.py's rows (each mode's figures under its name)."""
        report(state, measured)
        modes = measured.pop("modes")
        result["rows"].append(
            {
                "documents": built["documents"],
                "state": state,
                "bytes": size,
                "docs_per_s": built["docs_per_s"],
                **more,
                **measured,
                **modes,
            }
        )
        if args.json_file:  # after each state: a later failure keeps what was measured
            Path(args.json_file).write_text(json.dumps(result, indent=2) + "\n")

    record("as built", measure(client, name, bodies10, timed_ids, quality_of, args, args.repeat), size)
    for segments in [int(s) for s in args.merge.split(",") if s]:
        patient, timeout = engine.with_timeout(client, 7200)
        began = time.perf_counter()
        patient.indices.forcemerge(index=name, max_num_segments=segments, **timeout)
        merge_seconds = time.perf_counter() - began
        merged = size_unmerged(client, name)
        measured = measure(client, name, bodies10, timed_ids, quality_of, args, args.merged_repeat)
        record(f"force-merged to {segments}", measured, merged, merge_seconds=merge_seconds)
    if args.json_file:
        print(f"\njson: {args.json_file}")
    if args.plot:
        plot_frontier([result], args.plot)
        print(f"plot: {args.plot}")
    if not args.keep:
        client.indices.delete(index=name)
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
