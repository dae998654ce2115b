"""What index-time pruning of document vectors, and leaving vectors out of `_source`, cost and save, on a real node.

    python benchmarks/pruning.py [--dataset ../shared/data/scifact] [--plot docs/pruning.png] [--json FILE]

It indexes the collection once with the real model (unpruned), then builds one index per pruning setting from
those vectors, pruned exactly as `splade-os index --top-k/--min-weight/--prune-ratio` prunes them, twice: with the
vector in `_source` (the default) and without it (`--no-vectors-in-source`). For each it reports features per
document, the size on disk (one segment, recovery copies dropped) against the same documents indexed for BM25
only, and nDCG@10 / R@100 of SPLADE search over the judged test queries against the unpruned index's. The dataset
is a BEIR folder (SciFact: https://github.com/beir-cellar/beir); the engine is whichever `OPENSEARCH_URL` /
`ELASTICSEARCH_URL` names.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scale import real_documents, size_on_disk
from scifact_common import beir_missing

from splade_os.engines import engine_for
from splade_os.engines.clients import connect
from splade_os.evaluation.evaluate import evaluate_modes, load_beir
from splade_os.mappings import VECTOR_FIELD, index_body
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher, prune_like_index
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("unpruned", {}),
    ("ratio 0.05", {"max_ratio": 0.05}),
    ("ratio 0.1", {"max_ratio": 0.1}),
    ("ratio 0.2", {"max_ratio": 0.2}),
    ("ratio 0.3", {"max_ratio": 0.3}),
    ("top-k 128", {"top_k": 128}),
    ("top-k 64", {"top_k": 64}),
    ("min weight 0.3", {"min_weight": 0.3}),
]


def build(
    client: Any,
    name: str,
    docs: list[tuple[str, SparseVector, dict[str, Any]]],
    pruning: dict[str, Any] | None,
    manifest: dict[str, Any],
    in_source: bool = True,
) -> float:
    """Index the documents (without vectors when `pruning` is None); returns mean features per document."""
    engine = engine_for(client)
    body = index_body(replicas=0, engine=engine, manifest=manifest, pruning=pruning, vectors_in_source=in_source)
    if pruning is None:
        del body["mappings"]["properties"][VECTOR_FIELD]
    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    client.indices.create(index=name, body=body)
    lengths: list[int] = []

    def actions() -> Iterator[dict[str, Any]]:
        for doc_id, vector, fields in docs:
            source = dict(fields)
            if pruning is not None:
                pruned = prune_like_index(vector, pruning)
                lengths.append(len(pruned))
                source[VECTOR_FIELD] = engine.to_field(pruned)
            yield {"_index": name, "_id": doc_id, "_source": source}

    failed = [item for ok, item in engine.bulk(client, actions(), chunk_size=500, request_timeout=300) if not ok]
    if failed:
        raise SystemExit(f"{len(failed)} documents failed, first: {failed[0]}")
    client.indices.refresh(index=name)
    return statistics.mean(lengths) if lengths else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "pruning.png"))
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    if beir_missing(args.dataset):
        return 2
    client = connect()
    engine = engine_for(client)
    encoder = SpladeEncoder(args.model)
    dataset = load_beir(args.dataset)
    docs = real_documents(client, encoder, dataset)
    manifest = dict(encoder.manifest)
    print(f"{engine.label}; {len(docs)} documents; {len(dataset.queries)} judged queries", flush=True)

    build(client, "bench-pruning-bm25", docs, None, manifest)
    built = []
    for label, pruning in SETTINGS:
        slug = label.replace(" ", "-").replace(".", "")
        full, lean = f"bench-pruning-{slug}", f"bench-pruning-{slug}-lean"
        features = build(client, full, docs, pruning, manifest)
        build(client, lean, docs, pruning, manifest, in_source=False)
        built.append((label, pruning, full, lean, features))
    bm25_bytes = size_on_disk(client, "bench-pruning-bm25")
    rows: list[dict[str, Any]] = []
    for label, pruning, full, lean, features in built:
        with Searcher(full, encoder, client=client, force=True) as searcher:
            (report,) = evaluate_modes(searcher, dataset, modes=("splade",))
        size, lean_size = size_on_disk(client, full), size_on_disk(client, lean)
        rows.append(
            {
                "setting": label,
                "pruning": pruning,
                "features": features,
                "bytes": size,
                "lean_bytes": lean_size,
                "bm25_bytes": bm25_bytes,
                **report.metrics,
            }
        )
    base = rows[0]
    print(f"\nBM25 only: {bm25_bytes / 2**20:.1f} MiB")
    print(f"{'setting':<16}{'features':>9}{'MiB':>8}{'x BM25':>8}{'lean x':>8}{'nDCG@10':>9}{'delta':>8}{'R@100':>7}")
    for row in rows:
        row["ndcg_delta"] = row["nDCG@10"] - base["nDCG@10"]
        print(
            f"{row['setting']:<16}{row['features']:>9.1f}{row['bytes'] / 2**20:>8.1f}"
            f"{row['bytes'] / bm25_bytes:>8.2f}{row['lean_bytes'] / bm25_bytes:>8.2f}{row['nDCG@10']:>9.4f}"
            f"{row['ndcg_delta']:>+8.4f}{row['R@100']:>7.4f}"
        )
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"engine": engine.label, "rows": rows}, indent=2))
    _plot(rows, args.plot, engine.label)
    print(f"\nplot: {args.plot}")
    for name in ["bench-pruning-bm25", *(n for _, _, full, lean, _ in built for n in (full, lean))]:
        client.indices.delete(index=name)
    client.close()
    encoder.close()
    return 0


def _plot(rows: list[dict[str, Any]], path: str, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, style, name in (("bytes", "o", "vector in _source"), ("lean_bytes", "s", "vector not in _source")):
        xs = [r[key] / r["bm25_bytes"] for r in rows]
        ax.plot(xs, [r["nDCG@10"] for r in rows], style, label=name)
        for x, r in zip(xs, rows, strict=True):
            ax.annotate(r["setting"], (x, r["nDCG@10"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(rows[0]["nDCG@10"] - 0.005, color="grey", linestyle=":", label="unpruned nDCG@10 - 0.005")
    ax.axvline(3.0, color="grey", linestyle="--", label="3x BM25 size")
    ax.set_xlabel("index size / BM25-only index size")
    ax.set_ylabel("nDCG@10 (SciFact test)")
    ax.set_title(f"index-time pruning ({label})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
