"""The model folders users already have, read as they are: no export step, a manifest built in memory.

Layouts (first match wins):

- `splade-os`: `manifest.json` written by `splade-os export` (read as before, nothing guessed);
- `sentence-transformers`: `modules.json` and `sentence_bert_config.json` beside the tokenizer, the graph in
  `onnx/model.onnx` (or `model.onnx`); `max_seq_length` comes from `sentence_bert_config.json`;
- `huggingface`: `onnx/model.onnx` with `config.json` and the tokenizer files;
- `fastembed`: `model.onnx` beside `tokenizer.json`, `config.json`, `special_tokens_map.json`,
  `tokenizer_config.json`.

An `idf.json` beside the tokenizer (OpenSearch's inference-free document models) makes queries inference-free. What
the graph returns is read from its outputs (`splade_os.model.graph`): `[batch, tokens, vocab]` masked-LM logits,
which the encoder pools (`splade_os.model.pooling`), or `[batch, vocab]` weights already pooled. The manifest is
named after the folder and identified by the sha256 of the ONNX file, so an index's `_meta` record still says which
model built it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splade_os.errors import ModelError
from splade_os.model.graph import FLOAT_TYPES, Graph, Tensor, read_graph
from splade_os.model.manifest import (
    IDF_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    TOKENIZER_NAME,
    first_line,
    read_json,
    read_manifest,
    sha256_file,
)

LAYOUTS = ("splade-os", "sentence-transformers", "huggingface", "fastembed")
OUTPUT_KINDS = ("weights", "logits")  # [batch, vocab] pooled SPLADE weights; [batch, tokens, vocab] MLM logits
FEEDS = ("input_ids", "attention_mask", "token_type_ids")  # what the encoder can give a graph
_ONNX_PLACES = (ONNX_NAME, f"onnx/{ONNX_NAME}")
_HIDDEN_NAMES = ("last_hidden_state", "pooler_output", "sentence_embedding", "token_embeddings")
_EXPORT_HINT = "export the checkpoint with `splade-os export CHECKPOINT DIR`"


def load_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest `SpladeEncoder` runs with: the export's own, or one built from the folder as it is."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model folder {model_dir} does not exist; export one with `splade-os export MODEL DIR`")
    if (model_dir / MANIFEST_NAME).is_file():
        return read_manifest(model_dir)  # as written: the PyTorch backend records the same one
    return _folder_manifest(model_dir)


def describe(model_dir: Path) -> dict[str, Any]:
    """What `splade-os models` prints: the manifest, with the output kind and precision read from the graph."""
    manifest = load_manifest(model_dir)
    _check_tokenizer(Path(model_dir) / TOKENIZER_NAME)
    if "layout" not in manifest:  # an export's; a folder layout's manifest already holds what its graph says
        onnx_path = Path(model_dir) / str(manifest.get("onnx_file", ONNX_NAME))
        if not onnx_path.is_file():
            raise ModelError(f"{model_dir} has no {onnx_path.name}; re-run `splade-os export`")
        graph = read_graph(onnx_path)
        output = _output(onnx_path, graph, int(manifest["vocab_size"]))
        manifest = {**manifest, "layout": "splade-os", "output": output.name, "output_kind": _kind(output)}
        manifest["precision"] = graph.precision
    return {
        "path": str(model_dir),
        **{key: manifest.get(key) for key in ("name", "layout", "onnx_file", "output", "output_kind", "vocab_size")},
        **{key: manifest.get(key) for key in ("max_length", "precision", "query_mode", "sha256")},
    }


def _find_onnx(model_dir: Path) -> Path:
    for place in _ONNX_PLACES:
        if (model_dir / place).is_file():
            return model_dir / place
    found = [p for folder in (model_dir, model_dir / "onnx") for p in folder.glob("*.onnx")]
    others = sorted(p.relative_to(model_dir).as_posix() for p in found)
    if len(others) == 1:  # model_quantized.onnx, model_O4.onnx...: the only graph there is the one to run
        return model_dir / others[0]
    if others:
        raise ModelError(
            f"{model_dir} has several ONNX files ({', '.join(others)}) and no {ONNX_NAME}: copy or rename the one to "
            f"use to {ONNX_NAME}"
        )
    if (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} has no {ONNX_NAME} (nor onnx/{ONNX_NAME}): {_EXPORT_HINT}, or run the checkpoint with "
            "--device cuda"
        )
    raise ModelError(
        f"{model_dir} has no {MANIFEST_NAME} nor {ONNX_NAME}: it is not a folder written by `splade-os export` nor "
        f"an ONNX model folder; {_EXPORT_HINT}"
    )


def _kind(output: Tensor) -> str:
    return "logits" if len(output.shape) == 3 else "weights"


def _output(onnx_path: Path, graph: Graph, vocab_size: int) -> Tensor:
    """The graph output holding logits or weights over the vocabulary; ModelError in one line if there is none."""
    candidates = [
        t
        for t in graph.outputs
        if t.elem_type in FLOAT_TYPES
        and len(t.shape) in (2, 3)
        and (t.shape[-1] == vocab_size or isinstance(t.shape[-1], str))  # a named axis: the size shows at run time
        and t.name not in _HIDDEN_NAMES
    ]
    if not candidates:
        found = ", ".join(f"{t.name} [{', '.join(str(d) for d in t.shape)}]" for t in graph.outputs)
        raise ModelError(
            f"{onnx_path} returns {found}: neither masked-LM logits [batch, tokens, {vocab_size}] nor SPLADE weights "
            f"[batch, {vocab_size}]; export a masked-LM (fill-mask) graph, or {_EXPORT_HINT}"
        )
    by_name = [t for t in candidates if t.name in ("weights", "logits")]
    return (by_name or candidates)[0]


def _tokenizer_files(model_dir: Path, onnx_path: Path) -> None:
    if not (model_dir / TOKENIZER_NAME).is_file():
        raise ModelError(
            f"{model_dir} has {onnx_path.relative_to(model_dir).as_posix()} but no {TOKENIZER_NAME}: copy the "
            "tokenizer files of the checkpoint next to it"
        )


def _check_tokenizer(path: Path) -> None:
    """The tokenizer file must load as the encoder will load it: a folder is not called usable before that."""
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path.parent} has no {path.name}: copy the tokenizer file of the checkpoint next to "
            "the model, or re-run `splade-os export`"
        ) from None
    except Exception as err:  # tokenizers raises a bare Exception for a malformed file; OSError, UnicodeDecodeError
        raise ModelError(
            f"{path} is not a valid tokenizer file ({first_line(err)}); copy it again from the "
            "checkpoint, or re-run `splade-os export`"
        ) from None


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = read_json(path, "it came with the model; fetch it again")
    if not isinstance(value, dict):
        raise ModelError(f"{path} holds a JSON {type(value).__name__}, not an object; fetch it again")
    return value


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and 1 <= value < 1e6 else None


def _max_length(model_dir: Path, config: dict[str, Any]) -> int:
    """sentence_bert_config.json's max_seq_length, else the tokenizer's model_max_length, within the positions."""
    limit = _positive(config.get("max_position_embeddings")) or 512
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their position ids start after the padding index
    declared = _positive(_json_object(model_dir / "sentence_bert_config.json").get("max_seq_length"))
    if declared is None:
        declared = _positive(_json_object(model_dir / "tokenizer_config.json").get("model_max_length"))
    return min(limit, declared or 512)


def _check_pooling(model_dir: Path) -> None:
    """A sentence-transformers SparseEncoder's SpladePooling must be the one the encoder applies (max, log1p(relu))."""
    modules = read_json(model_dir / "modules.json", "it came with the model; fetch it again")
    for module in modules if isinstance(modules, list) else []:
        if not isinstance(module, dict) or "SpladePooling" not in str(module.get("type", "")):
            continue
        pooling = _json_object(model_dir / str(module.get("path", "")) / "config.json")
        strategy, activation = pooling.get("pooling_strategy", "max"), pooling.get("activation_function", "relu")
        if (strategy, activation) != ("max", "relu"):
            raise ModelError(
                f"{model_dir} pools with {strategy} over {activation}; splade-os applies SPLADE's max of "
                "log(1 + relu): use a max/relu model, or export it with `splade-os export`"
            )


