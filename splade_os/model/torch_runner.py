"""The PyTorch backend of `SpladeEncoder`: the original checkpoint on a CUDA GPU (or, for checks, on the CPU).

It computes what the ONNX export computes (see `splade_os.model.pooling`): the masked max over tokens of the relu'd
logits, then `log(1 + .)`, with special tokens dropped and `min_weight` applied on the device, so only the
non-zero (token, weight) pairs of each row are copied to the host. `SpladeEncoder` does the tokenizing,
length-sorted batching, window pooling and `top_k`, the same for both backends.

torch and transformers come from the `gpu` extra and are imported only here, only when this backend is chosen.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from splade_os.errors import ConfigError, EncoderClosedError, MissingDependencyError, ModelError
from splade_os.model.manifest import TOKENIZER_NAME, sha256_file
from splade_os.model.pooling import Sparse

INSTALL_HINT = "pip install 'splade-os[gpu]'"
CHECKPOINT_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Token rows (batch x padded length) per model run by default: 64 texts of 256 tokens. The [rows, vocab] logits
# block is 1 GiB in bf16 (2 GiB in fp32) for a 30,522-token vocabulary. Not measured on a GPU; --batch-size wins.
DEFAULT_BATCH_TOKENS_CUDA = 16384
DEFAULT_BATCH_TOKENS_CPU = 2048


def _import(module: str, device: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"device {device!r} needs {module}, which is not installed: {INSTALL_HINT}"
        ) from err


def import_torch(device: str) -> tuple[Any, Any]:
    """torch and transformers, or a MissingDependencyError naming the extra to install."""
    return _import("torch", device), _import("transformers", device)


def check_device(device: str, precision: str) -> None:
    """Fail early, before any file is read, when this machine cannot run `precision` on `device`."""
    torch, _ = import_torch(device)
    torch_dtype(torch, torch_device(torch, device), precision)


def torch_device(torch: Any, device: str) -> Any:
    """The torch.device for `device`, or a ConfigError saying in one line why there is no such GPU."""
    if device == "cpu":
        return torch.device("cpu")
    if not getattr(torch.version, "cuda", None):
        raise ConfigError(
            f"device {device!r}: this PyTorch ({torch.__version__}) is a CPU-only build; install a CUDA build of "
            "PyTorch (https://pytorch.org/get-started/locally/), or drop --device to encode on the CPU"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(
            f"device {device!r}: PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU; check the "
            "driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or drop --device to encode on the CPU"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise ConfigError(f"device {device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def torch_dtype(torch: Any, device: Any, precision: str) -> Any:
    """The dtype the model runs in; a ConfigError when the device cannot run `precision`."""
    if precision == "fp32":
        return torch.float32
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    if device.type == "cuda" and precision == "bf16" and not _native_bf16(torch):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"precision bf16: {name} does not support bfloat16; use fp16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _native_bf16(torch: Any) -> bool:
    # Recent PyTorch answers True for GPUs that only emulate bfloat16 (pre-Ampere), unless asked not to.
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # PyTorch before 2.3 has no such argument and counts native support only
        return bool(torch.cuda.is_bf16_supported())


def _checkpoint_config(model_dir: Path, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """config.json of the checkpoint in `model_dir`; ModelError saying where the checkpoint is when it is not there."""
    weights = [name for name in CHECKPOINT_WEIGHTS if (model_dir / name).is_file()]
    if not (model_dir / "config.json").is_file() or not weights:
        source = f" (its manifest names the source: {manifest.get('source')})" if manifest else ""
        raise ModelError(
            f"{model_dir} holds no PyTorch checkpoint (config.json and model.safetensors or pytorch_model.bin), which "
            f"the PyTorch backend runs; an ONNX export alone serves only the CPU path. Export with "
            f"--with-checkpoint, copy the checkpoint into the folder, or pass the checkpoint folder{source}"
        )
    try:
        config = json.loads((model_dir / "config.json").read_bytes())
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {model_dir / 'config.json'} ({err}); fetch the checkpoint again") from err
    if not isinstance(config, dict) or not isinstance(config.get("vocab_size"), int):
        raise ModelError(f"{model_dir / 'config.json'} has no vocab_size: it is not a masked-LM checkpoint")
    return config


def torch_manifest(model_dir: Path, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest the PyTorch backend runs with, after checking that `model_dir` holds a checkpoint.

    An export folder that also holds its checkpoint keeps its own manifest, so indices built on either backend
    record the same encoder. A bare checkpoint folder gets one made up from config.json, named after the folder
    and identified by the sha256 of its weights file.
    """
    config = _checkpoint_config(model_dir, manifest)
    if manifest is not None:
        if config["vocab_size"] != manifest["vocab_size"]:
            raise ModelError(
                f"{model_dir}: config.json has vocabulary {config['vocab_size']:,} but the manifest "
                f"{manifest['vocab_size']:,}: the checkpoint is not the one this folder was exported from"
            )
        return manifest
    if not (model_dir / TOKENIZER_NAME).is_file():
        raise ModelError(
            f"{model_dir} has no {TOKENIZER_NAME} (the fast tokenizer file); save the tokenizer with transformers "
            "(AutoTokenizer.save_pretrained) or export the checkpoint with `splade-os export`"
        )
    weights = next(model_dir / name for name in CHECKPOINT_WEIGHTS if (model_dir / name).is_file())
    return {
        "name": model_dir.resolve().name,
        "sha256": sha256_file(weights),
        "vocab_size": int(config["vocab_size"]),
        "max_length": min(int(config.get("max_position_embeddings", 512)), 512),
        "query_mode": "model",
        "architecture": (config.get("architectures") or ["?"])[0],
        "source": str(model_dir),
    }


