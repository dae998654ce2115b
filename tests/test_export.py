"""Export: the SPLADE head in the graph, one copy of the decoder matrix, parity with PyTorch, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from splade_os.cli.export import export
from splade_os.errors import MissingDependencyError, ModelError
from splade_os.pooling import splade_pool

REPO = Path(__file__).resolve().parents[1]
SHARED_MODEL = Path(__file__).parents[1].parent / "shared/models/splade-tiny"
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
BUNDLED = REPO / "models" / "splade-tiny"
BUNDLED_INT8 = REPO / "models" / "splade-tiny-int8"


def _shared(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing (CI=true: this is a failure, not a skip)", pytrace=False)
        pytest.skip(f"{path} is missing: parity tests need ../shared")
    return path


# ----------------------------------------------------------------------------------------------------------------
# The hand-written head on a toy body (needs onnx, not torch)
# ----------------------------------------------------------------------------------------------------------------


def _toy_body(embedding: np.ndarray) -> Any:
    """input_ids -> Gather(embedding) -> Tanh = hidden; the embedding is also the decoder (tied)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["embedded"]),
            helper.make_node("Tanh", ["embedded"], ["hidden"]),
        ],
        "toy",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["b", "t", embedding.shape[1]])],
        [numpy_helper.from_array(embedding, "emb")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8) if onnx else None


