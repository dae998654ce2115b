"""Text -> sparse vectors with an exported SPLADE model, on onnxruntime and tokenizers only (never torch).

The exported graph already pools (see `splade_os.model.export`), so a session run returns `[batch, vocab]` weights.
This module tokenizes, sorts by length so batches carry little padding, runs the session, drops special
tokens, prunes, and turns each row into a `SparseVector` keyed by vocabulary token.

`device="cuda"` (or `backend="torch"`) runs the original checkpoint with PyTorch instead
(`splade_os.model.torch_runner`, imported only then); tokenizing, batching, window pooling and pruning stay here.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from splade_os.errors import ConfigError, EncoderClosedError, InputError, ModelError
from splade_os.model.folders import load_manifest
from splade_os.model.manifest import (
    IDF_NAME,
    MANIFEST_NAME,
    QUERY_MODES,
    TOKENIZER_NAME,
    first_line,
    read_json,
    read_manifest,
    sha256_file,
)
from splade_os.model.pooling import Sparse, merge_sparse, splade_pool_max_first
from splade_os.model.settings import DEFAULT_STRIDE, EncoderSettings, check_cut
from splade_os.vectors import SparseVector

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from splade_os.model.torch_runner import TorchRunner

Row = np.ndarray | Sparse  # a dense [vocab] row (ONNX) or the pruned pairs the PyTorch backend copies back

# The committed splade-tiny export; present in a source checkout, not in an installed wheel.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "splade-tiny"

# Token rows (batch x padded length) per session run when no batch size is given: with the export's 128-column
# projection tiles a [1024, 128] fp32 block is 512 KiB, one core's L2 here. Length-sorted batches carry almost no
# padding. 512-2048 measured within noise of each other on a 2-core AVX2 machine (benchmarks/encoder.py).
DEFAULT_BATCH_TOKENS = 1024
_UNUSED = re.compile(r"^\[unused\d+\]$|^<unused\d+>$")


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # respects taskset / container CPU sets
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _as_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str | bytes):
        raise InputError(f"{what} must be a sequence of strings, not a single {type(texts).__name__}")
    out: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{what}[{i}] is {type(text).__name__}, expected str; pass '' for an empty text")
        out.append(text)
    return out


def load_tokenizer(spec: str, path: Path, *, max_length: int | None = None, stride: int = 0) -> Tokenizer:
    """A tokenizer configured once, for one use: no padding, and truncation at `max_length` or none at all."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_str(spec)
    except Exception as err:  # tokenizers raises a bare Exception for a malformed file
        raise ModelError(
            f"{path} is not a valid tokenizer file ({first_line(err)}); re-run `splade-os export`"
        ) from err
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length, stride=stride)
    return tokenizer


def _vocabulary(tokenizer: Tokenizer, vocab_size: int) -> tuple[list[str], np.ndarray]:
    """Each output position's token, and the positions never emitted (special and unused tokens)."""
    vocab = [""] * vocab_size
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        if index < vocab_size:
            vocab[index] = token
    special = [i for i, t in enumerate(vocab) if not t or _UNUSED.match(t)] + [
        i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special and i < vocab_size
    ]
    return vocab, np.unique(np.array(special, dtype=np.int64))


def _emitted(vocab: list[str], special: np.ndarray) -> list[str]:
    """The tokens of `vocab` a vector can hold: all but the `special` positions."""
    skip = set(special.tolist())
    return [t for i, t in enumerate(vocab) if i not in skip]


