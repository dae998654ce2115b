"""Export a masked-LM checkpoint to an ONNX model that returns SPLADE weights, not token logits.

The network body (embeddings, encoder layers, the MLM transform) is traced with `torch.onnx.export`; the
vocabulary projection and the pooling are then written by hand with `onnx.helper`:

    hidden [B*T, H] --Gemm(chunk of vocab rows)--> Relu --x mask--> ReduceMax over T --> ... --> Concat --> log(1+x)

Splitting the 30,522-wide projection into column chunks keeps each `[B*T, chunk]` block in cache while it is
max-reduced; a plain export writes the whole `[B, T, vocab]` logits tensor to memory and reads it back, which
is most of its run time for small models. The max is taken before `log(1 + .)`; both are monotone, so the
result equals SPLADE's `max_t log(1 + relu(z))` (see `splade_os.model.pooling`).

With tied embeddings the decoder matrix is the input embedding matrix: it is stored once, as the chunks, and
the embedding lookup reads their concatenation (folded to a constant by onnxruntime when the session loads).

torch, transformers, onnx and huggingface_hub come from the `export` extra and are imported only here.
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from splade_os.errors import ConfigError, MissingDependencyError, ModelError
from splade_os.model.manifest import (
    FORMAT,
    IDF_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    QUERY_MODES,
    TOKENIZER_NAME,
    sha256_file,
)
from splade_os.model.torch_runner import load_masked_lm, model_inputs

INSTALL_HINT = "pip install 'splade-os[export]'"

# Vocabulary columns per projection chunk: a [1024 token rows, 128] fp32 block is 512 KiB, the L2 of one core on
# the AVX2 machine it was measured on (benchmarks/encoder.py; 128 and 256 were within noise, 512+ slower).
DEFAULT_CHUNK_SIZE = 128
DEFAULT_OPSET = 17
QUANTIZE_MODES = ("int8",)
# 7-bit weights: on AVX2 without VNNI onnxruntime multiplies u8 x s8 with VPMADDUBSW, whose 16-bit pair sums
# saturate for full-range int8 weights (255 * 127 * 2 > 32767); 255 * 63 * 2 does not.
_INT8_WEIGHT_MAX = 63
# The weight files of a transformers checkpoint: one file, or shards and their index.
CHECKPOINT_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"`splade-os export` needs {module}, which is not installed. Install it with: {INSTALL_HINT}"
        ) from exc


# --------------------------------------------------------------------------------------------------------------
# The SPLADE head, written directly as ONNX nodes (needs onnx, not torch)
# --------------------------------------------------------------------------------------------------------------


def _chunks(vocab_size: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, vocab_size)) for start in range(0, vocab_size, chunk_size)]


def _quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 7-bit quantization with one scale per vocabulary row (= per output column of the projection)."""
    peak = np.abs(weight).max(axis=1)
    scale = np.where(peak > 0, peak / _INT8_WEIGHT_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -_INT8_WEIGHT_MAX, _INT8_WEIGHT_MAX).astype(np.int8)
    return q, scale