def _run(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_tiled_head_matches_numpy_pooling(chunk_size: int) -> None:
    from splade_os.export import add_splade_head

    rng = np.random.default_rng(0)
    vocab, hidden = 300, 16
    emb = rng.normal(size=(vocab, hidden)).astype(np.float32)
    bias = rng.normal(size=vocab).astype(np.float32) * 0.1
    model = add_splade_head(_toy_body(emb), emb, bias, hidden_output="hidden", chunk_size=chunk_size)
    ids = rng.integers(0, vocab, size=(3, 9))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    logits = np.tanh(emb[ids]) @ emb.T + bias
    np.testing.assert_allclose(_run(model, ids, mask), splade_pool(logits, mask), atol=1e-5)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_tied_decoder_matrix_is_stored_once(quantize: str | None) -> None:
    from onnx import numpy_helper

    from splade_os.export import add_splade_head

    emb = np.random.default_rng(1).normal(size=(500, 8)).astype(np.float32)
    model = add_splade_head(_toy_body(emb), emb, None, hidden_output="hidden", chunk_size=64, quantize=quantize)
    stored = sum(numpy_helper.to_array(init).size for init in model.graph.initializer)
    # The chunks (plus per-row scales and biases) hold it; the body's own copy is gone.
    assert emb.size <= stored < emb.size + 4 * 500
    assert "emb" not in {init.name for init in model.graph.initializer}


def test_int8_head_is_close_to_fp32() -> None:
    from splade_os.export import add_splade_head

    rng = np.random.default_rng(2)
    emb = rng.normal(size=(400, 32)).astype(np.float32)
    ids = rng.integers(0, 400, size=(2, 12))
    mask = np.ones_like(ids)
    fp32 = _run(add_splade_head(_toy_body(emb), emb, None, hidden_output="hidden"), ids, mask)
    int8 = _run(add_splade_head(_toy_body(emb), emb, None, hidden_output="hidden", quantize="int8"), ids, mask)
    assert np.abs(fp32 - int8).max() < 0.1 * fp32.max()


def test_committed_models_store_the_vocabulary_matrix_once() -> None:
    onnx = pytest.importorskip("onnx")
    for folder, bytes_per_weight in ((BUNDLED, 4), (BUNDLED_INT8, 1)):
        manifest = json.loads((folder / "manifest.json").read_text())
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        matrix = [
            i for i in model.graph.initializer if list(i.dims) == [manifest["vocab_size"], manifest["hidden_size"]]
        ]
        assert matrix == [], f"{folder}: a full [vocab, hidden] copy of the embedding is stored besides the chunks"
        size = (folder / "model.onnx").stat().st_size
        assert size < 1.25 * manifest["vocab_size"] * manifest["hidden_size"] * bytes_per_weight + 2_500_000


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------


def test_missing_torch_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    from splade_os import export as export_module

    real = importlib.import_module

    def fake_import(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(export_module.importlib, "import_module", fake_import)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    with pytest.raises(MissingDependencyError, match=r"pip install 'splade-os\[export\]'"):
        export_module.export_model(checkpoint, tmp_path / "out")
    result = CliRunner().invoke(export, [str(checkpoint), str(tmp_path / "out2")])
    assert result.exit_code == 1
    assert "pip install 'splade-os[export]'" in result.output


def test_folder_without_config_is_a_model_error(tmp_path: Path) -> None:
    from splade_os.export import resolve_source

    with pytest.raises(ModelError, match="has no config.json"):
        resolve_source(tmp_path)
    result = CliRunner().invoke(export, [str(tmp_path), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "has no config.json" in result.output


def test_non_empty_output_folder_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    result = CliRunner().invoke(export, ["some/model", str(tmp_path)])
    assert result.exit_code == 1
    assert "--overwrite" in result.output


# ----------------------------------------------------------------------------------------------------------------
# Real export and parity with PyTorch (export extra)
# ----------------------------------------------------------------------------------------------------------------


def _scifact_texts(n: int) -> list[str]:
    path = _shared(SCIFACT) / "corpus.jsonl"
    texts = []
    with path.open() as handle:
        for line in handle:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}" if doc["title"].strip() else doc["text"])
            if len(texts) == n:
                break
    return texts


def _reference(texts: list[str], max_length: int) -> tuple[np.ndarray, list[str]]:
    """SPLADE as most PyTorch code does it: log(1 + relu) over all logits, masked, max over tokens."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_dir = str(_shared(SHARED_MODEL))
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), 16):
            batch = tokenizer(
                texts[start : start + 16], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            logits = model(**batch).logits
            pooled = (torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)).max(dim=1).values
            rows.append(pooled.numpy())
    return np.concatenate(rows), tokenizer.convert_ids_to_tokens(list(range(model.config.vocab_size)))


@pytest.fixture(scope="module")
def parity_data() -> tuple[list[str], np.ndarray]:
    texts = _scifact_texts(64)
    reference, _ = _reference(texts, 256)
    return texts, reference


@pytest.mark.torch
def test_fp32_onnx_matches_pytorch_on_scifact(parity_data: tuple[list[str], np.ndarray]) -> None:
    from splade_os.encoder import SpladeEncoder

    texts, reference = parity_data
    weights = SpladeEncoder(BUNDLED, max_length=256, threads=2).encode_weights(texts)
    assert np.abs(weights - reference).max() < 1e-4
    assert ((weights > 0) == (reference > 0)).all(), "the ONNX and PyTorch non-zero sets differ"


@pytest.mark.torch
def test_int8_onnx_keeps_the_heaviest_tokens(parity_data: tuple[list[str], np.ndarray]) -> None:
    from splade_os.encoder import SpladeEncoder

    texts, reference = parity_data
    weights = SpladeEncoder(BUNDLED_INT8, max_length=256, threads=2).encode_weights(texts)
    k = 32
    overlap = [
        len(set(np.argsort(-w)[:k]) & set(np.argsort(-r)[:k])) / k for w, r in zip(weights, reference, strict=True)
    ]
    # Measured 0.97 on these documents; nDCG@10 on SciFact is in benchmarks/encoder.py.
    assert np.mean(overlap) > 0.9


@pytest.mark.torch
def test_cli_export_writes_a_loadable_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from splade_os.encoder import SpladeEncoder
    from splade_os.export import sha256_file

    out = tmp_path / "tiny"
    result = CliRunner().invoke(export, [str(_shared(SHARED_MODEL)), str(out), "--max-length", "128", "--opset", "18"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(out / "model.onnx")
    assert (manifest["vocab_size"], manifest["max_length"], manifest["query_mode"]) == (30522, 128, "model")
    assert manifest["name"] == "splade-tiny" and manifest["opset"] == 18
    texts = _scifact_texts(8)
    fresh = SpladeEncoder(out).encode_weights(texts)
    committed = SpladeEncoder(BUNDLED, max_length=128).encode_weights(texts)
    assert np.abs(fresh - committed).max() < 1e-4