def model_vocabulary(model_dir: str | Path) -> list[str]:
    """Every token an exported model's vectors can hold (its vocabulary less special and unused tokens), read from
    its tokenizer alone: no ONNX session is started."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    path = model_dir / TOKENIZER_NAME
    try:
        spec = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read {path} ({first_line(err)}); re-run `splade-os export`") from err
    return _emitted(*_vocabulary(load_tokenizer(spec, path), int(manifest["vocab_size"])))


class SpladeEncoder:
    """Encode documents and queries with a folder written by `splade-os export`, as `settings` (an `EncoderSettings`)
    says; its fields may be given as keywords instead.

    `threads` is the number of CPU cores to use (default: all available). `providers` lists execution providers
    in order of preference, e.g. `["CUDAExecutionProvider"]`; CPU is always appended as the fallback.
    `batch_size` fixes the number of texts per run; by default batches hold about `DEFAULT_BATCH_TOKENS`
    token rows. `long_documents="truncate"` keeps the first `max_length` tokens and counts the text in
    `truncated`; `"split"` encodes overlapping windows (`stride` tokens of overlap) and max-pools them.
    Pruning drops weights below `min_weight` or below `max_ratio` x the text's largest weight, then keeps the
    `top_k` heaviest.

    One encoder may be shared by many threads (a web server's, `AsyncSearcher`'s): every tokenizer is configured
    once at load time and never changed, `truncated` is counted under a lock, and the worker pool is created with
    the encoder. `close()` (or leaving a `with SpladeEncoder(...) as encoder:` block) shuts the pool down; encoding
    afterwards raises `EncoderClosedError`, so create a new encoder to go on.

    `device="cuda"` (`cuda:N` for another GPU) runs the checkpoint with PyTorch (the `gpu` extra): the folder must
    hold `config.json` and the weights, either next to the export's manifest or as a bare checkpoint folder with
    `tokenizer.json`. `precision` is `fp32`, `bf16` or `fp16` there. `backend="torch"` with the default
    `device="cpu"` runs the same PyTorch path on the CPU (fp32 or bf16), to check it against the ONNX path.
    """

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        *,
        settings: EncoderSettings | None = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        top_k: int | None = None,
        min_weight: float = 0.0,
        max_ratio: float = 0.0,
        long_documents: str = "truncate",
        stride: int = DEFAULT_STRIDE,
        query_mode: str | None = None,
        verify: bool = True,
        device: str = "cpu",
        precision: str = "fp32",
        backend: str | None = None,
    ) -> None:
        # `settings` is the one form the package itself passes; the keywords are its fields by name, for callers
        # that build an encoder by hand.
        given = EncoderSettings(
            threads=threads,
            providers=tuple(providers) if providers is not None else None,
            batch_size=batch_size,
            max_length=max_length,
            top_k=top_k,
            min_weight=min_weight,
            max_ratio=max_ratio,
            long_documents=long_documents,
            stride=stride,
            query_mode=query_mode,
            verify=verify,
            device=device,
            precision=precision,
            backend=backend,
        )
        if settings is not None and given != EncoderSettings():
            raise ConfigError("give the encoder settings=EncoderSettings(...) or its fields as keywords, not both")
        self.settings = settings = settings or given
        assert settings.backend is not None
        self.backend = settings.backend
        self.device = device = settings.device
        self.precision = precision = settings.precision
        threads, batch_size = settings.threads, settings.batch_size
        max_length, top_k = settings.max_length, settings.top_k
        long_documents, stride, query_mode, verify = (
            settings.long_documents,
            settings.stride,
            settings.query_mode,
            settings.verify,
        )
        providers = list(settings.providers) if settings.providers is not None else None
        self.model_dir = Path(model_dir)
        if self.backend == "torch":
            from splade_os.model.torch_runner import check_device, torch_manifest

            check_device(device, precision)  # a missing GPU or install is reported before any file is read
            exported = read_manifest(self.model_dir) if (self.model_dir / MANIFEST_NAME).is_file() else None
            if not self.model_dir.is_dir():
                raise ModelError(f"model folder {self.model_dir} does not exist")
            self.manifest = torch_manifest(self.model_dir, exported)
        else:
            self.manifest = load_manifest(self.model_dir)
            onnx_path = self.model_dir / self.manifest.get("onnx_file", "model.onnx")
            if not onnx_path.is_file():
                raise ModelError(f"{self.model_dir} has no {onnx_path.name}; re-run `splade-os export`")
            # A folder read as it is was hashed just now; an export is checked against the sha256 it recorded.
            recorded = "layout" not in self.manifest  # folders read as they are carry their layout
            if verify and recorded and sha256_file(onnx_path) != self.manifest.get("sha256"):
                raise ModelError(
                    f"{onnx_path} does not match the sha256 in {MANIFEST_NAME}: the file was changed or is "
                    "incomplete (a Git LFS pointer?). Re-export the model or fetch the real file."
                )
        self.vocab_size = int(self.manifest["vocab_size"])
        self.name = str(self.manifest.get("name", self.model_dir.name))

        self.max_length = int(self.manifest["max_length"]) if max_length is None else int(max_length)
        self._check_cut(self.max_length, long_documents, stride)
        self.long_documents = long_documents
        self.stride = stride
        self.batch_size = batch_size
        self.top_k = top_k
        self.min_weight = settings.min_weight
        self.max_ratio = settings.max_ratio
        self.query_mode = query_mode or str(self.manifest.get("query_mode", "model"))
        if self.query_mode not in QUERY_MODES:
            raise ModelError(
                f"{self.model_dir}: the manifest's query_mode {self.query_mode!r} is not one of "
                f"{', '.join(QUERY_MODES)}; re-run `splade-os export`"
            )
        self._lock = threading.Lock()  # guards _truncated, _closed and submissions to _pool
        self._truncated = 0
        self._closed = False

        # One tokenizer per use, each configured here and never changed while encoding, so that concurrent calls
        # cannot see each other's settings. `tokenizer` (no truncation) serves inference-free queries, the
        # vocabulary and callers that want a text's own tokens; documents and model queries are cut at max_length.
        tokenizer_path = self.model_dir / TOKENIZER_NAME
        try:
            spec = tokenizer_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ModelError(f"cannot read {tokenizer_path} ({first_line(err)}); re-run `splade-os export`") from err
        self.tokenizer = load_tokenizer(spec, tokenizer_path)
        self._truncating = load_tokenizer(spec, tokenizer_path, max_length=self.max_length)
        self._splitting = (
            load_tokenizer(spec, tokenizer_path, max_length=self.max_length, stride=self.stride)
            if long_documents == "split"
            else None
        )
        # Tokenizers that cut at other lengths (see `encode_documents`), each made once on first use, under `_lock`.
        self._tokenizer_spec = (spec, tokenizer_path)
        self._cutting = {(self.max_length, 0): self._truncating}
        if self._splitting is not None:
            self._cutting[(self.max_length, self.stride)] = self._splitting
        self._vocab, self.special_ids = _vocabulary(self.tokenizer, self.vocab_size)
        self._idf = self._load_idf() if self.query_mode == "inference-free" else None

        self.threads = int(threads or _available_cores())
        self._torch: TorchRunner | None = None
        self._batch_tokens = DEFAULT_BATCH_TOKENS
        self._pool: ThreadPoolExecutor | None = None
        if self.backend == "torch":
            from splade_os.model.torch_runner import TorchRunner

            self._torch = TorchRunner(
                self.model_dir,
                device=device,
                precision=precision,
                special_ids=self.special_ids,
                min_weight=self.min_weight,
            )
            self._batch_tokens = self._torch.batch_tokens
            # One worker runs the batches on the device (one at a time, under the runner's lock) while the calling
            # thread turns the previous batch into vectors: the device does not wait for Python between batches.
            # PyTorch sets its own CPU threads.
            self.workers = 1
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="splade-os-encode")
            return
        self._init_onnx(providers)

    def _init_onnx(self, providers: list[str] | None) -> None:
        import onnxruntime as ort

        onnx_path = self.model_dir / self.manifest.get("onnx_file", "model.onnx")
        chosen = self._providers(providers)
        # On CPU, `threads` workers each run whole batches single-threaded: no barrier per graph node, and each
        # core keeps its own projection tile in its own L2. Measured ~1.5-2x over intra-op threading on 2
        # cores. An accelerator gets one worker and onnxruntime's defaults.
        on_cpu = chosen[0] == "CPUExecutionProvider"
        self.workers = self.threads if on_cpu else 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if on_cpu else 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=chosen)
        except Exception as err:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(
                f"onnxruntime cannot load {onnx_path} ({first_line(err)}); re-run `splade-os export`"
            ) from err
        self._inputs = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = str(self.manifest.get("output")) if self.manifest.get("output") in outputs else outputs[0]
        # Masked-LM logits [batch, tokens, vocab] are pooled here; an export's graph pools them itself.
        self._pool_logits = self.manifest.get("output_kind") == "logits"
        # Created here rather than on first use, so concurrent first calls cannot each make one; its threads start
        # with the first batch.
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="splade-os-encode") if self.workers > 1 else None
        )

    # ---------------------------------------------------------------------------------------------------------
    # Lifetime and counters
    # ---------------------------------------------------------------------------------------------------------

    @property
    def tokens(self) -> list[str]:
        """Every token this model's vectors can hold (its vocabulary less special and unused tokens)."""
        return _emitted(self._vocab, self.special_ids)

    @property
    def truncated(self) -> int:
        """How many texts so far were longer than `max_length` and cut (long_documents="truncate")."""
        with self._lock:
            return self._truncated

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut the worker pool down once the batches already submitted have run; calling it again does nothing.

        Encoding after `close()` raises `EncoderClosedError`; a call in progress on another thread either
        finishes or raises it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._torch is not None:
            self._torch.close()  # frees the model's device memory

    def __enter__(self) -> SpladeEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EncoderClosedError(
                f"this encoder of {self.model_dir} was closed; create a new SpladeEncoder to encode again"
            )

    def _submit(self, windows: list[tuple[int, list[int]]], batch: np.ndarray) -> Future[Any]:
        with self._lock:  # never submit to a pool that `close()` is shutting down
            self._check_open()
            assert self._pool is not None
            return self._pool.submit(self._run_batch, windows, batch)

    # ---------------------------------------------------------------------------------------------------------
    # Loading
    # ---------------------------------------------------------------------------------------------------------

    def _load_idf(self) -> np.ndarray:
        path = self.model_dir / IDF_NAME
        if not path.is_file():
            raise ModelError(f"query mode 'inference-free' needs {path}, which is missing")
        table = read_json(path, "the idf weights of inference-free queries are damaged")
        if not isinstance(table, dict):
            raise ModelError(f"{path} holds a JSON {type(table).__name__}, not a token -> weight object")
        weights = np.zeros(self.vocab_size, dtype=np.float32)
        for token, weight in table.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not np.isfinite(weight):
                raise ModelError(f"{path}: the weight of token {token!r} is {weight!r}, not a finite number")
            index = self.tokenizer.token_to_id(token)
            if index is not None and index < self.vocab_size:
                weights[index] = float(weight)
        return weights

    @staticmethod
    def _providers(requested: list[str] | None) -> list[str]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if not requested:
            return ["CPUExecutionProvider"]
        missing = [p for p in requested if p not in available]
        if missing:
            raise ConfigError(
                f"execution provider(s) {', '.join(missing)} not available; this onnxruntime offers "
                f"{', '.join(available)} (install onnxruntime-gpu for CUDAExecutionProvider)"
            )
        return [*requested, *(["CPUExecutionProvider"] if "CPUExecutionProvider" not in requested else [])]

    # ---------------------------------------------------------------------------------------------------------
    # Encoding
    # ---------------------------------------------------------------------------------------------------------

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        settings: EncoderSettings | None = None,
        max_length: int | None = None,
        long_documents: str | None = None,
        stride: int | None = None,
    ) -> list[SparseVector]:
        """One sparse vector per text, in input order; empty or whitespace-only texts give an empty vector.

        `settings` cut the texts of this call as they say instead of as the encoder's own do: their `max_length`
        (None: the encoder's), `long_documents` and `stride`. An explanation encodes a hit's text again as the
        index recorded it was encoded (`EncoderSettings.from_meta`). The three may be given as keywords instead."""
        items = _as_texts(texts, "texts")
        self._check_open()
        if settings is not None:
            if (max_length, long_documents, stride) != (None, None, None):
                raise ConfigError("give encode_documents settings=EncoderSettings(...) or its cut by keyword, not both")
            max_length, long_documents, stride = settings.max_length, settings.long_documents, settings.stride
        if max_length is None and long_documents is None and stride is None:
            return self._encode(items, split=self.long_documents == "split")
        max_length = self.max_length if max_length is None else max_length
        long_documents = long_documents or self.long_documents
        stride = self.stride if stride is None else stride
        self._check_cut(max_length, long_documents, stride)
        split = long_documents == "split"
        return self._encode(items, split=split, tokenizer=self._cutter(max_length, stride if split else 0))

    def _check_cut(self, max_length: int, long_documents: str, stride: int) -> None:
        check_cut(max_length, long_documents, stride, int(self.manifest["max_length"]))

    def _cutter(self, max_length: int, stride: int) -> Tokenizer:
        """The tokenizer that cuts at `max_length` with windows overlapping by `stride`, made once per setting."""
        with self._lock:
            tokenizer = self._cutting.get((max_length, stride))
            if tokenizer is None:
                spec, path = self._tokenizer_spec
                tokenizer = load_tokenizer(spec, path, max_length=max_length, stride=stride)
                self._cutting[(max_length, stride)] = tokenizer
            return tokenizer

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Query vectors: the network (`query_mode="model"`) or the tokenizer plus idf weights (`"inference-free"`)."""
        items = _as_texts(texts, "queries")
        self._check_open()
        if self._idf is None:
            return self._encode(items, split=False)
        out = []
        # No network, so no length limit: every query token counts (`tokenizer` never truncates).
        for encoding in self.tokenizer.encode_batch(items, add_special_tokens=False):
            ids = np.unique(np.asarray(encoding.ids, dtype=np.int64))
            row = np.zeros(self.vocab_size, dtype=np.float32)
            row[ids] = self._idf[ids]
            out.append(self._to_vector(row))
        return out

    def encode_weights(self, texts: Sequence[str]) -> np.ndarray:
        """Dense `[len(texts), vocab]` document weights before special-token removal and pruning (for tests)."""
        items = _as_texts(texts, "texts")
        self._check_open()
        out = np.zeros((len(items), self.vocab_size), dtype=np.float32)
        windows = self._windows(items, split=False)
        if self._torch is not None:  # encoding copies back pruned pairs only; this wants whole rows
            for batch in self._batches(np.array([len(ids) for _, ids in windows])):
                out[[windows[w][0] for w in batch]] = self._torch.dense(*self._padded(windows, batch))
            return out
        for i, row in self._pooled(windows):
            out[i] = row
        return out

    def _encode(self, texts: list[str], *, split: bool, tokenizer: Tokenizer | None = None) -> list[SparseVector]:
        out = [SparseVector({})] * len(texts)
        for i, row in self._pooled(self._windows(texts, split=split, tokenizer=tokenizer)):
            out[i] = self._to_vector(row)
        return out

    def _windows(
        self, texts: list[str], *, split: bool, tokenizer: Tokenizer | None = None
    ) -> list[tuple[int, list[int]]]:
        """(text index, token ids) per window; texts without content get none. `tokenizer` (one from `_cutter`)
        replaces the encoder's own."""
        present = [i for i, t in enumerate(texts) if t.strip()]
        if not present:
            return []
        if tokenizer is None:
            tokenizer = self._splitting if split and self._splitting is not None else self._truncating
        windows: list[tuple[int, list[int]]] = []
        truncated = 0
        for i, encoding in zip(present, tokenizer.encode_batch([texts[i] for i in present]), strict=True):
            windows.append((i, encoding.ids))
            if encoding.overflowing:
                if split:
                    windows.extend((i, extra.ids) for extra in encoding.overflowing)
                else:
                    truncated += 1
        if truncated:
            with self._lock:
                self._truncated += truncated
        return windows

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Window indices, longest first, in batches of similar length."""
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            if self.batch_size is not None:
                size = self.batch_size
            else:
                size = max(1, self._batch_tokens // int(lengths[order[start]]))
            yield order[start : start + size]
            start += size

    @staticmethod
    def _padded(windows: list[tuple[int, list[int]]], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(windows[w][1]) for w in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for r, w in enumerate(batch):
            tokens = windows[w][1]
            ids[r, : len(tokens)] = tokens
            mask[r, : len(tokens)] = 1
        return ids, mask

    def _run_batch(self, windows: list[tuple[int, list[int]]], batch: np.ndarray) -> np.ndarray | list[Sparse]:
        ids, mask = self._padded(windows, batch)
        if self._torch is not None:
            return self._torch.sparse(ids, mask)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out = self.session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
        if self._pool_logits:
            return splade_pool_max_first(out, mask, overwrite=True)  # the session's output is ours
        return np.asarray(out, dtype=np.float32)

    def _weights(self, windows: list[tuple[int, list[int]]]) -> Iterator[tuple[np.ndarray, Any]]:
        """(window indices, [batch, vocab] weights) per batch, in batch order, `workers` batches at a time."""
        lengths = np.array([len(ids) for _, ids in windows])
        batches = self._batches(lengths)
        if self._pool is None:
            for batch in batches:
                self._check_open()
                yield batch, self._run_batch(windows, batch)
            return
        in_flight: deque[tuple[np.ndarray, Future[Any]]] = deque()
        for batch in batches:
            in_flight.append((batch, self._submit(windows, batch)))
            if len(in_flight) > 2 * self.workers:  # bounded: memory stays flat on long inputs
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            yield done, future.result()

    def _pooled(self, windows: list[tuple[int, list[int]]]) -> Iterator[tuple[int, Row]]:
        """(text index, weights) once per text, as soon as all of its windows have run."""
        if not windows:
            return
        pending = dict(zip(*np.unique([t for t, _ in windows], return_counts=True), strict=True))
        partial: dict[int, Row] = {}
        for batch, weights in self._weights(windows):
            for r, w in enumerate(batch):
                text = windows[w][0]
                # Windows of one text are max-pooled, exactly as SPLADE pools tokens within a window.
                row = _max(partial.pop(text), weights[r]) if text in partial else weights[r]
                pending[text] -= 1
                if pending[text]:
                    partial[text] = row
                else:
                    yield int(text), row

    def _to_vector(self, row: Row) -> SparseVector:
        if isinstance(row, np.ndarray):
            dense = row.copy()
            dense[self.special_ids] = 0.0
            ids = np.flatnonzero((dense > 0.0) & (dense >= self.min_weight))
            values = dense[ids]
        else:
            ids, values = row  # the PyTorch backend dropped special tokens and applied min_weight on the device
        if self.max_ratio and len(values):
            kept = values >= self.max_ratio * float(values.max())
            ids, values = ids[kept], values[kept]
        if self.top_k is not None and len(ids) > self.top_k:
            # Ties at the cut are broken by token id so the result does not depend on the sort's internals.
            order = np.lexsort((ids, -values))[: self.top_k]
            ids, values = ids[order], values[order]
        return SparseVector({self._vocab[i]: float(v) for i, v in zip(ids, values, strict=True)})


def _max(a: Row, b: Row) -> Row:
    """Max-pool two windows of one text."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.maximum(a, b)
    assert isinstance(a, tuple) and isinstance(b, tuple)
    return merge_sparse(a, b)