def add_splade_head(
    body: Any,
    decoder_weight: np.ndarray,
    decoder_bias: np.ndarray | None,
    *,
    hidden_output: str,
    input_ids: str = "input_ids",
    attention_mask: str = "attention_mask",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    quantize: str | None = None,
    output_name: str = "weights",
) -> Any:
    """Append the tiled vocabulary projection and SPLADE pooling to `body` (an `onnx.ModelProto`).

    `body` maps token ids to `hidden_output`, the `[batch, tokens, hidden]` input of the vocabulary projection;
    `decoder_weight` is that projection as `[vocab, hidden]` (torch `Linear` layout). The returned model has one
    output, `output_name`: `[batch, vocab]` float32 SPLADE weights. If `body` holds an initializer equal to
    `decoder_weight` (tied embeddings), the embedding lookup is rewired to the head's weights so the matrix is
    stored once.
    """
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    if quantize not in (None, *QUANTIZE_MODES):
        raise ConfigError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZE_MODES)}")
    if chunk_size < 1:
        raise ConfigError(f"chunk size must be at least 1, got {chunk_size}")
    weight = np.ascontiguousarray(decoder_weight, dtype=np.float32)
    vocab_size, hidden_size = weight.shape
    bias = np.zeros(vocab_size, np.float32) if decoder_bias is None else decoder_bias.astype(np.float32)

    model = onnx.ModelProto()
    model.CopyFrom(body)
    graph = model.graph
    if quantize and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))

    tied = [
        init.name
        for init in graph.initializer
        if tuple(init.dims) == weight.shape and np.array_equal(numpy_helper.to_array(init), weight)
    ]
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    h2 = "splade/hidden_2d"
    nodes.append(
        helper.make_node("Reshape", [hidden_output, const("splade/shape_nh", np.array([-1, hidden_size]))], [h2])
    )
    nodes.append(helper.make_node("Cast", [attention_mask], ["splade/mask_f"], to=TensorProto.FLOAT))
    nodes.append(
        helper.make_node("Reshape", ["splade/mask_f", const("splade/shape_n1", np.array([-1, 1]))], ["splade/mask_2d"])
    )
    nodes.append(helper.make_node("Shape", [input_ids], ["splade/shape_bt"]))

    if quantize:  # the activations are quantized once, not once per chunk
        nodes.append(
            helper.make_node(
                "DynamicQuantizeLinear", [h2], ["splade/hidden_q", "splade/hidden_scale", "splade/hidden_zero"]
            )
        )
    block_shapes: dict[int, str] = {}
    pooled: list[str] = []
    q_weight, q_scale = _quantize_rows(weight) if quantize else (None, None)
    for i, (start, stop) in enumerate(_chunks(vocab_size, chunk_size)):
        width = stop - start
        p = f"splade/c{i}"
        if q_weight is None:
            w = const(f"{p}/weight", weight[start:stop])  # [width, hidden]: rows of the embedding matrix
            nodes.append(helper.make_node("Gemm", [h2, w, const(f"{p}/bias", bias[start:stop])], [f"{p}/z"], transB=1))
        else:
            assert q_scale is not None
            w = const(f"{p}/weight_q", np.ascontiguousarray(q_weight[start:stop].T))  # [hidden, width] int8
            inputs = ["splade/hidden_q", w, "splade/hidden_scale", const(f"{p}/scale", q_scale[start:stop])]
            inputs += [
                "splade/hidden_zero",
                const(f"{p}/zero", np.zeros(width, np.int8)),
                const(f"{p}/bias", bias[start:stop]),
            ]
            nodes.append(helper.make_node("MatMulIntegerToFloat", inputs, [f"{p}/z"], domain="com.microsoft"))
        # Padding rows become 0. relu comes after the max: max(real logits, 0) then relu == relu(max(real logits)).
        nodes.append(helper.make_node("Mul", [f"{p}/z", "splade/mask_2d"], [f"{p}/masked"]))
        if width not in block_shapes:
            block_shapes[width] = f"splade/shape_btc{width}"
            nodes.append(
                helper.make_node(
                    "Concat",
                    ["splade/shape_bt", const(f"splade/width{width}", np.array([width]))],
                    [block_shapes[width]],
                    axis=0,
                )
            )
        nodes.append(helper.make_node("Reshape", [f"{p}/masked", block_shapes[width]], [f"{p}/block"]))
        if opset >= 18:
            nodes.append(
                helper.make_node(
                    "ReduceMax", [f"{p}/block", const(f"{p}/axes", np.array([1]))], [f"{p}/max"], keepdims=0
                )
            )
        else:
            nodes.append(helper.make_node("ReduceMax", [f"{p}/block"], [f"{p}/max"], axes=[1], keepdims=0))
        pooled.append(f"{p}/max")
    nodes.append(helper.make_node("Concat", pooled, ["splade/max_raw"], axis=1))
    nodes.append(helper.make_node("Relu", ["splade/max_raw"], ["splade/max"]))
    nodes.append(
        helper.make_node("Add", ["splade/max", const("splade/one", np.array(1.0, np.float32))], ["splade/max1"])
    )
    nodes.append(helper.make_node("Log", ["splade/max1"], [output_name]))

    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    if tied:
        _rewire_embedding(graph, tied, vocab_size, chunk_size, quantized=q_weight is not None)
    # Drop the now unused copies of the embedding matrix and every body output: only the weights come out.
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", vocab_size]))
    onnx.checker.check_model(model)
    return model


