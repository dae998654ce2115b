"""What each search mode asks of the engine, and where a two-step request's time goes: why SPLADE's phase one costs
more than BM25 however it is pruned. Runs on an index `benchmarks/scale.py --keep` built (`bench-scale-N`).

    python benchmarks/work.py --dataset scifact/ --size 1000000 [--terms 8,16,32] [--df-ratio 5] [--json FILE]
                              [--windows 10,300,1000,3000] [--window-terms 16] [--plot docs/phase-costs-1m.png]

Per mode, over the same SciFact test queries scale.py times, it counts two things the node reports exactly:

- postings: the sum, over the terms the scoring query sends, of the number of documents holding the term in the
  field it reads (the length of every posting list the query opens);
- matched: how many documents the scoring query matches (phase one's query, for two-step search): the documents a
  disjunction scores unless the engine's skipping (WAND, MaxScore) can rule them out.

BM25 reads the analysed `text` field; exact search and doc-only queries the full vector field; two-step phase one
the query's q heaviest terms (without the df rule's terms, with `df<ratio>`) on each pruned field of the index.
Counts do not depend on the machine, so unlike latencies they can be compared across runs and engines.

Then it times, in the same shuffled passes (one warm-up pass, `--repeat` timed ones), BM25, exact search and phase
one on each pruned field and on the full field (q `--window-terms` terms, the df rule) alone, each collecting each
of `--windows` hits (returning 10, as a two-step request's phase one does), and each whole two-step request with
that window, with its top-10 agreement with exact search: the whole request's p50 minus phase one's is what the
rescore of the window adds. `--plot` draws that split per setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from scale import REPO, agreement, doc_only_vector, run_passes, two_step_body
from scifact_common import beir_missing

from splade_os.df import build_df, count_tokens, read_df
from splade_os.engines import engine_for
from splade_os.engines.clients import connect
from splade_os.evaluation.evaluate import load_beir
from splade_os.mappings import VECTOR_FIELD
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.query import build_bm25_query, build_splade_query, phase_one_terms
from splade_os.vectors import SparseVector

PER_REQUEST = 200


def matched(client: Any, index: str, queries: list[dict[str, Any]]) -> list[int]:
    """How many documents each query matches, counted by the node (`_msearch`, `track_total_hits`)."""
    counts: list[int] = []
    for start in range(0, len(queries), PER_REQUEST):
        body: list[dict[str, Any]] = []
        for query in queries[start : start + PER_REQUEST]:
            body += [{}, {"size": 0, "track_total_hits": True, "query": query}]
        for answer in client.msearch(body=body, index=index)["responses"]:
            if "error" in answer:
                raise RuntimeError(f"cannot count matches in {index}: {answer['error']}")
            total = answer["hits"]["total"]
            counts.append(int(total["value"] if isinstance(total, Mapping) else total))
    return counts


def text_terms(client: Any, index: str, text: str) -> list[str]:
    """The terms BM25 sends for `text`: the `text` field's analyser applied to it, each term once."""
    answer = client.indices.analyze(index=index, body={"field": "text", "text": text})
    return list(dict.fromkeys(token["token"] for token in answer["tokens"]))


def text_df(client: Any, index: str, terms: Iterable[str]) -> dict[str, int]:
    """{term: documents holding it in `text`} for the analysed `terms`."""
    wanted = list(dict.fromkeys(terms))
    queries = [{"term": {"text": term}} for term in wanted]
    return dict(zip(wanted, matched(client, index, queries), strict=True))


def summary(postings: list[int], hits: list[int], documents: int) -> dict[str, float]:
    return {
        "postings": statistics.fmean(postings),
        "matched": statistics.fmean(hits),
        "matched_share": statistics.fmean(hits) / documents,
    }


def collecting_body(query: dict[str, Any], window: int) -> dict[str, Any]:
    """`query` returning 10 hits but collecting the best `window`, as a two-step request's phase one does: a
    rescore of that window whose own query costs nothing (match_all, weight 0) keeps phase one's order."""
    body: dict[str, Any] = {"size": 10, "_source": False, "track_total_hits": False, "query": query}
    if window > 10:
        rescore = {"rescore_query": {"match_all": {}}, "query_weight": 1.0, "rescore_query_weight": 0.0}
        body["rescore"] = {"window_size": window, "query": rescore}
    return body