def _folder_manifest(model_dir: Path) -> dict[str, Any]:
    onnx_path = _find_onnx(model_dir)
    _tokenizer_files(model_dir, onnx_path)
    config = _json_object(model_dir / "config.json")
    graph = read_graph(onnx_path)
    unknown = [t.name for t in graph.feeds if t.name not in FEEDS]
    if unknown:
        raise ModelError(
            f"{onnx_path} needs input(s) {', '.join(unknown)}; splade-os feeds {', '.join(FEEDS)}: {_EXPORT_HINT}"
        )
    vocab_size = _positive(config.get("vocab_size")) or next(
        (d for t in graph.outputs if len(t.shape) in (2, 3) and isinstance(d := t.shape[-1], int)), None
    )
    if vocab_size is None:
        raise ModelError(
            f"{model_dir} has no config.json with vocab_size: copy the checkpoint's config.json next to it"
        )
    output = _output(onnx_path, graph, vocab_size)
    if (model_dir / "modules.json").is_file():
        layout = "sentence-transformers"
        _check_pooling(model_dir)
    else:
        layout = "huggingface" if onnx_path.parent.name == "onnx" else "fastembed"
    return {
        "name": _name(model_dir),
        "layout": layout,
        "source": str(model_dir),
        "onnx_file": onnx_path.relative_to(model_dir).as_posix(),
        "sha256": sha256_file(onnx_path),
        "vocab_size": vocab_size,
        "max_length": _max_length(model_dir, config),
        "inputs": [t.name for t in graph.feeds],
        "output": output.name,
        "output_kind": _kind(output),
        "precision": graph.precision,
        "query_mode": "inference-free" if (model_dir / IDF_NAME).is_file() else "model",
        "architecture": (config.get("architectures") or ["?"])[0],
    }


def _name(model_dir: Path) -> str:
    """The folder's name; `owner/name` for a Hugging Face cache snapshot (models--owner--name/snapshots/<commit>)."""
    resolved = model_dir.resolve()
    if resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
        return resolved.parent.parent.name.removeprefix("models--").replace("--", "/")
    return resolved.name