def _rewire_embedding(graph: Any, tied: Sequence[str], vocab_size: int, chunk_size: int, *, quantized: bool) -> None:
    """Point every lookup of the tied embedding matrix at the head's chunk weights (kept in topological order)."""
    from onnx import TensorProto, helper, numpy_helper

    chunk_count = len(_chunks(vocab_size, chunk_size))
    lookups = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in tied]
    if not lookups or any(name in tied for n in graph.node if n not in lookups for name in n.input):
        return  # the matrix has another use: leave the body untouched (it keeps its own copy)
    if not quantized:
        parts = [f"splade/c{i}/weight" for i in range(chunk_count)]
        graph.node.insert(0, helper.make_node("Concat", parts, ["splade/embedding"], axis=0))
        for node in lookups:
            node.input[0] = "splade/embedding"
        return
    # int8: gather int8 rows and their scales, dequantize only the looked-up rows.
    parts = [f"splade/c{i}/weight_q" for i in range(chunk_count)]
    scales = [f"splade/c{i}/scale" for i in range(chunk_count)]
    prefix = [
        helper.make_node("Concat", parts, ["splade/embedding_qt"], axis=1),
        helper.make_node("Transpose", ["splade/embedding_qt"], ["splade/embedding_q"], perm=[1, 0]),
        helper.make_node("Concat", scales, ["splade/embedding_scale"], axis=0),
    ]
    graph.initializer.append(numpy_helper.from_array(np.array([-1]), "splade/last_axis"))
    for k, node in enumerate(lookups):
        ids, out = node.input[1], node.output[0]
        p = f"splade/lookup{k}"
        at = list(graph.node).index(node)
        graph.node.remove(node)
        replacement = [
            helper.make_node("Gather", ["splade/embedding_q", ids], [f"{p}/q"]),
            helper.make_node("Cast", [f"{p}/q"], [f"{p}/qf"], to=TensorProto.FLOAT),
            helper.make_node("Gather", ["splade/embedding_scale", ids], [f"{p}/scale"]),
            helper.make_node("Unsqueeze", [f"{p}/scale", "splade/last_axis"], [f"{p}/scale3"]),
            helper.make_node("Mul", [f"{p}/qf", f"{p}/scale3"], [out]),
        ]
        for offset, new_node in enumerate(replacement):
            graph.node.insert(at + offset, new_node)
    for offset, new_node in enumerate(prefix):
        graph.node.insert(offset, new_node)


# --------------------------------------------------------------------------------------------------------------
# The checkpoint side (needs torch and transformers)
# --------------------------------------------------------------------------------------------------------------


def resolve_source(model: str | Path, *, revision: str | None = None) -> Path:
    """A local checkpoint folder for `model`: the folder itself, or a Hugging Face Hub snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json: point MODEL at a Hugging Face checkpoint folder")
        return path
    if path.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise ModelError(f"{model} is neither a checkpoint folder nor a Hugging Face model id (owner/name)")
    hub = _require("huggingface_hub")
    try:
        local = hub.snapshot_download(
            str(model),
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "pytorch_model.bin"],
        )
    except Exception as exc:  # the hub raises many types: network, auth, missing repo
        raise ModelError(
            f"could not download {model} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Check the model id and your network, or pass a local checkpoint folder."
        ) from exc
    return Path(local)


def _detach_decoder(mlm: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Swap the vocabulary projection for an identity so the traced body ends at the MLM transform."""
    torch = _require("torch")
    decoder = mlm.get_output_embeddings()
    if not isinstance(decoder, torch.nn.Linear):
        raise ModelError(f"{type(mlm).__name__} has no linear vocabulary projection; cannot export it as SPLADE")
    weight = decoder.weight.detach().cpu().numpy().astype(np.float32)
    bias = None if decoder.bias is None else decoder.bias.detach().cpu().numpy().astype(np.float32)
    for _name, module in mlm.named_modules():
        for child_name, child in module.named_children():
            if child is decoder:
                setattr(module, child_name, torch.nn.Identity())
                return weight, bias
    raise ModelError(f"could not locate the vocabulary projection inside {type(mlm).__name__}")


def _export_body(mlm: Any, path: Path, opset: int) -> list[str]:
    torch = _require("torch")
    names = model_inputs(mlm)

    class Body(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.mlm = mlm

        def forward(self, *inputs: Any) -> Any:
            return self.mlm(**dict(zip(names, inputs, strict=True))).logits

    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    dummy = (ids, mask, torch.zeros_like(ids))[: len(names)]
    body = Body().eval()  # a fresh Module starts in training mode (dropout on); export would restore that mode
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]}
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter needs no onnxscript and handles these models
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python branch on a tensor (transformers' masks: "padding_length > 0" and the
        # like) that the branch taken for the example is kept for every input. Those branches depend on shapes the
        # graph keeps dynamic in the same way for every batch (the mask is as long as the input), and
        # tests/test_export.py checks the exported graph against PyTorch at other batch sizes and lengths: the
        # warnings only alarm users, so they are not shown.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            body,
            dummy,
            str(path),
            input_names=names,
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )
    return names


def _quantize_body(source: Path, target: Path) -> None:
    quantization = _require("onnxruntime.quantization")
    quantization.quantize_dynamic(
        str(source),
        str(target),
        weight_type=quantization.QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        reduce_range=True,  # same saturation concern as _INT8_WEIGHT_MAX
        extra_options={"MatMulConstBOnly": True},  # attention's activation x activation products stay fp32
    )


