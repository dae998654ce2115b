"""The PyTorch checkpoint behind models/splade-tiny, rebuilt from its ONNX file (the repository holds no other copy)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "splade-tiny"


def pytorch_model_from_the_export(model_dir: Path) -> Any:
    """The `BertForMaskedLM` whose weights models/splade-tiny holds, rebuilt from the ONNX file alone.

    Weights keep their PyTorch names in the graph, except the projections (named by the MatMul node that uses
    them, stored transposed) and the tied embedding matrix, stored once as the vocabulary projection's tiles.
    The shape (2 layers, 2 heads, intermediate 512) is the checkpoint's, from PROVENANCE.md.
    """
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from onnx import numpy_helper

    graph = onnx.load(str(model_dir / "model.onnx")).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {name.removeprefix("mlm."): array for name, array in tensors.items() if name.startswith("mlm.")}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1].startswith("onnx::"):
            module = node.name.removeprefix("/mlm/").removesuffix("/MatMul").replace("/", ".")
            state[f"{module}.weight"] = tensors[node.input[1]].T
    tiles = sum(1 for name in tensors if name.startswith("splade/c") and name.endswith("/weight"))
    embedding = np.concatenate([tensors[f"splade/c{i}/weight"] for i in range(tiles)])
    bias = np.concatenate([tensors[f"splade/c{i}/bias"] for i in range(tiles)])
    state.update(
        {
            "bert.embeddings.word_embeddings.weight": embedding,
            "cls.predictions.decoder.weight": embedding,
            "cls.predictions.bias": bias,
            "cls.predictions.decoder.bias": bias,
        }
    )
    config = transformers.BertConfig(
        vocab_size=embedding.shape[0],
        hidden_size=embedding.shape[1],
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
    )
    model = transformers.BertForMaskedLM(config).eval()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return model


def checkpoint_folder(model_dir: Path, out: Path) -> Path:
    """A copy of the export folder `model_dir` (manifest, tokenizer) with the rebuilt checkpoint saved into it."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "tokenizer.json"):
        shutil.copyfile(model_dir / name, out / name)
    pytorch_model_from_the_export(model_dir).save_pretrained(str(out))
    return out


def random_masked_lm(family: str, **config: Any) -> Any:
    """A `{family}ForMaskedLM` (Bert, DistilBert...) with seeded random weights: parity needs no training."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model_config = getattr(transformers, f"{family}Config")(**config)
    return getattr(transformers, f"{family}ForMaskedLM")(model_config).eval()


def save_with_the_bundled_tokenizer(model: Any, folder: Path, tokenizer_class: str) -> Path:
    """`model` saved into `folder` with the WordPiece tokenizer of models/splade-tiny, as transformers loads it."""
    model.save_pretrained(str(folder))
    shutil.copyfile(BUNDLED / "tokenizer.json", folder / "tokenizer.json")
    tokenizer_config = {"tokenizer_class": tokenizer_class, "do_lower_case": True, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder
