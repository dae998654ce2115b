"""Model folders read as users have them (fastembed, Hugging Face, sentence-transformers, inference-free), against
the same checkpoint exported by `splade-os export`; `splade-os models`; one line for each unusable folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundled_checkpoint import random_masked_lm, save_with_the_bundled_tokenizer
from click.testing import CliRunner

from splade_os.cli.encode import encode
from splade_os.cli.models import models
from splade_os.errors import ModelError
from splade_os.model.encoder import SpladeEncoder
from splade_os.model.manifest import sha256_file

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "splade-tiny"
BUNDLED_INT8 = REPO / "models" / "splade-tiny-int8"
DEMO_CORPUS = REPO / "examples" / "demo-corpus.jsonl"
TOKENIZER_FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json")
QUERIES = ["what causes a heart attack", "treatment of diabetes in children", "how do vaccines work"]
IDF = {"heart": 3.5, "attack": 2.0, "causes": 1.25, "diabetes": 4.0, "vaccines": 2.5, "work": 0.5}
MAX_LENGTH = 128  # below the demo texts' longest, so truncation is part of every comparison


def _texts() -> list[str]:
    docs = [json.loads(line) for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines()]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    return texts[:10] + [" ".join(texts[start : start + 10]) for start in (0, 20)]  # two past MAX_LENGTH


def _run(args: list[str], command: Any = models) -> Any:
    return CliRunner().invoke(command, args)


# ----------------------------------------------------------------------------------------------------------------
# Without torch: an export's files without its manifest are a fastembed folder with a pooled graph
# ----------------------------------------------------------------------------------------------------------------


def test_an_export_without_its_manifest_is_read_as_a_fastembed_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copyfile(BUNDLED / name, folder / name)
    bare, exported = SpladeEncoder(folder, threads=1), SpladeEncoder(BUNDLED, threads=1)
    assert bare.manifest["layout"] == "fastembed" and bare.manifest["output_kind"] == "weights"
    assert bare.manifest["sha256"] == exported.manifest["sha256"] and bare.name == "bare"
    texts = _texts()
    assert np.abs(bare.encode_weights(texts) - exported.encode_weights(texts)).max() == 0.0


def test_models_describes_the_bundled_exports() -> None:
    result = _run([str(BUNDLED), str(BUNDLED_INT8), "--json"])
    assert result.exit_code == 0, result.output
    fp32, int8 = json.loads(result.output)
    assert (fp32["layout"], fp32["output_kind"], fp32["precision"], fp32["vocab_size"]) == (
        "splade-os",
        "weights",
        "fp32",
        30522,
    )
    assert (int8["name"], int8["precision"], int8["query_mode"], int8["max_length"]) == (
        "splade-tiny-int8",
        "int8",
        "model",
        512,
    )
    text = _run([str(BUNDLED)]).output
    assert text.startswith(f"{BUNDLED}: splade-tiny (splade-os), weights output 'weights', vocab 30,522")


# ----------------------------------------------------------------------------------------------------------------
# Random-init BERT and DistilBERT masked LMs, written in each layout (torch)
# ----------------------------------------------------------------------------------------------------------------


def _torch_export(mlm: Any, path: Path, *, pooled: bool) -> None:
    """`mlm` as ONNX returning `logits` [batch, tokens, vocab], or SPLADE-pooled `output` [batch, vocab]."""
    torch = pytest.importorskip("torch")
    from splade_os.model.torch_runner import model_inputs

    names = model_inputs(mlm)

    class Graph(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.mlm = mlm

        def forward(self, *inputs: Any) -> Any:
            feeds = dict(zip(names, inputs, strict=True))
            logits = self.mlm(**feeds).logits
            if not pooled:
                return logits
            mask = feeds["attention_mask"].unsqueeze(-1).to(logits.dtype)
            return (torch.log1p(torch.relu(logits)) * mask).max(dim=1).values

    ids = torch.randint(1000, 2000, (2, 16))
    dummy = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    output = "output" if pooled else "logits"
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes[output] = {0: "batch"} if pooled else {0: "batch", 1: "tokens"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            Graph().eval(),
            dummy,
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _write_tokenizer_files(checkpoint: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(checkpoint / name, folder / name)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per family: the checkpoint, its `splade-os export`, and the two graphs the layouts are made of."""
    pytest.importorskip("torch")
    from splade_os.model.export import export_model

    root = tmp_path_factory.mktemp("folders")
    families = {
        "Bert": dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, type_vocab_size=2
        ),
        "DistilBert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    }
    out: dict[str, Path] = {}
    for family, config in families.items():
        mlm = random_masked_lm(family, vocab_size=30522, max_position_embeddings=512, initializer_range=0.2, **config)
        checkpoint = save_with_the_bundled_tokenizer(mlm, root / f"{family}-checkpoint", f"{family}Tokenizer")
        special = {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        }
        (checkpoint / "special_tokens_map.json").write_text(json.dumps(special))
        if family == "DistilBert":  # OpenSearch's inference-free document models are DistilBERT with idf.json
            (checkpoint / "idf.json").write_text(json.dumps(IDF))
        export_model(checkpoint, root / f"{family}-export")
        _torch_export(mlm, root / f"{family}-logits.onnx", pooled=False)
        _torch_export(mlm, root / f"{family}-pooled.onnx", pooled=True)
        out[f"{family}-checkpoint"], out[f"{family}-export"] = checkpoint, root / f"{family}-export"
        out[f"{family}-logits"] = root / f"{family}-logits.onnx"
        out[f"{family}-pooled"] = root / f"{family}-pooled.onnx"
    return out


