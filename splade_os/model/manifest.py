"""The files of a model folder and its manifest: names and checks shared by the runtime encoder and the export.

Importing this module costs nothing heavy (no onnx, no torch), so encoding on the CPU never loads the export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from splade_os.errors import ModelError

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
IDF_NAME = "idf.json"
FORMAT = "splade-os-onnx/1"
QUERY_MODES = ("model", "inference-free")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a model folder; unreadable or malformed JSON is a ModelError naming the file."""
    try:
        return json.loads(path.read_bytes())
    except OSError as err:
        raise ModelError(f"cannot read {path} ({err.strerror or err}); check the model folder's permissions") from err
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise ModelError(f"{path} is not valid JSON ({first_line(err)}): {what}; re-run `splade-os export`") from err


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest of an exported model folder, checked to be complete; ModelError says what to do if not."""
    if not model_dir.is_dir():
        raise ModelError(f"model folder {model_dir} does not exist; export one with `splade-os export MODEL DIR`")
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"{model_dir} has no {MANIFEST_NAME}: it is not a folder written by `splade-os export`")
    manifest = read_json(path, "the manifest is damaged")
    if not isinstance(manifest, dict):
        raise ModelError(f"{path} holds a JSON {type(manifest).__name__}, not an object; re-run `splade-os export`")
    missing = [k for k in ("vocab_size", "max_length", "sha256") if k not in manifest]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}; re-run `splade-os export`")
    for key in ("vocab_size", "max_length"):
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{path}: {key} must be a positive integer, got {value!r}; re-run `splade-os export`")
    for key in ("sha256", "onnx_file", "name", "query_mode"):
        if key in manifest and not isinstance(manifest[key], str):
            raise ModelError(f"{path}: {key} must be a string, got {manifest[key]!r}; re-run `splade-os export`")
    if not (model_dir / TOKENIZER_NAME).is_file():
        raise ModelError(f"{model_dir} has no {TOKENIZER_NAME}; re-run `splade-os export`")
    return dict(manifest)
