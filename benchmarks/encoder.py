"""Encoder throughput on SciFact: PyTorch reference vs splade-os fp32 / int8 vs sentence-transformers.

    python benchmarks/encoder.py                      # all 5,183 SciFact documents, max length 256, 2 threads
    python benchmarks/encoder.py --limit 500 --base-limit 64 --skip st

Not a test: it prints a Markdown table (and writes JSON with --json). Each configuration encodes the same
documents in one process, one after the other, with the same thread count. Also reported:

* model FLOP utilisation (MFU): the encoder's useful FLOP/s (matrix multiplications over real, unpadded tokens:
  attention projections, attention scores, feed-forward, MLM transform and the vocabulary projection) divided
  by the FLOP/s of a 2048^3 fp32 MatMul run by onnxruntime with the same threads;
* nDCG@10 on the SciFact test queries with exact in-memory dot-product scoring, for the reference, fp32 and
  int8 vectors, and the top-k overlap of int8 with fp32.

The base-size rows use BERT-base's architecture (12 layers, hidden 768, vocabulary 30,522) with random
weights: the speed is what a base-size SPLADE checkpoint costs; its vectors mean nothing. It is about 15x
slower per document, so it runs on the first `--base-limit` documents only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from splade_os.model.encoder import SpladeEncoder  # noqa: E402
from splade_os.model.export import export_model  # noqa: E402
from splade_os.vectors import SparseVector  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from scifact_common import load_scifact, timed, torch_reference  # noqa: E402

SHARED = REPO.parent / "shared"


def ndcg_at_10(
    doc_ids: Sequence[str],
    docs: Sequence[SparseVector],
    queries: dict[str, SparseVector],
    qrels: dict[str, dict[str, int]],
) -> float:
    """Exact dot-product retrieval over an in-memory inverted index, then nDCG@10."""
    postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for d, vector in enumerate(docs):
        for token, weight in vector.items():
            postings[token].append((d, weight))
    total = 0.0
    for qid, judged in qrels.items():
        scores: dict[int, float] = defaultdict(float)
        for token, weight in queries[qid].items():
            for d, dw in postings.get(token, ()):
                scores[d] += weight * dw
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], doc_ids[kv[0]]))[:10]
        dcg = sum(judged.get(doc_ids[d], 0) / math.log2(r + 2) for r, (d, _) in enumerate(ranked))
        ideal = sorted(judged.values(), reverse=True)[:10]
        total += dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return total / len(qrels)


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large fp32 MatMul in onnxruntime: the denominator of the utilisation."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    tensor = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", tensor[:2], tensor[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a, b = np.random.default_rng(0).random((2, n, n), dtype=np.float32)
    session.run(None, {"a": a, "b": b})
    best = min(timed(lambda: session.run(None, {"a": a, "b": b})) for _ in range(repeats))
    return 2 * n**3 / best


def useful_flops(config: dict[str, int], lengths: np.ndarray) -> float:
    """Multiply-adds x 2 of the matrix multiplications over the real tokens of each text."""
    h, i, layers, v = (
        config["hidden_size"],
        config["intermediate_size"],
        config["num_hidden_layers"],
        config["vocab_size"],
    )
    per_token = layers * (8 * h * h + 4 * h * i) + 2 * h * h + 2 * h * v
    attention = layers * 4 * h * float(np.sum(lengths.astype(np.float64) ** 2))
    return per_token * float(lengths.sum()) + attention


def to_vectors(rows: Sequence[np.ndarray], encoder: SpladeEncoder) -> list[SparseVector]:
    return [encoder._to_vector(np.asarray(row, dtype=np.float32)) for row in rows]


def sentence_transformers_run(
    model_dir: Path, texts: list[str], max_length: int, threads: int, backend: str
) -> tuple[float, str]:
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    torch.set_num_threads(threads)
    mlm = MLMTransformer(str(model_dir), max_seq_length=max_length, backend=backend)
    model = SparseEncoder(modules=[mlm, SpladePooling(pooling_strategy="max")], device="cpu")
    model.encode_document(texts[:8], batch_size=32)
    seconds = timed(lambda: model.encode_document(texts, batch_size=32, convert_to_sparse_tensor=True))
    return seconds, f"sentence-transformers SparseEncoder ({backend}, batch 32)"


def base_checkpoint(folder: Path, tokenizer_from: Path) -> Path:
    """A BERT-base-size masked LM with random weights, saved as a checkpoint folder."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig()).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tokenizer_from / name).read_bytes())
    return folder