def _layout(built: dict[str, Path], family: str, layout: str, folder: Path) -> Path:
    """`folder` holding the checkpoint in `layout`, written as fastembed, transformers/optimum or
    sentence-transformers write theirs."""
    checkpoint = built[f"{family}-checkpoint"]
    _write_tokenizer_files(checkpoint, folder)
    graph = built[f"{family}-pooled" if layout == "pooled" else f"{family}-logits"]
    place = "onnx/model.onnx" if layout in ("huggingface", "sentence-transformers") else "model.onnx"
    (folder / place).parent.mkdir(exist_ok=True)
    shutil.copyfile(graph, folder / place)
    if layout == "sentence-transformers":
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_SpladePooling",
                "type": "sentence_transformers.sparse_encoder.models.SpladePooling",
            },
        ]
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LENGTH}))
        (folder / "1_SpladePooling").mkdir()
        pooling = {"pooling_strategy": "max", "activation_function": "relu", "word_embedding_dimension": 30522}
        (folder / "1_SpladePooling" / "config.json").write_text(json.dumps(pooling))
    if layout == "inference-free":
        shutil.copyfile(checkpoint / "idf.json", folder / "idf.json")
    return folder


CASES = [
    ("Bert", "fastembed", "fastembed", "logits"),
    ("Bert", "huggingface", "huggingface", "logits"),
    ("Bert", "sentence-transformers", "sentence-transformers", "logits"),
    ("Bert", "pooled", "fastembed", "weights"),
    ("DistilBert", "fastembed", "fastembed", "logits"),
    ("DistilBert", "huggingface", "huggingface", "logits"),
    ("DistilBert", "sentence-transformers", "sentence-transformers", "logits"),
    ("DistilBert", "pooled", "fastembed", "weights"),
    ("DistilBert", "inference-free", "fastembed", "logits"),
]


def _close(ours: list[Any], theirs: list[Any]) -> float:
    """The largest weight difference between two lists of sparse vectors, a token missing on one side counting."""
    return max(
        (abs(a.get(t, 0.0) - b.get(t, 0.0)) for a, b in zip(ours, theirs, strict=True) for t in set(a) | set(b)),
        default=0.0,
    )


@pytest.mark.torch
@pytest.mark.parametrize(("family", "layout", "kind", "output_kind"), CASES)
def test_each_layout_encodes_as_the_export_does(
    built: dict[str, Path], tmp_path: Path, family: str, layout: str, kind: str, output_kind: str
) -> None:
    folder = _layout(built, family, layout, tmp_path / f"{family}-{layout}")
    inference_free = layout == "inference-free"
    query_mode = "inference-free" if inference_free else "model"
    ours = SpladeEncoder(folder, max_length=MAX_LENGTH, threads=1)
    theirs = SpladeEncoder(built[f"{family}-export"], max_length=MAX_LENGTH, threads=1, query_mode=query_mode)
    assert (ours.manifest["layout"], ours.manifest["output_kind"], ours.query_mode) == (kind, output_kind, query_mode)
    assert ours.manifest["sha256"] == sha256_file(folder / ours.manifest["onnx_file"]) and ours.name == folder.name

    texts = _texts()
    assert np.abs(ours.encode_weights(texts) - theirs.encode_weights(texts)).max() < 1e-4
    assert ours.truncated == theirs.truncated == 2
    assert _close(ours.encode_documents(texts), theirs.encode_documents(texts)) < 1e-4
    queries_ours, queries_theirs = ours.encode_queries(QUERIES), theirs.encode_queries(QUERIES)
    assert _close(queries_ours, queries_theirs) < 1e-4
    if inference_free:  # the idf weights of the query's tokens, no model run
        assert queries_ours[0].to_dict() == {"heart": 3.5, "attack": 2.0, "causes": 1.25}

    result = _run([str(folder), "--json"])
    assert result.exit_code == 0, result.output
    [described] = json.loads(result.output)
    expected_length = MAX_LENGTH if layout == "sentence-transformers" else 512
    assert described == {
        "path": str(folder),
        "name": folder.name,
        "layout": kind,
        "onnx_file": ours.manifest["onnx_file"],
        "output": "output" if output_kind == "weights" else "logits",
        "output_kind": output_kind,
        "vocab_size": 30522,
        "max_length": expected_length,
        "precision": "fp32",
        "query_mode": query_mode,
        "sha256": ours.manifest["sha256"],
    }


