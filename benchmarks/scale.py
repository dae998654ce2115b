"""How cost grows with the corpus, and what two-phase search and the two-step layout buy at each size, against a
real node.

    python benchmarks/scale.py --dataset scifact/ [--sizes 10000,100000] [--queries 100] [--first-phase-k 128,64]
                               [--df-ratios 5,2] [--no-vectors-in-source] [--json FILE] [--plot docs/scale.png]

For each size N it builds an index of N documents whose vectors follow the real model's statistics: each one
recombines two real splade-tiny SciFact document vectors (the tokens of one, and a third of the other's, keeping
their weights) and their texts, so no encoding is needed at this size. With `--first-phase-k`, each document also
holds its k heaviest terms in a pruned field per k (the two-step layout: `splade_first` for the first k). Per size
it reports the bulk indexing rate, the index size on disk against the same documents indexed for BM25 only, and
the search request latency (query encoding excluded; real SciFact test query vectors, k = 10) of exact SPLADE, the
fixed default two-phase setting, the setting `tune` picks (unless `--skip-tune`), every two-step setting of the
grid (pruned field k x phase-one query terms q x rescore window, each also with the df rule at each `--df-ratios`,
suffix `df<ratio>`, and with the engine's own pruning where it has it, suffix `ep`), the fastest of those that keeps
`--target` agreement (`tuned`), doc-only queries (each query token once, weight 1: no model at query time) and
BM25, each p50 and p95 against BM25's p50 measured in the same passes (one warm-up pass, then `--repeat` passes
in shuffled order), with top-10 agreement with exact search. The dataset is a BEIR folder (SciFact:
https://github.com/beir-cellar/beir); the engine is whichever `OPENSEARCH_URL`/`ELASTICSEARCH_URL` names.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scifact_common import beir_missing

from splade_os.df import build_df, read_df
from splade_os.engines import PruningConfig, engine_for
from splade_os.engines.clients import connect
from splade_os.errors import ConfigError
from splade_os.evaluation.evaluate import Dataset, default_index_name, evaluate, load_beir, stored_vectors
from splade_os.evaluation.tuning import tune
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.query import build_bm25_query, build_two_step_query
from splade_os.retrieval.search import Searcher
from splade_os.retrieval.two_phase import TwoPhaseSettings
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]


def real_documents(
    client: Any, encoder: SpladeEncoder, dataset: Dataset
) -> list[tuple[str, SparseVector, dict[str, Any]]]:
    """The collection's documents with their real vectors (encoded and indexed once, then read back)."""
    real = default_index_name(dataset, encoder.manifest)
    if not client.indices.exists(index=real):
        print(f"encoding and indexing {dataset.corpus} into {real} once ...", flush=True)
        evaluate(dataset, encoder, client=client, index=real, modes=())
    records: dict[str, dict[str, Any]] = {}
    with open(dataset.corpus, encoding="utf-8") as corpus:
        for line in corpus:
            record = json.loads(line)
            doc_id = str(record["_id"])
            records[doc_id] = {"doc_id": doc_id, "title": record.get("title") or "", "text": record.get("text") or ""}
    return [(doc_id, vector, records[doc_id]) for doc_id, vector in stored_vectors(client, real) if doc_id in records]