def run_size(
    label: str,
    checkpoint: Path,
    fp32_dir: Path,
    int8_dir: Path,
    texts: list[str],
    args: argparse.Namespace,
    peak: float,
    rows: list[dict[str, Any]],
    untiled_dir: Path | None = None,
) -> dict[str, list[SparseVector]]:
    config = json.loads((checkpoint / "config.json").read_text())
    encoder = SpladeEncoder(fp32_dir, threads=args.threads, max_length=args.max_length)
    counting = Tokenizer.from_file(str(fp32_dir / "tokenizer.json"))  # the encoder's own tokenizers stay untouched
    counting.enable_truncation(args.max_length)
    lengths = np.array([len(e.ids) for e in counting.encode_batch(texts)])
    flops = useful_flops(config, lengths)
    vectors: dict[str, list[SparseVector]] = {}
    reference_seconds: float | None = None

    def record(name: str, seconds: float) -> None:
        nonlocal reference_seconds
        if reference_seconds is None:
            reference_seconds = seconds
        rows.append(
            {
                "model": label,
                "configuration": name,
                "documents": len(texts),
                "seconds": round(seconds, 2),
                "docs_per_s": round(len(texts) / seconds, 2),
                "vs_reference": round(reference_seconds / seconds, 2),
                "mfu": round(flops / seconds / peak, 3),
                "load_avg": round(os.getloadavg()[0], 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    if "torch" not in args.skip:
        result: list[np.ndarray] = []
        seconds = timed(lambda: result.extend(torch_reference(checkpoint, texts, args.max_length, args.threads)))
        record("PyTorch reference (transformers eager, batch 32)", seconds)
        vectors["reference"] = to_vectors(result, encoder)
    for name, folder in (
        ("splade-os fp32", fp32_dir),
        ("splade-os int8", int8_dir),
        ("splade-os fp32 untiled", untiled_dir),
    ):
        if folder is None or name.split()[-1] in args.skip:
            continue
        enc = SpladeEncoder(folder, threads=args.threads, max_length=args.max_length)
        enc.encode_documents(texts[:8])  # warm-up: session initialisation and first-run allocations
        out: list[SparseVector] = []
        record(name, timed(lambda enc=enc, out=out: out.extend(enc.encode_documents(texts))))  # type: ignore[misc]
        vectors[name.split()[-1]] = out
    if "st" not in args.skip:
        for backend in ("torch", "onnx"):
            try:
                seconds, name = sentence_transformers_run(checkpoint, texts, args.max_length, args.threads, backend)
            except Exception as exc:  # not installed, or the ONNX backend needs optimum
                print(f"skipped sentence-transformers ({backend}): {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            record(name, seconds)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact", type=Path, default=SHARED / "data" / "scifact")
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "splade-tiny", help="checkpoint folder")
    parser.add_argument("--limit", type=int, default=None, help="first N documents (default: all)")
    parser.add_argument("--base-limit", type=int, default=256, help="documents for the base-size rows; 0 skips them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "fp32", "int8", "untiled", "st"])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    doc_ids, texts, queries, qrels = load_scifact(args.scifact)
    doc_ids, texts = doc_ids[: args.limit], texts[: args.limit]
    peak = matmul_peak(args.threads)
    print(f"fp32 MatMul peak: {peak / 1e9:.1f} GFLOP/s with {args.threads} threads", flush=True)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"matmul_gflops": round(peak / 1e9, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = {}
        for name, kwargs in (("fp32", {}), ("int8", {"quantize": "int8"}), ("untiled", {"chunk_size": 1 << 20})):
            folders[name] = work / f"tiny-{name}"
            export_model(args.model, folders[name], max_length=args.max_length, **kwargs)
        vectors = run_size(
            "splade-tiny", args.model, folders["fp32"], folders["int8"], texts, args, peak, rows, folders["untiled"]
        )
        if "fp32" in vectors and "int8" in vectors:
            encoder = SpladeEncoder(folders["fp32"], threads=args.threads)
            encoder_int8 = SpladeEncoder(folders["int8"], threads=args.threads)
            qids = sorted(qrels)
            q_fp32 = dict(zip(qids, encoder.encode_queries([queries[q] for q in qids]), strict=True))
            q_int8 = dict(zip(qids, encoder_int8.encode_queries([queries[q] for q in qids]), strict=True))
            if args.limit is None:
                for name, docs, qv in (
                    ("reference", vectors.get("reference"), q_fp32),
                    ("fp32", vectors["fp32"], q_fp32),
                    ("int8", vectors["int8"], q_int8),
                ):
                    if docs is not None:
                        summary[f"ndcg@10_{name}"] = round(ndcg_at_10(doc_ids, docs, qv, qrels), 4)
            for k in (10, 32, 64):
                overlap = [
                    len({t for t, _ in a.sorted_items()[:k]} & {t for t, _ in b.sorted_items()[:k]}) / k
                    for a, b in zip(vectors["fp32"], vectors["int8"], strict=True)
                ]
                summary[f"int8_top{k}_overlap"] = round(float(np.mean(overlap)), 3)
            if "reference" in vectors:
                diffs = [
                    max([abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in set(a) | set(b)], default=0.0)
                    for a, b in zip(vectors["reference"], vectors["fp32"], strict=True)
                ]
                summary["fp32_max_abs_diff_vs_reference"] = float(max(diffs))
        print(json.dumps(summary), flush=True)
        if args.base_limit:
            base = base_checkpoint(work / "bert-base-random", args.model)
            for name, kwargs in (("fp32", {}), ("int8", {"quantize": "int8"})):
                folders[f"base-{name}"] = work / f"base-{name}"
                export_model(base, folders[f"base-{name}"], max_length=args.max_length, **kwargs)  # type: ignore[arg-type]
            base_args = argparse.Namespace(**{**vars(args), "skip": [*args.skip, "untiled"]})
            run_size(
                "BERT-base size (random weights)",
                base,
                folders["base-fp32"],
                folders["base-int8"],
                texts[: args.base_limit],
                base_args,
                peak,
                rows,
            )

    print()
    print("| model | configuration | docs | docs/s | vs reference | MFU |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['configuration']} | {row['documents']} | {row['docs_per_s']:.1f} | "
            f"{row['vs_reference']:.2f}x | {row['mfu']:.2f} |"
        )
    print()
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