def model_inputs(mlm: Any) -> list[str]:
    """The inputs to feed `mlm`: token types only where its forward takes them and has more than one type.

    DistilBERT's forward has no token_type_ids (transformers 4.x raises TypeError when given them), and a model
    with a single token type (RoBERTa) computes the same without them.
    """
    params = inspect.signature(mlm.forward).parameters
    type_vocab = getattr(mlm.config, "type_vocab_size", 0) or 0
    token_types = "token_type_ids" in params and type_vocab > 1
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])


def load_masked_lm(transformers: Any, model_dir: Path, **options: Any) -> Any:
    """The checkpoint in `model_dir` as a masked LM in eval mode; `options` go to `from_pretrained`."""
    # transformers draws a progress bar on stderr while it loads; a command's own progress is the one to show.
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        mlm = transformers.AutoModelForMaskedLM.from_pretrained(str(model_dir), local_files_only=True, **options)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError... for a bad checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load {model_dir} as a masked language model ({first})") from err
    finally:
        if shown:
            bars.enable_progress_bar()
    return mlm.eval()


class TorchRunner:
    """A masked LM on one device, turning padded token ids into pruned SPLADE rows.

    Calls from many threads are serialized by a lock around the device work: one model, one stream, and the
    memory of one batch at a time.
    """

    def __init__(
        self, model_dir: Path, *, device: str, precision: str, special_ids: np.ndarray, min_weight: float
    ) -> None:
        torch, transformers = import_torch(device)
        self.torch = torch
        self.device = torch_device(torch, device)
        self.dtype = torch_dtype(torch, self.device, precision)
        model = load_masked_lm(transformers, model_dir)
        # The same inputs as the export, all-zero token types included where the model takes them.
        self._token_types = "token_type_ids" in model_inputs(model)
        self.model: Any = model.to(device=self.device, dtype=self.dtype).eval()
        keep = torch.ones(int(model.config.vocab_size), dtype=torch.float32)
        keep[torch.from_numpy(special_ids[special_ids < len(keep)])] = 0.0
        self._keep = keep.to(self.device)
        self.min_weight = float(min_weight)
        self._lock = threading.Lock()

    @property
    def batch_tokens(self) -> int:
        return DEFAULT_BATCH_TOKENS_CUDA if self.device.type == "cuda" else DEFAULT_BATCH_TOKENS_CPU

    def close(self) -> None:
        """Drop the model once the batch on the device has finished; later batches raise EncoderClosedError."""
        with self._lock:
            self.model = None

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        """[batch, vocab] float32 SPLADE weights on the device, special tokens included."""
        if self.model is None:
            raise EncoderClosedError("this encoder was closed; create a new SpladeEncoder to encode again")
        torch = self.torch
        pin = self.device.type == "cuda"
        ids_t = torch.from_numpy(ids)
        mask_t = torch.from_numpy(mask)
        if pin:  # pinned host memory lets the copy run asynchronously
            ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
        ids_t = ids_t.to(self.device, non_blocking=pin)
        mask_t = mask_t.to(self.device, non_blocking=pin)
        inputs = {"input_ids": ids_t, "attention_mask": mask_t}
        if self._token_types:
            inputs["token_type_ids"] = torch.zeros_like(ids_t)
        logits = self.model(**inputs).logits
        # In place on the [batch, tokens, vocab] block, the largest tensor of the run: relu, zero the padding, max
        # over tokens, then log1p in fp32. Both are monotone, so this is max_t log(1 + relu(z)), as in the export.
        logits.relu_().mul_(mask_t.unsqueeze(-1).to(logits.dtype))
        return torch.log1p(logits.amax(dim=1).float())

    def dense(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Whole [batch, vocab] rows before special-token removal, on the host (for checks; encoding copies only
        the non-zero pairs)."""
        with self._lock, self.torch.inference_mode():
            return self._pooled(ids, mask).cpu().numpy()

    def sparse(self, ids: np.ndarray, mask: np.ndarray) -> list[Sparse]:
        """(token ids, weights) per row: the weights > 0 and >= min_weight, special tokens left out."""
        with self._lock, self.torch.inference_mode():
            weights = self._pooled(ids, mask) * self._keep
            rows, cols = ((weights > 0) & (weights >= self.min_weight)).nonzero(as_tuple=True)
            values = weights[rows, cols]
            rows_h, cols_h, values_h = rows.cpu().numpy(), cols.cpu().numpy(), values.cpu().numpy()
        # nonzero() walks row-major: each row's pairs are contiguous, with token ids ascending.
        bounds = np.cumsum(np.bincount(rows_h, minlength=len(ids)))[:-1]
        return list(zip(np.split(cols_h.astype(np.int64), bounds), np.split(values_h, bounds), strict=True))