def synthetic_documents(
    base: list[tuple[str, SparseVector, str]], start: int, stop: int, seed: int = 13
) -> Iterator[tuple[str, SparseVector, str]]:
    """Documents start..stop-1 recombined from real ones: all tokens of one, a third of another's, texts joined.

    Each range draws from its own seeded generator, so the same range always gives the same documents."""
    rng = random.Random(f"{seed}-{start}")
    for i in range(start, stop):
        (_, first, text_a), (_, second, text_b) = rng.choice(base), rng.choice(base)
        extra = dict(rng.sample(sorted(second.items()), k=len(second) // 3))
        vector = SparseVector({**extra, **first.to_dict()})
        text = " ".join(text_a.split()[:120] + text_b.split()[:60])
        yield f"s{i}", vector, text


FIRST_PHASE_FIELD = "splade_first"
"""The two-step layout's pruned field: each document's heaviest terms only (the first `--first-phase-k`)."""


def first_phase_fields(ks: list[int]) -> dict[str, int]:
    """Field name -> k: the first k in `splade_first`, any others in `splade_first_k<k>` (to compare k in one index)."""
    return {FIRST_PHASE_FIELD if i == 0 else f"{FIRST_PHASE_FIELD}_k{k}": k for i, k in enumerate(ks)}


def build(
    client: Any,
    name: str,
    base: list[tuple[str, SparseVector, str]],
    n: int,
    *,
    vectors: bool,
    in_source: bool = True,
    senders: int = 2,
    resume: bool = False,
    first_phase: dict[str, int] | None = None,
) -> float:
    """Bulk-load N documents (with or without the vector field); returns documents per second.

    `senders` threads each send their own ranges, so the client's JSON encoding overlaps the node's indexing.
    `resume` continues an interrupted build: a range whose last document landed is complete (each range is sent
    in order), and a range sent again overwrites the same documents."""
    engine = engine_for(client)
    step = 50_000
    todo = list(range(0, n, step))
    if resume:
        todo = [start for start in todo if not client.exists(index=name, id=f"s{min(start + step, n) - 1}")]
        return _send_ranges(client, name, base, n, todo, step, vectors, senders, resumed=True, first_phase=first_phase)
    body = index_body(
        replicas=0, engine=engine, manifest={"name": "scale", "sha256": "scale"}, vectors_in_source=in_source
    )
    # No refreshes while loading, except for an index that leaves the vector out of `_source`: its recovery copies
    # go only when segments merge, and one segment written at the end would never merge again.
    body["settings"]["index"]["refresh_interval"] = "-1" if in_source else "1s"
    if not vectors:
        del body["mappings"]["properties"][VECTOR_FIELD]
    for field in first_phase or {}:
        body["mappings"]["properties"][field] = engine.vector_mapping()
        if not in_source:
            body["mappings"]["_source"]["excludes"].append(field)
    client.indices.create(index=name, body=body)
    return _send_ranges(client, name, base, n, todo, step, vectors, senders, resumed=False, first_phase=first_phase)


def _send_ranges(
    client: Any,
    name: str,
    base: list[tuple[str, SparseVector, str]],
    n: int,
    todo: list[int],
    step: int,
    vectors: bool,
    senders: int,
    resumed: bool,
    first_phase: dict[str, int] | None = None,
) -> float:
    engine = engine_for(client)

    def send(start: int) -> int:
        def actions() -> Iterator[dict[str, Any]]:
            for doc_id, vector, text in synthetic_documents(base, start, min(start + step, n)):
                source: dict[str, Any] = {"doc_id": doc_id, "text": text}
                if vectors:
                    source[VECTOR_FIELD] = engine.to_field(vector)
                    for field, k in (first_phase or {}).items():
                        source[field] = engine.to_field(vector.top_k(k))
                yield {"_index": name, "_id": doc_id, "_source": source}

        results = engine.bulk(client, actions(), chunk_size=1000, request_timeout=300)
        failed = [item for ok, item in results if not ok]
        if failed:
            raise SystemExit(f"{len(failed)} documents failed, first: {failed[0]}")
        return min(start + step, n) - start

    began = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        sent = sum(pool.map(send, todo))
    rate = sent / (time.perf_counter() - began)
    client.indices.put_settings(index=name, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=name)
    # A resumed build's rate is its last part's.
    record = {"documents": n, "docs_per_s": rate, "resumed": resumed, "first_phase": first_phase or {}}
    client.indices.put_mapping(index=name, body={"_meta": {"scale_build": record}})
    return rate


def ready(
    client: Any, name: str, base: list[tuple[str, SparseVector, str]], n: int, *, reuse: bool, **options: Any
) -> float:
    """Build `name`, or with `reuse` keep a complete one from an earlier run (and the rate it was built at)."""
    if client.indices.exists(index=name):
        recorded = client.indices.get_mapping(index=name)[name]["mappings"].get("_meta", {}).get("scale_build", {})
        client.indices.refresh(index=name)
        count = int(client.count(index=name)["count"])
        layout = options.get("first_phase") or {}
        if reuse and recorded.get("documents") == n and count == n and recorded.get("first_phase", {}) == layout:
            print(f"  reusing {name} (built at {recorded['docs_per_s']:,.0f} docs/s)", flush=True)
            return float(recorded["docs_per_s"])
        if reuse and not recorded and count < n:
            print(f"  continuing {name}: {count:,} of {n:,} documents there", flush=True)
            return build(client, name, base, n, resume=True, **options)
        if reuse and recorded:
            # A kept index can take an hour to build: a run asking for another layout must not throw it away.
            raise SystemExit(
                f"scale.py: --reuse found {name} kept with {recorded.get('documents', count):,} documents and "
                f"pruned fields {recorded.get('first_phase') or 'none'}, not the {n:,} and {layout or 'none'} asked "
                "for: pass the --first-phase-k it was built with, or drop --reuse to rebuild it"
            )
        client.indices.delete(index=name)
    print(f"  building {name} ...", flush=True)
    return build(client, name, base, n, **options)


def size_on_disk(client: Any, name: str) -> int:
    """Bytes on disk once merged to one segment, after the engine has let go of its recovery copies.

    An index that leaves fields out of `_source` keeps a full copy (`_recovery_source`) of each document until its
    shard's retention leases and safe commit have moved past it, and only a merge after that drops it. When that
    happens is up to the engine's background syncs, so such an index is merged again (a probe document gives it
    a second segment to merge, deleted afterwards) until its size stops falling."""
    excludes = client.indices.get_mapping(index=name)[name]["mappings"].get("_source", {}).get("excludes")
    size = _merged_size(client, name)
    for _ in range(3 if excludes else 0):
        time.sleep(35)  # one retention-lease sync interval
        client.index(index=name, id="size-probe", body={"text": "probe"}, refresh=True)
        wait_for_leases(client, name)
        again = _merged_size(client, name, probe=True)
        if again > 0.9 * size:
            break
        size = again
    return size


def _merged_size(client: Any, name: str, probe: bool = False) -> int:
    wait_for_leases(client, name)
    patient, timeout = engine_for(client).with_timeout(client, 3600)
    patient.indices.forcemerge(index=name, max_num_segments=1, **timeout)
    if probe:
        client.delete(index=name, id="size-probe", refresh=True)
    # The merged-away segments stay on disk until a commit stops referencing them.
    client.indices.flush(index=name, force=True)
    client.indices.refresh(index=name)
    return int(client.indices.stats(index=name, metric="store")["indices"][name]["primaries"]["store"]["size_in_bytes"])


def wait_for_leases(client: Any, name: str, seconds: float = 300) -> None:
    """Wait until the shard's retention leases cover every operation, then commit: a commit is the "safe" one that
    bounds what soft-deletes keep only once the global checkpoint persisted with it covers its operations."""
    client.indices.flush(index=name, force=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not leases_caught_up(client, name):
        time.sleep(5)
    client.indices.flush(index=name, force=True)


def size_unmerged(client: Any, name: str) -> int:
    """Bytes on disk as the index stands (refreshed and flushed, segments as the merge policy left them)."""
    client.indices.refresh(index=name)
    client.indices.flush(index=name)
    stats = client.indices.stats(index=name, metric="store,segments")["indices"][name]["primaries"]
    merged = " (force-merged)" if stats["segments"]["count"] == 1 else ", not force-merged"
    print(f"  {name}: {stats['segments']['count']} segments{merged}", flush=True)
    return int(stats["store"]["size_in_bytes"])


def segment_count(client: Any, name: str) -> int:
    """Segments of the index as measured: one after a force-merge, as the merge policy left them otherwise."""
    return int(client.indices.stats(index=name, metric="segments")["indices"][name]["primaries"]["segments"]["count"])


def leases_caught_up(client: Any, name: str) -> bool:
    shards = client.indices.stats(index=name, level="shards")["indices"][name]["shards"]
    for copies in shards.values():
        for copy in copies:
            leases = copy.get("retention_leases", {}).get("leases", [])
            if any(lease["retaining_seq_no"] <= copy["seq_no"]["max_seq_no"] for lease in leases):
                return False
    return True


def timed(client: Any, index: str, bodies: list[dict[str, Any]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for body in bodies:
            start = time.perf_counter()
            client.search(index=index, body=body)
            times.append((time.perf_counter() - start) * 1000)
    return times


def two_step_body(
    engine: Any, vector: SparseVector, field: str, q: int, window: int, k: int = 10, **phase_one: Any
) -> dict[str, Any]:
    """Phase one: the query's q heaviest terms against the pruned field `field`; phase two: the exact dot product on
    the full field for the `window` best of phase one. `phase_one`: `deferred` (the df rule's terms) and
    `engine_pruning` of `build_two_step_query`."""
    return build_two_step_query(
        vector, first_field=field, terms=q, window=window, size=k, source=False, engine=engine, **phase_one
    ).body


def phase_one_variants(
    client: Any, engine: Any, name: str, encoder: SpladeEncoder, args: argparse.Namespace, row: dict[str, Any]
) -> dict[str, Any]:
    """Label suffix -> the phase-one options of each query vector: none, the df rule at each `--df-ratios`, and the
    engine's own pruning where it has it. Counts the index's df table (the whole vocabulary) when it has none."""
    variants: dict[str, Any] = {"": lambda v: {}}
    ratios = [float(r) for r in args.df_ratios.split(",") if r]
    if ratios:
        table = read_df(client, name)
        if table is None or table.documents != int(client.count(index=name)["count"]):
            print(f"  counting the df table of {name} over the model's vocabulary ...", flush=True)
            table = build_df(client, name, list(encoder.tokenizer.get_vocab()))
            row["df_seconds"] = table.seconds
            print(f"  df table: {len(table.counts):,} tokens in {table.seconds:.0f} s", flush=True)
        row["df_mean"] = table.field_mean
        for ratio in ratios:
            variants[f" df{ratio:g}"] = lambda v, r=ratio, t=table: {"deferred": t.costly(v, r, 0.4)}
    if args.engine_pruning:
        try:
            engine.pruning_options(PruningConfig())
            variants[" ep"] = lambda v: {"engine_pruning": PruningConfig()}
        except ConfigError:  # the engine has no pruning of its own
            pass
    return variants


def doc_only_vector(encoder: SpladeEncoder, text: str) -> SparseVector:
    """A query without the model (inference-free): each of its WordPiece tokens once, weight 1."""
    tokens = encoder.tokenizer.encode(text, add_special_tokens=False).tokens
    return SparseVector(dict.fromkeys(tokens, 1.0))


def run_passes(
    client: Any, index_of: dict[str, str], bodies: dict[str, list[dict[str, Any]]], repeat: int, seed: int = 0
) -> tuple[dict[str, list[float]], dict[str, list[list[str]]]]:
    """One untimed warm-up pass over every mode, then `repeat` timed passes, each running the modes in a new
    shuffled order so that no mode always meets a cold or a busy node; the hits of the first timed pass."""
    latency: dict[str, list[float]] = {mode: [] for mode in bodies}
    hits: dict[str, list[list[str]]] = {}
    order = list(bodies)
    for mode in order:
        for body in bodies[mode]:
            client.search(index=index_of[mode], body=body)
    rng = random.Random(seed)
    for round_ in range(repeat):
        rng.shuffle(order)
        for mode in order:
            found = []
            for body in bodies[mode]:
                start = time.perf_counter()
                response = client.search(index=index_of[mode], body=body)
                latency[mode].append((time.perf_counter() - start) * 1000)
                found.append([h["_id"] for h in response["hits"]["hits"]])
            if round_ == 0:
                hits[mode] = found
    return latency, hits


def agreement(found: list[list[str]], exact: list[list[str]]) -> float:
    shares = [len(set(f[:10]) & set(e[:10])) / len(e[:10]) for f, e in zip(found, exact, strict=True) if e]
    return statistics.fmean(shares) if shares else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100, help="SciFact test queries used (tuning and timing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--plot",
        help="cost against corpus size [default: docs/scale.png, when two sizes or more "
        "are measured: a one-size run leaves the plot of the full run as it is]",
    )
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--keep", action="store_true", help="keep the indices afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse complete indices kept by an earlier --keep run")
    parser.add_argument(
        "--source-split",
        default="",
        help="sizes (comma-separated) also built with the vector left out of _source, to split "
        "postings from stored source",
    )
    parser.add_argument(
        "--separate-bm25-max",
        type=int,
        default=100_000,
        help="largest size that gets its own BM25-only index (larger: BM25 on the SPLADE index)",
    )
    parser.add_argument(
        "--merge-max",
        type=int,
        default=100_000,
        help="largest size force-merged to one segment before measuring (larger: as built)",
    )
    parser.add_argument("--build-only", action="store_true", help="build (or keep) the indices, measure nothing")
    parser.add_argument("--skip-tune", action="store_true", help="time exact, default two-phase and BM25 only")
    parser.add_argument(
        "--first-phase-k",
        default="128",
        help="two-step layout: each SPLADE index also holds every document's top-k terms in a pruned "
        "field per k (comma-separated; the first in splade_first; empty: none)",
    )
    parser.add_argument(
        "--no-vectors-in-source", action="store_true", help="the SPLADE index leaves its vector fields out of _source"
    )
    parser.add_argument("--two-step-k", default="", help="two-step grid: the pruned fields' k to use (default: all)")
    parser.add_argument("--two-step-terms", default="8,16,32", help="two-step grid: query terms sent to phase one")
    parser.add_argument("--two-step-windows", default="100,300,1000", help="two-step grid: rescore windows")
    parser.add_argument(
        "--df-ratios",
        default="5",
        help="two-step grid, cost rule: each setting also with the query terms found in more than "
        "RATIO x the mean token's documents and under 0.4 of the heaviest weight left out of phase "
        "one (comma-separated; empty: no rule). Counts the index's df table when it has none",
    )
    parser.add_argument(
        "--engine-pruning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="two-step grid: each setting also with the engine's own phase-one pruning, where the "
        "engine has it (Elasticsearch's pruning_config)",
    )
    parser.add_argument(
        "--concurrent-segment-search",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set the SPLADE index's concurrent segment search on or off before measuring (OpenSearch "
        "2.12+; default: as the index is)",
    )
    parser.add_argument("--target", type=float, default=0.99, help="agreement the tuned two-step setting must reach")
    parser.add_argument("--frontier-plot", help="also plot p50 against agreement for every mode of the largest size")
    parser.add_argument(
        "--from-json",
        help="plot the rows of an earlier --json run instead of measuring (--plot, "
        "--frontier-plot); several (comma-separated): each engine's frontier on one plot",
    )
    args = parser.parse_args()
    if args.from_json and "," in args.from_json:
        runs = [json.loads(Path(f).read_text()) for f in args.from_json.split(",")]
        _plot_frontiers(runs, args.frontier_plot or str(REPO / "docs" / "frontier-1m-engines.png"), args.target)
        return 0
    if args.from_json:
        earlier = json.loads(Path(args.from_json).read_text())
        if args.frontier_plot:
            _plot_frontier(earlier["rows"][-1], args.frontier_plot, earlier["engine"], args.target)
        if args.plot:
            _plot(earlier["rows"], args.plot, earlier["engine"])
        return 0
    if beir_missing(args.dataset):
        return 2
    client = connect()
    engine = engine_for(client)
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    base = [
        (doc_id, vector, f"{record['title']} {record['text']}".strip())
        for doc_id, vector, record in real_documents(client, encoder, dataset)
        if vector
    ]
    queries = dict(list(dataset.queries.items())[: args.queries])
    print(f"{engine.label}; {len(base)} real document vectors; {len(queries)} queries; k = 10")

    rows = []
    split_sizes = {int(s) for s in args.source_split.split(",") if s}
    for n in [int(s) for s in args.sizes.split(",")]:
        name, bm25_name, lean_name = f"bench-scale-{n}", f"bench-scale-{n}-bm25", f"bench-scale-{n}-lean"
        # Past --separate-bm25-max, BM25 is timed on the SPLADE index's own text fields (the same postings a
        # BM25-only index would hold) and no BM25-only copy is built; past --merge-max, sizes are read unmerged.
        separate, lean, merge = n <= args.separate_bm25_max, n in split_sizes, n <= args.merge_max
        wanted = [
            (name, True, True),
            *([(bm25_name, False, True)] if separate else []),
            *([(lean_name, True, False)] if lean else []),
        ]
        first_phase = first_phase_fields([int(k) for k in args.first_phase_k.split(",") if k])
        if args.no_vectors_in_source:
            wanted = [(index, vectors, False if index == name else in_source) for index, vectors, in_source in wanted]
        built = {
            index: ready(
                client,
                index,
                base,
                n,
                reuse=args.reuse,
                vectors=vectors,
                in_source=in_source,
                first_phase=first_phase if vectors else None,
            )
            for index, vectors, in_source in wanted
        }
        if args.build_only:
            continue
        rate = built[name]
        if args.concurrent_segment_search is not None:
            concurrent = engine.concurrent_search_settings(args.concurrent_segment_search)
            if concurrent is None:
                print(f"{engine.label} has no index setting for concurrent segment search")
                return 2
            client.indices.put_settings(index=name, body={"index": concurrent})
        measure = size_on_disk if merge else size_unmerged
        size = measure(client, name)
        bm25_size = measure(client, bm25_name) if separate else None
        lean_size = measure(client, lean_name) if lean else None
        if not separate:
            bm25_name = name
        row_extra: dict[str, Any] = {}
        with Searcher(name, encoder, client=client, force=True) as searcher:
            logic = searcher.logic
            meta = client.indices.get_mapping(index=name)[name]["mappings"].get("_meta", {})
            fields = meta.get("scale_build", {}).get("first_phase", {})
            # The layout as splade-os reads it: two-phase mode (the default row, tune) is two-step on splade_first.
            logic.first_phase_k = fields.get(FIRST_PHASE_FIELD)
            variants = phase_one_variants(client, engine, name, encoder, args, row_extra)
            logic.df = read_df(client, name)
            vectors = [encoder.encode_queries([t])[0] for t in queries.values()]
            bm25_bodies = [build_bm25_query(t, fields=("text",), size=10, source=False) for t in queries.values()]
            bodies = {
                "exact": [logic.request_for(v, 10, None) for v in vectors],
                "default two-phase": [logic.request_for(v, 10, TwoPhaseSettings()) for v in vectors],
            }
            result = None if args.skip_tune else tune(searcher, queries, k=10, target=0.99, repeat=1)
            chosen = result.chosen if result else None
            if chosen is not None and chosen.settings is not None:
                bodies["tuned two-phase"] = [logic.request_for(v, 10, chosen.settings) for v in vectors]
            grid_k = {int(k) for k in args.two_step_k.split(",") if k}
            for field, k in sorted(fields.items(), key=lambda item: item[1]):
                if grid_k and k not in grid_k:
                    continue
                for q in [int(t) for t in args.two_step_terms.split(",")]:
                    for window in [int(w) for w in args.two_step_windows.split(",")]:
                        for suffix, phase_one in variants.items():
                            bodies[f"two-step k{k} q{q} w{window}{suffix}"] = [
                                two_step_body(engine, v, field, q, window, **phase_one(v)) for v in vectors
                            ]
            doc_only = [doc_only_vector(encoder, t) for t in queries.values()]
            bodies["doc-only"] = [logic.request_for(v, 10, None) for v in doc_only]
        # Every mode (BM25 too) runs in the same shuffled passes after one warm-up pass, so each sees the same
        # machine state. Where a BM25-only index exists, BM25 is also timed on the SPLADE index's text fields,
        # which shows whether the larger sizes (BM25 timed there only) compare like with like.
        bodies["bm25"] = bm25_bodies
        index_of = {mode: name for mode in bodies}
        index_of["bm25"] = bm25_name
        if bm25_name != name:
            bodies["bm25 on SPLADE index"] = bm25_bodies
            index_of["bm25 on SPLADE index"] = name
        latency, hits = run_passes(client, index_of, bodies, args.repeat)
        agree = {mode: agreement(found, hits["exact"]) for mode, found in hits.items()}
        bm25_p50 = statistics.median(latency["bm25"])
        two_step = [m for m in bodies if m.startswith("two-step")]
        passing = [m for m in two_step if agree[m] >= args.target]
        # The fastest setting that keeps the agreement target; when none does, the one closest to it.
        tuned = (
            min(passing, key=lambda m: statistics.median(latency[m]))
            if passing
            else max(two_step, key=lambda m: agree[m], default=None)
        )
        row: dict[str, Any] = {
            "documents": n,
            "segments": segment_count(client, name),
            "docs_per_s": rate,
            "bytes": size,
            "concurrent_segment_search": args.concurrent_segment_search,
            "bm25_bytes": bm25_size,
            "lean_bytes": lean_size,
            "default_agreement": agree.get("default two-phase"),
            "tuned two-phase setting": chosen.label if chosen else None,
            "tuned two-phase agreement": chosen.agreement if chosen else None,
            "tuned setting": tuned,
            "tuned_reaches_target": bool(passing),
            **row_extra,
        }
        versus = (
            f"vs BM25 only {bm25_size / 2**20:,.1f} MiB = {size / bm25_size:.2f}x"
            if bm25_size
            else "(no BM25-only copy at this size)"
        )
        print(f"\n{n:,} documents: indexed at {rate:,.0f} docs/s; {size / 2**20:,.1f} MiB {versus}")
        if lean_size is not None and bm25_size:
            print(
                f"  vector left out of _source: {lean_size / 2**20:,.1f} MiB = {lean_size / bm25_size:.2f}x BM25; "
                f"the vector in _source costs {(size - lean_size) / 2**20:,.1f} MiB, "
                f"its postings {(lean_size - bm25_size) / 2**20:,.1f} MiB"
            )
        for mode, values in latency.items():
            p50, p95 = statistics.median(values), float(np.percentile(values, 95))
            row[mode] = {"p50_ms": p50, "p95_ms": p95, "vs_bm25": p50 / bm25_p50}
            if mode in agree and not mode.startswith("bm25"):
                row[mode]["agreement"] = agree[mode]
            extra = f"  agreement {agree[mode]:.3f}" if mode in agree and not mode.startswith("bm25") else ""
            print(f"  {mode:<26} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p50 {p50 / bm25_p50:5.2f}x BM25{extra}")
        if tuned is not None:
            row["tuned"] = {**row[tuned], "setting": tuned}
            reached = "reaches" if passing else "does not reach"
            print(f"  tuned two-step: {tuned} ({reached} agreement {args.target:g})")
        if result is not None:
            print(f"  tuned two-phase setting: {row['tuned two-phase setting'] or result.reason}")
        rows.append(row)
        if not args.keep:
            client.indices.delete(index=",".join(built))
    if args.build_only:
        return 0
    if args.json_file:
        corpus = "recombined SciFact vectors (two documents' vectors each)"
        Path(args.json_file).write_text(json.dumps({"engine": engine.label, "corpus": corpus, "rows": rows}, indent=2))
    plot = args.plot or (str(REPO / "docs" / "scale.png") if len(rows) > 1 else None)
    if plot:
        _plot(rows, plot, engine.label)
        print(f"\nplot: {plot}")
    if args.frontier_plot:
        _plot_frontier(rows[-1], args.frontier_plot, engine.label, args.target)
        print(f"frontier: {args.frontier_plot}")
    client.close()
    return 0


def _plot_frontier(row: dict[str, Any], path: str, label: str, target: float) -> None:
    """Each mode of one size as a point: p50 against BM25's (same passes) and top-10 agreement with exact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for mode, value in row.items():
        if not isinstance(value, dict) or "agreement" not in value or mode == "tuned":
            continue
        marker = "o" if mode.startswith("two-step") else "s"
        ax.scatter(value["agreement"], value["vs_bm25"], marker=marker)
        ax.annotate(
            mode.replace("two-step ", ""),
            (value["agreement"], value["vs_bm25"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    title = f"{row['documents']:,} documents, {label} (two-step: pruned-field k, query terms q, window w)"
    _save_frontier(fig, ax, title, target, path, legend_size=8)
    plt.close(fig)


def _save_frontier(fig: Any, ax: Any, title: str, target: float, path: str, legend_size: int = 7) -> None:
    """The goal lines, axis labels and title every frontier plot shares, then the file."""
    ax.axhline(1.5, linestyle=":", color="grey", label="goal: 1.5x BM25")
    ax.axvline(target, linestyle="--", color="grey", label=f"goal: agreement {target:g}")
    ax.set_xlabel("top-10 agreement with exact SPLADE")
    ax.set_ylabel("search p50 / BM25 p50 (same passes)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _plot_frontiers(runs: list[dict[str, Any]], path: str, target: float) -> None:
    """Several engines' largest sizes on one plot: each one's cheapest two-step setting at or above every agreement
    reached (its frontier), with exact search, the default two-phase setting and doc-only queries as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference_modes = (("exact", "s"), ("default two-phase", "x"), ("doc-only", "^"))
    fig, ax = plt.subplots(figsize=(8, 5))
    for number, run in enumerate(runs):
        color = f"C{number}"
        row = run["rows"][-1]
        points = sorted(
            (v["agreement"], v["vs_bm25"]) for m, v in row.items() if m.startswith("two-step") and isinstance(v, dict)
        )
        frontier = [(a, r) for a, r in points if r <= min(r2 for a2, r2 in points if a2 >= a)]
        label = f"{run['engine']}: two-step frontier"
        ax.plot([a for a, _ in frontier], [r for _, r in frontier], marker="o", color=color, label=label)
        for mode, marker in reference_modes:
            ax.scatter(row[mode]["agreement"], row[mode]["vs_bm25"], marker=marker, color=color)
    for mode, marker in reference_modes:
        ax.scatter([], [], marker=marker, color="grey", label=mode)
    title = f"{runs[0]['rows'][-1]['documents']:,} documents: the cheapest setting at each agreement"
    _save_frontier(fig, ax, title, target, path)
    plt.close(fig)


def _plot(rows: list[dict[str, Any]], path: str, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["documents"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    modes = (
        ("exact", "o-"),
        ("default two-phase", "s--"),
        ("tuned two-phase", "^-"),
        ("tuned", "v-"),
        ("doc-only", "d-."),
        ("bm25", "x:"),
    )
    for mode, style in modes:
        points = [(r["documents"], r[mode]["p50_ms"]) for r in rows if mode in r]
        if points:
            left.plot(*zip(*points, strict=True), style, label=mode)
    left.set_xscale("log")
    left.set_xlabel("documents")
    left.set_ylabel("search request p50 (ms)")
    left.set_title(f"latency ({label})")
    left.legend(fontsize=8)
    right.plot(sizes, [r["bytes"] / 2**20 for r in rows], "o-", label="SPLADE + BM25 fields")
    lean = [(r["documents"], r["lean_bytes"] / 2**20) for r in rows if r.get("lean_bytes")]
    if lean:
        right.plot(*zip(*lean, strict=True), "s--", label="SPLADE + BM25, vector not in _source")
    bm25 = [(r["documents"], r["bm25_bytes"] / 2**20) for r in rows if r.get("bm25_bytes")]
    if bm25:
        right.plot(*zip(*bm25, strict=True), "x:", label="BM25 only")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("documents")
    right.set_ylabel("index size on disk (MiB; merged to one segment up to --merge-max)")
    right.set_title("size")
    right.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