def _copy_tokenizer(source: Path, out_dir: Path) -> None:
    if (source / TOKENIZER_NAME).is_file():
        shutil.copyfile(source / TOKENIZER_NAME, out_dir / TOKENIZER_NAME)
        return
    transformers = _require("transformers")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), use_fast=True)
        tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER_NAME))
    except Exception as exc:
        raise ModelError(f"{source} has no usable fast tokenizer (tokenizer.json): {exc}") from exc


def _copy_checkpoint(source: Path, out_dir: Path) -> None:
    """config.json and the weights (one file, or shards with their index), as transformers saved them."""
    weights = [p for pattern in CHECKPOINT_PATTERNS for p in sorted(source.glob(pattern))]
    if not weights:
        raise ModelError(f"{source} holds no weights file ({', '.join(CHECKPOINT_PATTERNS)}) to copy")
    for path in [source / "config.json", *weights]:
        shutil.copyfile(path, out_dir / path.name)


def _max_length(mlm: Any, source: Path, requested: int | None) -> int:
    limit = int(getattr(mlm.config, "max_position_embeddings", 512) or 512)
    if getattr(mlm.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their position ids start after the padding index
    if requested is None:
        config = source / "tokenizer_config.json"
        declared = json.loads(config.read_text()).get("model_max_length") if config.is_file() else None
        return min(limit, int(declared)) if isinstance(declared, int | float) and declared < 1e6 else min(limit, 512)
    if not 8 <= requested <= limit:
        raise ConfigError(f"--max-length must be between 8 and {limit} for this model, got {requested}")
    return requested


def export_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    quantize: str | None = None,
    max_length: int | None = None,
    opset: int = DEFAULT_OPSET,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    query_mode: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    with_checkpoint: bool = False,
) -> dict[str, Any]:
    """Export `model` (Hub id or checkpoint folder) to `out_dir`; return the manifest that was written.

    `with_checkpoint` also copies the checkpoint's config.json and weights, so that the folder serves the PyTorch
    backend (`device="cuda"`) under the same manifest, and indices built on either backend accept each other.
    """
    from splade_os import __version__

    if quantize not in (None, *QUANTIZE_MODES):
        raise ConfigError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZE_MODES)}")
    if query_mode not in (None, *QUERY_MODES):
        raise ConfigError(f"unknown query mode {query_mode!r}; choose one of: {', '.join(QUERY_MODES)}")
    if not 14 <= opset <= 21:
        raise ConfigError(f"--opset must be between 14 and 21, got {opset}")
    if with_checkpoint and quantize:
        raise ConfigError("--with-checkpoint goes with an fp32 export: the checkpoint computes its vectors, not int8's")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another folder or pass --overwrite")
    onnx = _require("onnx")
    source = resolve_source(model, revision=revision)
    has_idf = (source / IDF_NAME).is_file()
    if query_mode == "inference-free" and not has_idf:
        raise ConfigError(f"query mode 'inference-free' needs {IDF_NAME} in {source}, which it lacks")
    transformers = _require("transformers")
    _require("torch")
    # Eager attention traces to plain MatMul/Softmax nodes that onnxruntime fuses and quantizes.
    mlm = load_masked_lm(transformers, source, attn_implementation="eager")
    length = _max_length(mlm, source, max_length)
    weight, bias = _detach_decoder(mlm)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body.onnx"
        input_names = _export_body(mlm, body_path, opset)
        if quantize:
            _quantize_body(body_path, Path(tmp) / "body.int8.onnx")
            body_path = Path(tmp) / "body.int8.onnx"
        full = add_splade_head(
            onnx.load(str(body_path)), weight, bias, hidden_output="hidden", chunk_size=chunk_size, quantize=quantize
        )
    onnx.save_model(full, str(out / ONNX_NAME))
    _copy_tokenizer(source, out)
    if has_idf:
        shutil.copyfile(source / IDF_NAME, out / IDF_NAME)
    if with_checkpoint:
        _copy_checkpoint(source, out)

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": (Path(str(model)).name if Path(str(model)).is_dir() else str(model))
        + (f"-{quantize}" if quantize else ""),
        "source": str(model),
        "revision": revision,
        "architecture": type(mlm).__name__,
        "onnx_file": ONNX_NAME,
        "sha256": sha256_file(out / ONNX_NAME),
        "vocab_size": int(weight.shape[0]),
        "hidden_size": int(weight.shape[1]),
        "max_length": length,
        "inputs": input_names,
        "output": "weights",
        "pooling": "splade-max: max over tokens of log(1 + relu(logits)), attention-masked",
        "chunk_size": chunk_size,
        "quantization": quantize or "none",
        "opset": opset,
        "query_mode": query_mode or ("inference-free" if has_idf else "model"),
        "splade_os_version": __version__,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
