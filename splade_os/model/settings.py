"""How a `SpladeEncoder` runs: its keyword arguments as one frozen, validated value.

Everything here is checked before any model file is read, and without importing onnxruntime or torch, so a wrong
setting is one `ConfigError` line whatever the folder holds. What needs the model (the export's length limit, its
default query mode) is checked by the encoder with `check_cut`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from splade_os.errors import ConfigError
from splade_os.model.manifest import QUERY_MODES

LONG_DOCUMENT_MODES = ("truncate", "split")
DEFAULT_STRIDE = 64
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("onnx", "torch")
_DEVICE = re.compile(r"^(cpu|cuda)(:\d+)?$")


def choose_backend(device: str, precision: str, backend: str | None) -> str:
    """'onnx' or 'torch' for these settings, checked without importing anything heavy."""
    if not isinstance(device, str) or not _DEVICE.match(device) or device.startswith("cpu:"):
        raise ConfigError(f"device must be cpu, cuda or cuda:N (N = GPU number), got {device!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    chosen = backend or ("onnx" if device == "cpu" else "torch")
    if chosen == "onnx" and device != "cpu":
        raise ConfigError(
            f"device {device!r} runs the PyTorch backend (backend='torch'); onnxruntime on a GPU is chosen with "
            "providers=['CUDAExecutionProvider'] instead"
        )
    if chosen == "onnx" and precision != "fp32":
        raise ConfigError(
            f"precision {precision} needs the PyTorch backend: pass device='cuda' (--device cuda), or "
            "backend='torch' to run it on the CPU; the ONNX export runs as it was exported"
        )
    return chosen


def check_cut(max_length: int, long_documents: str, stride: int, limit: int) -> None:
    """How texts are cut: `max_length` within the model's `limit`, a known mode, and windows that overlap less
    than half."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 3 <= max_length <= limit:
        raise ConfigError(f"max_length must be between 3 and {limit} (the export's limit), got {max_length}")
    _check_long_documents(long_documents)
    if long_documents == "split" and not 0 <= stride <= max_length // 2:
        raise ConfigError(f"stride (window overlap) must be between 0 and {max_length // 2}, got {stride}")


def _check_long_documents(long_documents: str) -> None:
    if long_documents not in LONG_DOCUMENT_MODES:
        raise ConfigError(f"long_documents must be one of {', '.join(LONG_DOCUMENT_MODES)}, got {long_documents!r}")


@dataclass(frozen=True)
class EncoderSettings:
    """The settings of one encoder (see `SpladeEncoder` for their meaning); `None` means the model's own value.

    `backend` is resolved on creation: 'onnx' or 'torch', never None afterwards.
    """

    threads: int | None = None
    providers: tuple[str, ...] | None = None
    batch_size: int | None = None
    max_length: int | None = None
    top_k: int | None = None
    min_weight: float = 0.0
    max_ratio: float = 0.0
    long_documents: str = "truncate"
    stride: int = DEFAULT_STRIDE
    query_mode: str | None = None
    verify: bool = True
    device: str = "cpu"
    precision: str = "fp32"
    backend: str | None = None

    def __post_init__(self) -> None:
        # Frozen: normalised values are set once here, through object.__setattr__.
        object.__setattr__(self, "backend", choose_backend(self.device, self.precision, self.backend))
        if self.providers is not None:
            object.__setattr__(self, "providers", tuple(self.providers))
        if self.backend == "torch" and self.providers:
            raise ConfigError("providers choose onnxruntime's execution providers; the PyTorch backend has none")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        if not (self.min_weight >= 0.0):
            raise ConfigError(f"min_weight must be >= 0, got {self.min_weight}")
        object.__setattr__(self, "min_weight", float(self.min_weight))
        if not (0.0 <= self.max_ratio < 1.0):
            raise ConfigError(
                f"max_ratio (share of a text's largest weight kept) must be in [0, 1), got {self.max_ratio}"
            )
        object.__setattr__(self, "max_ratio", float(self.max_ratio))
        _check_long_documents(self.long_documents)
        if self.query_mode and self.query_mode not in QUERY_MODES:
            raise ConfigError(f"query_mode must be one of {', '.join(QUERY_MODES)}, got {self.query_mode!r}")

    def to_meta(self, model_max_length: object = None) -> dict[str, Any]:
        """How these settings cut long documents, as an index's `_meta["encoding"]` records it: `max_length` (the
        model's, `model_max_length`, where these leave it to the model), `long_documents`, and `stride` when split.
        {} when no length is known (an encoder that does not say)."""
        max_length = self.max_length or model_max_length
        if not _whole(max_length):
            return {}
        stride = {"stride": self.stride} if self.long_documents == "split" else {}
        return {"max_length": max_length, "long_documents": self.long_documents, **stride}

    @classmethod
    def from_meta(cls, recorded: object) -> EncoderSettings | None:
        """The settings an index's `_meta["encoding"]` recorded (`to_meta`), to cut a document again as it was cut
        when indexed; what it leaves out is the defaults' (`max_length`: the encoder's own). None for an index that
        recorded none (built before splade-os recorded it); a value splade-os would not write is left out."""
        recorded = recorded if isinstance(recorded, Mapping) else {}
        max_length, mode, stride = (recorded.get(k) for k in ("max_length", "long_documents", "stride"))
        given = {
            "max_length": max_length if _whole(max_length) else None,
            "long_documents": mode if mode in LONG_DOCUMENT_MODES else None,
            "stride": stride if _whole(stride) else None,
        }
        if all(value is None for value in given.values()):
            return None
        return cls(**{name: value for name, value in given.items() if value is not None})

    def document_pruning(self) -> dict[str, Any]:
        """The pruning these settings apply to documents, as an index's `_meta["pruning"]` records it (only what
        prunes: a top k, a weight floor, a ratio)."""
        chosen = {"top_k": self.top_k, "min_weight": self.min_weight, "max_ratio": self.max_ratio}
        return {name: value for name, value in chosen.items() if value}


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def settings_of(encoder: object) -> EncoderSettings | None:
    """The `EncoderSettings` an encoder (or a recipe) runs with; None for one that has none (`PrecomputedVectors`,
    a test's fake)."""
    settings = getattr(encoder, "settings", None)
    return settings if isinstance(settings, EncoderSettings) else None
