"""Quality of mixed precision on splade-os's PyTorch path: SciFact nDCG@10 and top-10 token overlap against fp32.

    python benchmarks/precision.py --scifact DATA/scifact --model CHECKPOINT            # all 5,183 documents
    python benchmarks/precision.py --docs 1000 --device cpu --precisions fp32 bf16     # a subset, see below

Not a test: it prints a Markdown table (and writes JSON with --json). Each precision encodes the same documents
and the test queries through `SpladeEncoder(..., backend="torch", precision=...)`; retrieval is exact
dot-product scoring in memory (`splade_os.evaluation.evaluate.exact_run`) and nDCG@10 comes from
`splade_os.evaluation.evaluate.compute_metrics`, so no cluster is needed. The first precision is the reference of the
overlap: per document, the share of its 10 heaviest tokens that the other precision also ranks in its top 10.

`--docs N` keeps every document judged for a test query plus randomly chosen others up to N (seeded): a smaller
collection than SciFact's, so its nDCG@10 is not SciFact's, but every precision is scored on the same one. It
exists for CPUs without native bfloat16, where bf16 runs several times slower than fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from splade_os.evaluation.evaluate import compute_metrics, exact_run, load_beir  # noqa: E402
from splade_os.model.encoder import SpladeEncoder  # noqa: E402
from splade_os.vectors import SparseVector  # noqa: E402

SHARED = REPO.parent / "shared"


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    """Ids and texts of a BEIR corpus.jsonl, each text title + " " + text as `splade-os index` encodes it."""
    ids, texts = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                doc = json.loads(line)
                title = str(doc.get("title") or "").strip()
                ids.append(str(doc["_id"]))
                texts.append(f"{title} {doc['text']}" if title else str(doc["text"]))
    return ids, texts


def subset(ids: list[str], judged: set[str], size: int, seed: int) -> list[int]:
    """Positions of every judged document plus random others, `size` in all, in corpus order."""
    keep = [i for i, d in enumerate(ids) if d in judged]
    others = np.array([i for i, d in enumerate(ids) if d not in judged])
    extra = np.random.default_rng(seed).choice(others, size=max(0, min(size - len(keep), len(others))), replace=False)
    return sorted(keep + [int(i) for i in extra])


def top_overlap(a: SparseVector, b: SparseVector, k: int = 10) -> float | None:
    """Share of a's k heaviest tokens among b's k heaviest; None when a is empty."""
    top_a = {t for t, _ in a.sorted_items()[:k]}
    if not top_a:
        return None
    return len(top_a & {t for t, _ in b.sorted_items()[:k]}) / len(top_a)


def encode_in_chunks(encoder: SpladeEncoder, texts: list[str], label: str, chunk: int = 256) -> list[SparseVector]:
    out: list[SparseVector] = []
    for start in range(0, len(texts), chunk):
        out.extend(encoder.encode_documents(texts[start : start + chunk]))
        print(f"  {label}: {len(out):,}/{len(texts):,} documents", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact", type=Path, default=SHARED / "data" / "scifact", help="BEIR SciFact folder")
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "splade-tiny", help="checkpoint folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="the first is the reference")
    parser.add_argument("--docs", type=int, default=0, help="judged documents plus random others up to N (0: all)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    dataset = load_beir(args.scifact, "test")
    ids, texts = read_corpus(dataset.corpus)
    total = len(ids)
    if args.docs:
        judged = {d for judgements in dataset.qrels.values() for d in judgements}
        chosen = subset(ids, judged, args.docs, args.seed)
        ids, texts = [ids[i] for i in chosen], [texts[i] for i in chosen]
    qids = sorted(dataset.queries)
    collection = f"SciFact, {len(ids):,} of {total:,} documents" + (f" (seed {args.seed})" if args.docs else "")
    print(f"{collection}, {len(qids)} test queries, max length {args.max_length}, device {args.device}", flush=True)

    rows: list[dict[str, Any]] = []
    reference: list[SparseVector] | None = None
    for precision in args.precisions:
        encoder = SpladeEncoder(
            args.model, backend="torch", device=args.device, precision=precision, max_length=args.max_length
        )
        start = time.perf_counter()
        documents = encode_in_chunks(encoder, texts, precision)
        seconds = time.perf_counter() - start
        queries = dict(zip(qids, encoder.encode_queries([dataset.queries[q] for q in qids]), strict=True))
        run = exact_run(zip(ids, documents, strict=True), queries, depth=100)
        ndcg = compute_metrics(dataset.qrels, run, ("nDCG@10",))["nDCG@10"]
        row: dict[str, Any] = {
            "precision": precision,
            "device": args.device,
            "documents": len(ids),
            "ndcg@10": round(ndcg, 4),
            "docs_per_s": round(len(ids) / seconds, 1),
            "mean_terms": round(float(np.mean([len(v) for v in documents])), 1),
        }
        if reference is None:
            reference = documents
        else:
            overlaps = [o for a, b in zip(reference, documents, strict=True) if (o := top_overlap(a, b)) is not None]
            row["top10_overlap"] = round(float(np.mean(overlaps)), 4)
            row["ndcg@10_delta"] = round(ndcg - rows[0]["ndcg@10"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    print(f"{collection}; model {args.model.name}; device {args.device}")
    print("| precision | nDCG@10 | vs first | top-10 token overlap | terms/doc | docs/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        delta = f"{row['ndcg@10_delta']:+.4f}" if "ndcg@10_delta" in row else "reference"
        overlap = f"{row['top10_overlap']:.3f}" if "top10_overlap" in row else "-"
        print(
            f"| {row['precision']} | {row['ndcg@10']:.4f} | {delta} | {overlap} | {row['mean_terms']:.0f} | "
            f"{row['docs_per_s']:.1f} |"
        )
    if args.json:
        summary = {"collection": collection, "model": str(args.model), "rows": rows}
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
