"""Writes tests/golden/pytorch_reference.json: SPLADE vectors of the original PyTorch splade-tiny checkpoint.

The bundled models/splade-tiny is an ONNX export of that checkpoint, which the repository does not hold. This
file keeps what PyTorch computes from it, so tests/test_export.py checks the committed ONNX models against the
real model without the checkpoint. Regenerate (needs the export extra and the checkpoint folder):

    python tests/golden/make_pytorch_reference.py CHECKPOINT_DIR

The texts are the demo corpus (title and text) plus a few long concatenations that the 256-token limit cuts.
Each vector is stored sparsely (token ids, weights to 7 significant digits), computed as most PyTorch SPLADE code
does it: log(1 + relu(logits)), attention-masked, max over tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("pytorch_reference.json")
MAX_LENGTH = 256


def reference_texts() -> list[str]:
    docs = [json.loads(line) for line in (REPO / "examples" / "demo-corpus.jsonl").read_text("utf-8").splitlines()]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    # Long texts: ten documents each, well past 256 tokens, so truncation is part of what is compared.
    texts += [" ".join(texts[start : start + 10]) for start in range(0, 40, 10)]
    return texts


def main(checkpoint: str) -> None:
    import numpy as np
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model = transformers.AutoModelForMaskedLM.from_pretrained(checkpoint).eval()
    texts = reference_texts()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), 16):
            batch = tokenizer(
                texts[start : start + 16], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
            )
            logits = model(**batch).logits
            pooled = (torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)).max(dim=1).values
            for row in pooled.numpy().astype(np.float32):
                ids = np.flatnonzero(row > 0)
                vectors.append({"ids": ids.tolist(), "weights": [float(f"{w:.7g}") for w in row[ids]]})
    golden = {
        "about": "SPLADE weights of the PyTorch splade-tiny checkpoint; see make_pytorch_reference.py",
        "max_length": MAX_LENGTH,
        "vocab_size": int(model.config.vocab_size),
        "texts": texts,
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(golden, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(texts)} texts, {sum(len(v['ids']) for v in vectors)} non-zero weights")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {Path(__file__).name} CHECKPOINT_DIR")
    main(sys.argv[1])
