"""Vectors made elsewhere (`splade-os encode`, or any SPLADE run) indexed as they are: the "encoder" of such a load.

`PrecomputedVectors` passes through the vector each record carries (read and checked by `splade_os.corpus` with
`FieldNames(vector=...)`). Given the vocabulary of the model that made them (`from_model`), it checks every token
against it and stops the load at the first vector with a token outside it: a file from another model's vocabulary
would make every score meaningless. It is plain data, so it is its own recipe on Ray workers (`build`).

`vectors_for_load` is the encoder of a load as `splade-os index` asks for it (`--vectors`, `--vector-field`, `--model`):
the pass-through of vectors made elsewhere, or None for a load that encodes text, once the options make sense
together; a `VectorsOptionError` names the flags that do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from splade_os.corpus import Record
from splade_os.errors import ConfigError, EncoderMismatchError
from splade_os.mappings import PRECOMPUTED
from splade_os.model.encoder import load_tokenizer
from splade_os.model.manifest import TOKENIZER_NAME, read_manifest
from splade_os.model.settings import EncoderSettings
from splade_os.vectors import SparseVector

DEFAULT_VECTOR_FIELD = "vector"  # what `splade-os encode` writes
# The encoder settings that change how text is encoded, by the flag that sets each: vectors made elsewhere are indexed
# as they are, so none of them goes with --vectors.
ENCODING_FLAGS = {
    "max_length": "--max-length",
    "top_k": "--top-k",
    "min_weight": "--min-weight",
    "max_ratio": "--prune-ratio",
    "long_documents": "--long-documents",
}


class VectorsOptionError(ConfigError):
    """Options of a load that do not go with vectors made elsewhere, or a load with neither a model nor them: a usage
    error of `splade-os index` (exit code 2)."""


def vocabulary_sha256(tokens: Iterable[str]) -> str:
    """One hash per vocabulary, whatever the order its tokens come in."""
    return hashlib.sha256("\n".join(sorted(tokens)).encode("utf-8")).hexdigest()


def model_vocabulary(model_dir: str | Path) -> tuple[Mapping[str, Any], frozenset[str]]:
    """The manifest of an exported model folder and the tokens of its vocabulary (those its vectors can hold)."""
    folder = Path(model_dir)
    manifest = read_manifest(folder)
    path = folder / TOKENIZER_NAME
    tokenizer = load_tokenizer(path.read_text(encoding="utf-8"), path)
    size = int(manifest["vocab_size"])
    return manifest, frozenset(t for t, i in tokenizer.get_vocab(with_added_tokens=True).items() if i < size)


class PrecomputedVectors:
    """The records' own vectors, from input field `field`; checked against `vocabulary` (the tokens of the model
    that made them, named `name`) when it is given. `model_sha256` is that model's, to compare with an index it
    built."""

    def __init__(
        self,
        vocabulary: Iterable[str] | None = None,
        name: str | None = None,
        *,
        field: str = DEFAULT_VECTOR_FIELD,
        model_sha256: str | None = None,
    ) -> None:
        if not field:
            raise ConfigError("the vector field needs a name")
        self.vocabulary = None if vocabulary is None else frozenset(vocabulary)
        self.name, self.vector_field, self.model_sha256 = name, field, model_sha256

    @property
    def tokens(self) -> list[str] | None:
        """The vocabulary the vectors are checked against (sorted); None when none was given."""
        return None if self.vocabulary is None else sorted(self.vocabulary)

    @classmethod
    def from_model(cls, model_dir: str | Path, *, field: str = DEFAULT_VECTOR_FIELD) -> PrecomputedVectors:
        """Vectors in the vocabulary of the exported model in `model_dir`."""
        manifest, vocabulary = model_vocabulary(model_dir)
        name = str(manifest.get("name") or Path(model_dir).name)
        return cls(vocabulary, name, field=field, model_sha256=manifest.get("sha256"))

    @property
    def manifest(self) -> Mapping[str, Any]:
        """What `_meta` records: no model, and the vocabulary the vectors were checked against (None: unchecked)."""
        vocabulary = None
        if self.vocabulary is not None:
            vocabulary = {
                "name": self.name,
                "sha256": vocabulary_sha256(self.vocabulary),
                "size": len(self.vocabulary),
                "model_sha256": self.model_sha256,
            }
        return {"name": PRECOMPUTED, "sha256": None, "vocabulary": vocabulary}

    def build(self) -> PrecomputedVectors:
        return self  # plain data: a Ray worker gets its own copy

    def encode_records(self, records: Sequence[Record]) -> list[SparseVector]:
        vectors: list[SparseVector] = []
        for record in records:
            if record.vector is None:
                raise ConfigError(
                    f"record {record.doc_id!r} carries no vector: read the corpus with FieldNames(vector="
                    f"{self.vector_field!r})"
                )
            if self.vocabulary is not None:
                unknown = sorted(t for t in record.vector if t not in self.vocabulary)
                if unknown:
                    raise EncoderMismatchError(self._outside(record, unknown))
            vectors.append(record.vector)
        return vectors

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        raise ConfigError("precomputed vectors are read from the records, not encoded from text: give a model")

    def _outside(self, record: Record, unknown: list[str]) -> str:
        shown = ", ".join(repr(t) for t in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        return (
            f"the vector of record {record.doc_id!r} (line {record.line}) has tokens that are not in the vocabulary "
            f"of {self.name!r} ({len(self.vocabulary or ())} tokens), which the index's vectors use: {shown}. The "
            "file was made with another vocabulary; nothing of this batch was sent. Give --model the folder of the "
            "model that made the vectors, or index them into a new index"
        )


def vectors_for_load(
    vectors: bool,
    *,
    field: str | None = None,
    model_dir: str | Path | None = None,
    from_index: bool = False,
    corpus_format: str | None = None,
    columns: Sequence[str] | None = None,
    settings: EncoderSettings | None = None,
) -> PrecomputedVectors | None:
    """The encoder of a load of vectors made elsewhere (`vectors`, read from the input field `field`, checked against
    the vocabulary of the model in `model_dir` when given), or None for a load that encodes text with the model in
    `model_dir`. Raises `VectorsOptionError` for options that do not go together: `field` without `vectors`, neither a
    model nor `vectors`, and with `vectors` a re-encode (`from_index`), a CSV/TSV corpus or `columns`, or `settings`
    that change how text is encoded (the vectors are indexed as they are)."""
    if not vectors:
        if field:
            raise VectorsOptionError("--vector-field goes with --vectors")
        if not model_dir:
            raise VectorsOptionError("give --model (or set SPLADE_OS_MODEL), or --vectors for vectors made elsewhere")
        return None
    if from_index or corpus_format not in (None, "jsonl") or columns:
        raise VectorsOptionError(
            "--vectors reads JSON Lines that carry their vectors: not --from-index, CSV/TSV or --columns"
        )
    defaults = EncoderSettings()
    given = [
        flag
        for name, flag in ENCODING_FLAGS.items()
        if settings is not None and getattr(settings, name) != getattr(defaults, name)
    ]
    if given:
        raise VectorsOptionError(
            f"{', '.join(given)} change how text is encoded: with --vectors the vectors are "
            "indexed as they are (prune them where they are made)"
        )
    field = field or DEFAULT_VECTOR_FIELD
    return PrecomputedVectors.from_model(model_dir, field=field) if model_dir else PrecomputedVectors(field=field)
