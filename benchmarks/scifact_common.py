"""What the encoder benchmarks share, importing neither splade-os nor onnxruntime (benchmarks/peers.py measures
each system's memory in its own process): SciFact in BEIR layout, a timer and the PyTorch reference."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def beir_missing(folder: str) -> bool:
    """True, after saying what to pass, when `folder` holds no BEIR collection."""
    if Path(folder, "corpus.jsonl").is_file():
        return False
    print(f"no BEIR collection at {folder}: pass --dataset FOLDER (corpus.jsonl, queries.jsonl, qrels/)")
    return True


def load_scifact(root: Path) -> tuple[list[str], list[str], dict[str, str], dict[str, dict[str, int]]]:
    ids, texts = [], []
    with (root / "corpus.jsonl").open() as handle:
        for line in handle:
            doc = json.loads(line)
            ids.append(str(doc["_id"]))
            texts.append(f"{doc['title']} {doc['text']}" if doc.get("title", "").strip() else doc["text"])
    queries = {}
    with (root / "queries.jsonl").open() as handle:
        for line in handle:
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with (root / "qrels" / "test.tsv").open() as handle:
        next(handle)
        for line in handle:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels[qid][did] = int(score)
    return ids, texts, queries, dict(qrels)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def torch_reference(
    model_dir: Path, texts: list[str], max_length: int, threads: int, batch_size: int = 32
) -> list[np.ndarray]:
    """SPLADE as most PyTorch code runs it: eager mode, log(1 + relu) over all logits, masked max."""
    return torch_reference_encoder(model_dir, max_length, threads, batch_size)(texts)


def torch_reference_encoder(
    model_dir: Path, max_length: int, threads: int, batch_size: int = 32
) -> Callable[[list[str]], list[np.ndarray]]:
    """The checkpoint loaded once; the function returned encodes texts as `torch_reference` does."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    def encode(texts: list[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                logits = model(**batch).logits
                mask = batch["attention_mask"].unsqueeze(-1)
                out.extend((torch.log1p(torch.relu(logits)) * mask).max(dim=1).values.numpy())
        return out

    return encode