def collecting(
    client: Any,
    name: str,
    engine: Any,
    args: argparse.Namespace,
    bm25: list[dict[str, Any]],
    vectors: list[SparseVector],
    rules: dict[str, list[frozenset[str]]],
    pruned: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """In the same shuffled passes: each scoring query alone (no real rescore) collecting w hits, for each w of
    `--windows`, and each whole two-step request with that window, against BM25 collecting 10; what a rescore
    window asks of phase one, and what the rescore adds."""
    deferred = rules.get(f" df{args.df_ratio:g}", rules[""])
    queries: dict[str, list[dict[str, Any]]] = {
        "bm25": bm25,
        "exact": [build_splade_query(v, engine=engine).body["query"] for v in vectors],
    }
    windows = args.windows
    whole: dict[str, list[dict[str, Any]]] = {}
    # Phase one on each pruned field, and on the full field (the two-phase mode of an index without the layout).
    fields = [*((f"k{k}", f) for f, k in sorted(pruned.items(), key=lambda item: item[1])), ("full", VECTOR_FIELD)]
    rule = f" df{args.df_ratio:g}" if args.df_ratio else ""
    for label, field in fields:
        q = args.window_terms
        queries[f"phase one {label} q{q}{rule}"] = [
            two_step_body(engine, v, field, q, 10, deferred=d)["query"] for v, d in zip(vectors, deferred, strict=True)
        ]
        for w in windows[1:]:
            whole[f"two-step {label} q{q}{rule} w{w}"] = [
                two_step_body(engine, v, field, q, w, deferred=d) for v, d in zip(vectors, deferred, strict=True)
            ]
    bodies = {
        f"{mode} collecting {w}": [collecting_body(q, w) for q in qs] for mode, qs in queries.items() for w in windows
    }
    bodies.update(whole)
    latency, hits = run_passes(client, dict.fromkeys(bodies, name), bodies, args.repeat)
    exact = hits[f"exact collecting {windows[0]}"]
    base = statistics.median(latency[f"bm25 collecting {windows[0]}"])
    print(f"\nin the same passes, p50 against BM25 collecting {windows[0]} ({base:.2f} ms):")
    out: dict[str, dict[str, Any]] = {}
    for mode, values in latency.items():
        p50 = statistics.median(values)
        out[mode] = {"p50_ms": p50, "vs_bm25": p50 / base}
        shown = ""
        if mode in whole:
            out[mode]["agreement"] = agreement(hits[mode], exact)
            shown = f"  agreement {out[mode]['agreement']:.3f}"
        print(f"  {mode:<38} p50 {p50:8.2f} ms  {p50 / base:6.2f}x{shown}")
    return out


def plot(collected: dict[str, dict[str, Any]], windows: list[int], label: str, path: str) -> None:
    """One stacked bar per two-step setting: phase one collecting the window, and what the rescore adds, as
    multiples of BM25's p50, beside exact search; the 1.5x goal as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [m for m in collected if m.startswith("two-step")]
    names, first, rest, agree = [], [], [], []
    for mode in settings:
        head, window = mode.rsplit(" w", 1)
        one = collected[f"phase one{head[len('two-step') :]} collecting {window}"]["vs_bm25"]
        names.append(f"{head[len('two-step ') :]}\nw {int(window):,}")
        first.append(one)
        rest.append(max(collected[mode]["vs_bm25"] - one, 0.0))
        agree.append(collected[mode]["agreement"])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = range(len(names))
    ax.bar(x, first, label="phase one, collecting the window")
    ax.bar(x, rest, bottom=first, label="the rescore of the window (whole request minus phase one)")
    for i, (a, b, share) in enumerate(zip(first, rest, agree, strict=True)):
        ax.text(i, a + b + 0.1, f"{share:.3f}", ha="center", fontsize=7)
    exact = collected[f"exact collecting {windows[0]}"]["vs_bm25"]
    ax.axhline(exact, color="black", linestyle="--", label="exact search")
    ax.axhline(1.5, color="grey", linestyle=":", label="goal: 1.5x BM25")
    ax.set_ylim(0, 1.35 * max(exact, *(a + b for a, b in zip(first, rest, strict=True))))
    ax.set_xticks(list(x), names, fontsize=7)
    ax.set_ylabel("p50 / BM25 p50 (same passes)")
    ax.set_title(f"{label}: where a two-step request's time goes (top-10 agreement above each bar)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--size", type=int, default=1_000_000, help="the documents of the scale.py index to count")
    parser.add_argument("--queries", type=int, default=100, help="SciFact test queries counted")
    parser.add_argument("--terms", default="8,16,32", help="phase one: query terms sent to the pruned field")
    parser.add_argument("--df-ratio", type=float, default=5.0, help="the df rule's ratio (0: none)")
    parser.add_argument(
        "--windows",
        default="10,300,1000,3000",
        help="also time each scoring query alone collecting this many hits (empty: count only)",
    )
    parser.add_argument("--window-terms", type=int, default=16, help="phase one's query terms in that timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--plot", help="where a two-step request's time goes, per setting (needs --windows)")
    parser.add_argument("--from-json", help="draw --plot from an earlier --json run instead of measuring")
    args = parser.parse_args()
    args.windows = [int(w) for w in args.windows.split(",") if w]
    if args.from_json:
        earlier = json.loads(Path(args.from_json).read_text())
        label = f"{earlier['engine']}, {earlier['documents']:,} documents"
        plot(earlier["collecting"], args.windows, label, args.plot)
        return 0
    name = f"bench-scale-{args.size}"
    if beir_missing(args.dataset):
        return 2
    client = connect()
    engine = engine_for(client)
    if not client.indices.exists(index=name):
        print(f"no index {name}: build it first with benchmarks/scale.py --sizes {args.size} --keep")
        return 2
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    texts = list(dataset.queries.values())[: args.queries]
    documents = int(client.count(index=name)["count"])
    meta = client.indices.get_mapping(index=name)[name]["mappings"].get("_meta", {})
    pruned: dict[str, int] = meta.get("scale_build", {}).get("first_phase", {})
    print(f"{engine.label}; {name}: {documents:,} documents; pruned fields {pruned or 'none'}; {len(texts)} queries")

    table = read_df(client, name)
    if table is None or table.documents != documents:
        print("  counting the df table over the model's vocabulary ...", flush=True)
        table = build_df(client, name, list(encoder.tokenizer.get_vocab()))
    vectors = [encoder.encode_queries([t])[0] for t in texts]
    modes: dict[str, dict[str, float]] = {}

    terms = [text_terms(client, name, t) for t in texts]
    df_text = text_df(client, name, [term for query in terms for term in query])
    bm25 = [build_bm25_query(t, fields=("text",))["query"] for t in texts]
    modes["bm25"] = summary([sum(df_text[x] for x in q) for q in terms], matched(client, name, bm25), documents)

    def full_field(label: str, queries: list[SparseVector]) -> None:
        plans = [build_splade_query(v, engine=engine) for v in queries]
        postings = [sum(table.df(t) for t in plan.terms) for plan in plans]
        modes[label] = summary(postings, matched(client, name, [p.body["query"] for p in plans]), documents)

    full_field("exact", vectors)
    full_field("doc-only", [doc_only_vector(encoder, t) for t in texts])
    rules = {"": [frozenset[str]() for _ in vectors]}
    if args.df_ratio:
        rules[f" df{args.df_ratio:g}"] = [table.costly(v, args.df_ratio, 0.4) for v in vectors]
    for field, k in sorted(pruned.items(), key=lambda item: item[1]):
        sent: dict[str, list[tuple[SparseVector, dict[str, Any]]]] = {}
        for q in [int(x) for x in args.terms.split(",")]:
            for suffix, deferred in rules.items():
                sent[f"phase one k{k} q{q}{suffix}"] = [
                    (phase_one_terms(v, d).top_k(q), two_step_body(engine, v, field, q, 100, deferred=d)["query"])
                    for v, d in zip(vectors, deferred, strict=True)
                ]
        df_field = count_tokens(
            client, name, {t for queries in sent.values() for v, _ in queries for t in v}, field_name=field
        )
        for mode, queries in sent.items():
            postings = [sum(df_field.get(t, 0) for t in v) for v, _ in queries]
            modes[mode] = summary(postings, matched(client, name, [body for _, body in queries]), documents)

    base = modes["bm25"]
    print(f"\n{'mode':<28} {'postings':>12} {'x BM25':>7} {'matched':>10} {'share':>6} {'x BM25':>7}")
    for mode, row in modes.items():
        row["postings_vs_bm25"] = row["postings"] / base["postings"]
        row["matched_vs_bm25"] = row["matched"] / base["matched"]
        print(
            f"{mode:<28} {row['postings']:>12,.0f} {row['postings_vs_bm25']:>6.1f}x {row['matched']:>10,.0f} "
            f"{row['matched_share']:>6.1%} {row['matched_vs_bm25']:>6.1f}x"
        )
    collected = collecting(client, name, engine, args, bm25, vectors, rules, pruned) if args.windows else {}
    terms_sent = {"bm25": statistics.fmean(len(q) for q in terms), "exact": statistics.fmean(len(v) for v in vectors)}
    print(f"\nterms per query: BM25 {terms_sent['bm25']:.1f}, SPLADE {terms_sent['exact']:.1f}")
    if args.json_file:
        out = {
            "engine": engine.label,
            "index": name,
            "documents": documents,
            "pruned_fields": pruned,
            "terms_per_query": terms_sent,
            "vector_field": VECTOR_FIELD,
            "modes": modes,
            "collecting": collected,
        }
        Path(args.json_file).write_text(json.dumps(out, indent=2))
    if args.plot and collected:
        plot(collected, args.windows, f"{engine.label}, {documents:,} documents", args.plot)
        print(f"plot: {args.plot}")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
