"""Encoding throughput on a GPU: splade-os's PyTorch path against plain PyTorch, in the same run.

    python benchmarks/gpu.py --model CHECKPOINT --corpus DATA/scifact --batch-sizes 32 64 128
    python benchmarks/gpu.py --base-size --batch-sizes 64 128             # BERT-base size, random weights
    python benchmarks/gpu.py --device cpu --limit 300 --batch-sizes 32    # smoke check without a GPU

Not a test: it prints a Markdown table (and writes JSON with --json). For each precision and batch size both
encoders see the same documents (BEIR corpus.jsonl, title + text, at most --max-length tokens), after a warm-up:

* the baseline is what a short PyTorch script does: the transformers tokenizer padding each batch to its longest
  text, in corpus order; the model cast to the precision; SPLADE pooling written inline (log(1 + relu(logits))
  times the attention mask, max over tokens); the non-zero (token id, weight) pairs copied to the host;
* splade-os is `SpladeEncoder(model, device=..., precision=..., batch_size=...).encode_documents(texts)`:
  length-sorted batches, pooling and pruning on the device, `SparseVector`s keyed by token.

The ratio is splade-os docs/s over baseline docs/s; each figure is the best of --repeat timed passes, the two
encoders alternating. `--base-size` times a BertForMaskedLM of BERT-base's shape (12 layers, hidden 768, the
vocabulary of --model's tokenizer) with random weights: a throughput-only model whose vectors mean nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from splade_os.model.encoder import SpladeEncoder  # noqa: E402

SHARED = REPO.parent / "shared"


def read_texts(corpus: Path, limit: int | None) -> list[str]:
    texts: list[str] = []
    with (corpus / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(texts) >= limit:
                break
            doc = json.loads(line)
            title = str(doc.get("title") or "").strip()
            texts.append(f"{title} {doc['text']}" if title else str(doc["text"]))
    return texts


def base_size_checkpoint(folder: Path, tokenizer_from: Path) -> Path:
    """A random-weight BertForMaskedLM of BERT-base's shape, with the tokenizer of `tokenizer_from`."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForMaskedLM

    vocab = Tokenizer.from_file(str(tokenizer_from / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    BertForMaskedLM(config).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tokenizer_from / name).is_file():
            shutil.copyfile(tokenizer_from / name, folder / name)
    return folder


class PlainPyTorch:
    """The baseline: tokenize, run, pool, copy the non-zero pairs back, as a short script would."""

    def __init__(self, model_dir: Path, device: str, precision: str, max_length: int) -> None:
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.torch = torch
        self.device = torch.device(device)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForMaskedLM.from_pretrained(str(model_dir)).to(self.device, dtype).eval()
        self.max_length = max_length

    def encode(self, texts: list[str], batch_size: int) -> list[tuple[Any, Any]]:
        torch = self.torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits
                weights = (torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)).amax(dim=1)
                rows, cols = weights.nonzero(as_tuple=True)
                values = weights[rows, cols].float()
                out.append((rows.cpu().numpy(), (cols.cpu().numpy(), values.cpu().numpy())))
        return out


def timed(fn: Callable[[], Any], device: str) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        default=SHARED / "models" / "splade-tiny",
        help="checkpoint folder (config.json, weights, tokenizer.json)",
    )
    parser.add_argument("--base-size", action="store_true", help="time a random BERT-base-size model instead")
    parser.add_argument("--corpus", type=Path, default=SHARED / "data" / "scifact", help="BEIR folder")
    parser.add_argument("--limit", type=int, default=2000, help="documents per pass")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: its own)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = read_texts(args.corpus, args.limit)
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = base_size_checkpoint(Path(tmp) / "bert-base-random", args.model) if args.base_size else args.model
        label = "BERT-base size, random weights (throughput only)" if args.base_size else args.model.name
        print(f"{label} on {device_name} ({args.device}), {len(texts):,} documents, max length {args.max_length}")
        for precision in args.precisions:
            plain = PlainPyTorch(model_dir, args.device, precision, args.max_length)
            for batch_size in args.batch_sizes:
                ours = SpladeEncoder(
                    model_dir,
                    device=args.device,
                    backend="torch",
                    precision=precision,
                    max_length=args.max_length,
                    batch_size=batch_size,
                )
                run_plain = functools.partial(plain.encode, texts, batch_size)
                run_ours = functools.partial(ours.encode_documents, texts)
                plain.encode(texts[:batch_size], batch_size)  # warm-up: kernels, allocator, autotuning
                ours.encode_documents(texts[:batch_size])
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                plain_s = ours_s = float("inf")
                for _ in range(args.repeat):
                    plain_s = min(plain_s, timed(run_plain, args.device))
                    ours_s = min(ours_s, timed(run_ours, args.device))
                row = {
                    "model": label,
                    "device": device_name,
                    "precision": precision,
                    "batch_size": batch_size,
                    "documents": len(texts),
                    "plain_docs_per_s": round(len(texts) / plain_s, 1),
                    "splade_os_docs_per_s": round(len(texts) / ours_s, 1),
                    "ratio": round(plain_s / ours_s, 3),
                }
                if args.device.startswith("cuda"):
                    row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
                ours.close()
                del ours
            del plain
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()

    print()
    print("| model | device | precision | batch | plain PyTorch docs/s | splade-os docs/s | ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['device']} | {row['precision']} | {row['batch_size']} | "
            f"{row['plain_docs_per_s']:.1f} | {row['splade_os_docs_per_s']:.1f} | {row['ratio']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