@pytest.mark.torch
def test_a_quantized_graph_is_described_as_int8_and_runs(built: dict[str, Path], tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path / "bert-int8"
    _write_tokenizer_files(built["Bert-checkpoint"], folder)
    quantize_dynamic(str(built["Bert-logits"]), str(folder / "model.onnx"), weight_type=QuantType.QInt8)
    [described] = json.loads(_run([str(folder), "--json"]).output)
    assert (described["precision"], described["output_kind"]) == ("int8", "logits")
    texts = _texts()[:4]
    reference = SpladeEncoder(built["Bert-export"], threads=1).encode_weights(texts)
    quantized = SpladeEncoder(folder, threads=1).encode_weights(texts)
    # int8 weights move single weights by more than a fixed tolerance (how far varies with onnxruntime and the CPU),
    # so each text's vector is compared as a whole: the same direction, and the same heaviest terms.
    norms = np.linalg.norm(quantized, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = (quantized * reference).sum(axis=1) / norms
    assert cosine.min() > 0.99, cosine
    for got, want in zip(quantized, reference, strict=True):
        assert len(set(np.argsort(-got)[:20]) & set(np.argsort(-want)[:20])) >= 15


def test_a_hub_cache_snapshot_is_named_after_its_model_id(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--naver--splade-tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copyfile(BUNDLED / name, snapshot / name)
    [described] = json.loads(_run([str(snapshot), "--json"]).output)
    assert described["name"] == "naver/splade-tiny"


# ----------------------------------------------------------------------------------------------------------------
# Unusable folders: one line each, the same from the library, `models` and the commands that take --model
# ----------------------------------------------------------------------------------------------------------------


def _hidden_states_graph(path: Path) -> None:
    """input_ids -> [batch, tokens, 32] hidden states: an ONNX file that is neither kind of output."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    embedding = np.random.default_rng(0).normal(size=(30522, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["features"])],
        "features",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "tokens", 32])],
        [numpy_helper.from_array(embedding, "emb")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _unusable(tmp_path: Path, case: str) -> Path:
    folder = tmp_path / case
    folder.mkdir()
    shutil.copyfile(BUNDLED / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({"vocab_size": 30522, "model_type": "bert"}))
    if case == "no-tokenizer":
        (folder / "tokenizer.json").unlink()
        shutil.copyfile(BUNDLED / "model.onnx", folder / "model.onnx")
    elif case == "neither-output":
        _hidden_states_graph(folder / "model.onnx")
    elif case == "not-onnx":
        (folder / "onnx").mkdir()
        (folder / "onnx" / "model.onnx").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    return folder


UNUSABLE = {
    "no-tokenizer": "has model.onnx but no tokenizer.json: copy the tokenizer files of the checkpoint next to it",
    "no-onnx": "has no model.onnx (nor onnx/model.onnx): export the checkpoint with `splade-os export",
    "neither-output": "returns features [batch, tokens, 32]: neither masked-LM logits [batch, tokens, 30522] nor "
    "SPLADE weights [batch, 30522]",
    "not-onnx": "onnx/model.onnx is not an ONNX model",
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_an_unusable_folder_is_one_line_saying_what_to_do(tmp_path: Path, case: str) -> None:
    folder = _unusable(tmp_path, case)
    with pytest.raises(ModelError) as caught:
        SpladeEncoder(folder)
    assert UNUSABLE[case] in str(caught.value) and "\n" not in str(caught.value)

    result = _run([str(BUNDLED), str(folder)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{BUNDLED}: splade-tiny")  # the usable folder is still described
    assert result.stderr == f"{folder}: {caught.value}\n"
    encoded = _run(["-", "--model", str(folder), "--no-progress"], command=encode)
    assert encoded.exit_code == 1 and encoded.stderr == f"Error: {caught.value}\n"
