"""splade-os side by side with its peers: the same SPLADE model, the same texts, the same threads.

    python benchmarks/peers.py                                  # 1,000 SciFact documents and 300 queries
    python benchmarks/peers.py --docs 50 --queries 20 --json peers.json --plot docs/peers.png

Not a test. SciFact (BEIR; corpus.jsonl, queries.jsonl, qrels/) is the folder `--dataset` names, by default
../shared/data/scifact; download it from https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip
and unzip it. The model is the checkpoint `--checkpoint` names (default ../shared/models/splade-tiny, the real
splade-tiny checkpoint behind models/splade-tiny), from which the run builds, in a temporary folder:

* `splade-os export --with-checkpoint` (fp32; the PyTorch systems load its checkpoint copy) and `--quantize int8`;
* one masked-LM ONNX file (logits `[batch, tokens, vocab]`, as fastembed and optimum ship SPLADE models), placed
  as a fastembed folder (`model.onnx` beside the tokenizer files) and as the `onnx/model.onnx` of a
  SparseEncoder folder that sentence-transformers saves itself (MLMTransformer + SpladePooling max): the same
  bytes for fastembed, sentence-transformers' ONNX backend and splade-os reading the fastembed folder as it is.

Systems, each in its own subprocess so its peak RSS (VmHWM) is its own, with `--threads` threads:

* `transformers` PyTorch eager (the reference: log(1 + relu) over all logits, masked max), batch `--batch-size`;
* `sentence-transformers` SparseEncoder (MLMTransformer + SpladePooling max), torch and ONNX backends;
* `fastembed` SparseTextEmbedding on the local folder (fastembed 0.9 has no `add_custom_model` for sparse models:
  the folder is registered as a SpladePP model description, which pools logits as SPLADE does);
* splade-os `SpladeEncoder`: its export fp32 and int8, and the peers' ONNX file (fastembed folder).

Each system encodes a warm-up of 8 texts, then the documents and the queries, timed apart. Parity is against
splade-os fp32 on the same texts, after the vectors of every system pass through splade-os's own rules (special
and unused tokens dropped): the largest absolute weight difference (a token missing on one side counts as 0) and
the mean top-10 token overlap. The ONNX backend of sentence-transformers needs optimum, whose releases pin an
older transformers than sentence-transformers 6 accepts: `--st-onnx-python` runs that system under another
interpreter (a virtual environment with `sentence-transformers[onnx]<6`); without optimum its rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from scifact_common import load_scifact, timed, torch_reference_encoder  # noqa: E402

SHARED = REPO.parent / "shared"
# (system, precision, folder the worker reads); the folders are built by `build_folders`.
SYSTEMS = [
    ("transformers (PyTorch eager, reference)", "fp32", "export-fp32"),
    ("sentence-transformers (torch)", "fp32", "st-torch"),
    ("sentence-transformers (onnx)", "fp32", "st-onnx"),
    ("sentence-transformers (onnx)", "int8", "st-onnx"),
    ("fastembed", "fp32", "fastembed"),
    ("splade-os (peers' ONNX file)", "fp32", "fastembed"),
    ("splade-os", "fp32", "export-fp32"),
    ("splade-os", "int8", "export-int8"),
]
BASELINE = ("splade-os", "fp32")
SKIP_NAMES = {
    "reference": 0,
    "st-torch": 1,
    "st-onnx": 2,
    "st-onnx-int8": 3,
    "fastembed": 4,
    "os-peer-file": 5,
    "os-fp32": 6,
    "os-int8": 7,
}
Sparse = tuple[list[int], list[float]]


# ---------------------------------------------------------------- workers: one system per process


def _sparse_rows(rows: Iterable[np.ndarray]) -> list[Sparse]:
    out = []
    for row in rows:
        ids = np.flatnonzero(row)
        out.append((ids.tolist(), row[ids].astype(float).tolist()))
    return out


def _reference(folder: Path, args: argparse.Namespace) -> Callable[[list[str], bool], list[Sparse]]:
    encode = torch_reference_encoder(folder, args.max_length, args.threads, args.batch_size)
    return lambda texts, _queries: _sparse_rows(encode(texts))


def _sentence_transformers(
    folder: Path, args: argparse.Namespace, backend: str, precision: str
) -> Callable[[list[str], bool], list[Sparse]]:
    import torch
    from sentence_transformers import SparseEncoder

    torch.set_num_threads(args.threads)
    kwargs: dict[str, Any] = {}
    if backend == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        # The name sentence-transformers' own quantization gives its int8 file (see `sentence_transformers_folder`).
        name = "onnx/model_quint8_avx2.onnx" if precision == "int8" else "onnx/model.onnx"
        kwargs = {"provider": "CPUExecutionProvider", "session_options": options, "file_name": name}
    model = SparseEncoder(str(folder), device="cpu", backend=backend, model_kwargs=kwargs, local_files_only=True)

    def encode(texts: list[str], queries: bool) -> list[Sparse]:
        method = model.encode_query if queries else model.encode_document
        matrix = method(texts, batch_size=args.batch_size, convert_to_sparse_tensor=True).coalesce()
        rows: list[Sparse] = [([], []) for _ in texts]
        for (r, i), v in zip(matrix.indices().T.tolist(), matrix.values().tolist(), strict=True):
            rows[r][0].append(i)
            rows[r][1].append(v)
        return rows

    return encode


def _fastembed(folder: Path, args: argparse.Namespace) -> Callable[[list[str], bool], list[Sparse]]:
    from fastembed import SparseTextEmbedding
    from fastembed.common.model_description import ModelSource, SparseModelDescription
    from fastembed.sparse import splade_pp

    name = "local/splade-peers"
    if not any(d.model == name for d in splade_pp.supported_splade_models):
        description = SparseModelDescription(
            model=name,
            vocab_size=args.vocab_size,
            description="the benchmark's local SPLADE folder",
            license="apache-2.0",
            size_in_GB=0.0,
            sources=ModelSource(hf=name),
            model_file="model.onnx",
        )
        splade_pp.supported_splade_models.append(description)
    model = SparseTextEmbedding(
        name,
        specific_model_path=str(folder),
        local_files_only=True,
        threads=args.threads,
        providers=["CPUExecutionProvider"],
    )

    def encode(texts: list[str], queries: bool) -> list[Sparse]:
        found = model.query_embed(texts) if queries else model.embed(texts, batch_size=args.batch_size)
        return [(e.indices.tolist(), e.values.astype(float).tolist()) for e in found]

    return encode


def _splade_os(folder: Path, args: argparse.Namespace) -> Callable[[list[str], bool], list[Sparse]]:
    sys.path.insert(0, str(REPO))
    from splade_os.model.encoder import SpladeEncoder

    encoder = SpladeEncoder(folder, threads=args.threads, max_length=args.max_length)
    ids = {token: i for i, token in enumerate(encoder._vocab)}

    def encode(texts: list[str], queries: bool) -> list[Sparse]:
        vectors = encoder.encode_queries(texts) if queries else encoder.encode_documents(texts)
        return [([ids[t] for t in v], list(v.values())) for v in vectors]

    return encode


def peak_mib() -> float:
    """This process's resident-set high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    system, precision, folder_name = SYSTEMS[args.worker]
    work = args.work
    texts = json.loads((work / "texts.json").read_text())
    folder = work / folder_name
    if system.startswith("transformers"):
        encode = _reference(folder, args)
    elif system.startswith("sentence-transformers"):
        encode = _sentence_transformers(folder, args, "onnx" if "onnx" in system else "torch", precision)
    elif system == "fastembed":
        encode = _fastembed(folder, args)
    else:
        encode = _splade_os(folder, args)
    encode(texts["docs"][:8], False)  # warm-up: session initialisation and first-run allocations
    encode(texts["queries"][:8], True)
    docs: list[Sparse] = []
    queries: list[Sparse] = []
    doc_seconds = timed(lambda: docs.extend(encode(texts["docs"], False)))
    query_seconds = timed(lambda: queries.extend(encode(texts["queries"], True)))
    result = {
        "docs_per_s": len(docs) / doc_seconds,
        "queries_per_s": len(queries) / query_seconds,
        "peak_mib": peak_mib(),
        "docs": docs,
        "queries": queries,
    }
    (work / f"system-{args.worker}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- the run


def _logits_graph(checkpoint: Path, path: Path) -> None:
    """The checkpoint's masked LM as ONNX with one output, `logits` `[batch, tokens, vocab]`."""
    import onnx

    sys.path.insert(0, str(REPO))
    import transformers

    from splade_os.model.export import _export_body, load_masked_lm

    mlm = load_masked_lm(transformers, checkpoint, attn_implementation="eager")
    _export_body(mlm, path, 17)  # the export's traced body; its output is named for the pooled head
    model = onnx.load(str(path))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["logits" if name == old else name for name in node.output]
    model.graph.output[0].name = "logits"
    onnx.save_model(model, str(path))


def build_folders(checkpoint: Path, work: Path, max_length: int) -> int:
    """The folders `SYSTEMS` names, under `work`; returns the vocabulary size."""
    sys.path.insert(0, str(REPO))
    from splade_os.model.export import export_model

    manifest = export_model(checkpoint, work / "export-fp32", max_length=max_length, with_checkpoint=True)
    export_model(checkpoint, work / "export-int8", max_length=max_length, quantize="int8")
    fastembed = work / "fastembed"
    _logits_graph(checkpoint, work / "logits.onnx")
    tokenizer_config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = max_length  # fastembed truncates where splade-os does
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    fastembed.mkdir()
    shutil.copyfile(checkpoint / "tokenizer.json", fastembed / "tokenizer.json")
    shutil.copyfile(checkpoint / "config.json", fastembed / "config.json")
    (fastembed / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (fastembed / "special_tokens_map.json").write_text(json.dumps(special))
    os.link(work / "logits.onnx", fastembed / "model.onnx")
    return int(manifest["vocab_size"])


def sentence_transformers_folder(
    python: str, checkpoint: Path, folder: Path, max_length: int, logits: Path | None, quantize: bool
) -> str | None:
    """A SparseEncoder (MLMTransformer + SpladePooling max) saved by the sentence-transformers of `python` (5.x
    and 6.x write different module paths); with `logits`, that file as its `onnx/model.onnx`, and with `quantize`
    its own int8 export (optimum's dynamic quantization, AVX2 config). None when it worked, else why not."""
    imports = (
        "import sys; from sentence_transformers import SparseEncoder, export_dynamic_quantized_onnx_model as q; "
        "from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling; "
    )
    save = (
        "mlm = MLMTransformer(sys.argv[1], max_seq_length=int(sys.argv[3])); "
        "SparseEncoder(modules=[mlm, SpladePooling(pooling_strategy='max')], device='cpu').save(sys.argv[2])"
    )
    int8 = (
        "m = SparseEncoder(sys.argv[2], backend='onnx', device='cpu', local_files_only=True, "
        "model_kwargs={'file_name': 'onnx/model.onnx'}); q(m, 'avx2', sys.argv[2])"
    )
    arguments = [str(checkpoint), str(folder), str(max_length)]
    done = subprocess.run([python, "-c", imports + save, *arguments], capture_output=True, text=True)
    if done.returncode == 0 and logits is not None:
        (folder / "onnx").mkdir()
        os.link(logits, folder / "onnx" / "model.onnx")
        if quantize:
            done = subprocess.run([python, "-c", imports + int8, *arguments], capture_output=True, text=True)
    return None if done.returncode == 0 else _last_error(done.stderr)


def _last_error(stderr: str) -> str:
    """The exception line of a worker's traceback (progress bars and warnings may follow it)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or lines or ["failed"])[-1]


def _vectors(rows: list[Sparse], vocab_size: int, to_vector: Callable[[np.ndarray], Any]) -> list[Any]:
    out = []
    for ids, weights in rows:
        dense = np.zeros(vocab_size, dtype=np.float32)
        dense[np.asarray(ids, dtype=np.int64)] = weights
        out.append(to_vector(dense))
    return out


def parity(ours: list[Any], theirs: list[Any]) -> tuple[float, float]:
    """(largest absolute weight difference, mean top-10 token overlap) of two lists of SparseVectors."""
    diffs, overlaps = [], []
    for a, b in zip(ours, theirs, strict=True):
        diffs.append(max([abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in set(a) | set(b)], default=0.0))
        top_a, top_b = ({t for t, _ in v.sorted_items()[:10]} for v in (a, b))
        overlaps.append(len(top_a & top_b) / max(1, min(10, len(a), len(b))) if a or b else 1.0)
    return float(max(diffs, default=0.0)), float(np.mean(overlaps))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['system']} {r['precision']}" for r in rows]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.5), sharey=True)
    for ax, key, title in ((axes[0], "docs_per_s", "documents/s"), (axes[1], "queries_per_s", "queries/s")):
        ax.barh(y, [r[key] for r in rows], color=["C0" if r["system"].startswith("splade-os") else "C7" for r in rows])
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SHARED / "data" / "scifact", help="SciFact in BEIR layout")
    parser.add_argument("--checkpoint", type=Path, default=SHARED / "models" / "splade-tiny")
    parser.add_argument("--docs", type=int, default=1000, help="first N documents")
    parser.add_argument("--queries", type=int, default=300, help="first N queries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch for the peers (splade-os: its own)")
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(SKIP_NAMES))
    parser.add_argument("--st-onnx-python", default=sys.executable, help="interpreter for sentence-transformers onnx")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--plot", type=Path, default=None, help="write a bar chart here (needs matplotlib)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="build the folders here once and keep them (default: a temporary folder)",
    )
    parser.add_argument("--vocab-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return

    _, doc_texts, query_map, _ = load_scifact(args.dataset)
    texts = {"docs": doc_texts[: args.docs], "queries": list(query_map.values())[: args.queries]}
    skipped = {SKIP_NAMES[name] for name in args.skip}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        built = work / "built.json"  # a kept --work folder is built once
        if built.is_file() and json.loads(built.read_text())["max_length"] == args.max_length:
            vocab_size = json.loads(built.read_text())["vocab_size"]
        else:
            vocab_size = build_folders(args.checkpoint, work, args.max_length)
            for python, name, logits, quantize, rows_of in (
                (sys.executable, "st-torch", None, False, {1}),
                (args.st_onnx_python, "st-onnx", work / "logits.onnx", 3 not in skipped, {2, 3}),
            ):
                if rows_of - skipped:
                    why = sentence_transformers_folder(
                        python, args.checkpoint, work / name, args.max_length, logits, quantize
                    )
                    if why:
                        print(f"skipped sentence-transformers ({name}): no folder: {why}", file=sys.stderr)
                        skipped |= rows_of
            built.write_text(json.dumps({"vocab_size": vocab_size, "max_length": args.max_length}))
        (work / "texts.json").write_text(json.dumps(texts))
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        results: dict[int, dict[str, Any]] = {}
        for index, (system, precision, _) in enumerate(SYSTEMS):
            if index in skipped:
                continue
            python = args.st_onnx_python if "(onnx)" in system else sys.executable
            command = [
                python,
                __file__,
                "--worker",
                str(index),
                "--work",
                str(work),
                "--threads",
                str(args.threads),
                "--max-length",
                str(args.max_length),
                "--batch-size",
                str(args.batch_size),
                "--vocab-size",
                str(vocab_size),
            ]
            done = subprocess.run(command, env=environment, capture_output=True, text=True)
            if done.returncode != 0:
                print(
                    f"skipped {system} {precision} (exit {done.returncode}): {_last_error(done.stderr)}",
                    file=sys.stderr,
                )
                (work / f"system-{index}.stderr").write_text(done.stderr)
                continue
            results[index] = json.loads((work / f"system-{index}.json").read_text())
            print(f"{system} {precision}: {results[index]['docs_per_s']:.1f} docs/s", file=sys.stderr, flush=True)

        sys.path.insert(0, str(REPO))
        from splade_os.model.encoder import SpladeEncoder

        to_vector = SpladeEncoder(work / "export-fp32", threads=1)._to_vector
        baseline = SYSTEMS.index((*BASELINE, "export-fp32"))
        ours = None
        if baseline in results:
            ours = _vectors(results[baseline]["docs"] + results[baseline]["queries"], vocab_size, to_vector)
        for index, result in results.items():
            system, precision, _ = SYSTEMS[index]
            diff = overlap = None
            if ours is not None:
                theirs = _vectors(result["docs"] + result["queries"], vocab_size, to_vector)
                diff, overlap = parity(ours, theirs)
            rows.append(
                {
                    "system": system,
                    "precision": precision,
                    "docs_per_s": round(result["docs_per_s"], 2),
                    "queries_per_s": round(result["queries_per_s"], 2),
                    "peak_mib": round(result["peak_mib"], 1),
                    "max_abs_diff": diff,
                    "top10_overlap": None if overlap is None else round(overlap, 4),
                }
            )

    print(
        f"\n{len(texts['docs'])} documents, {len(texts['queries'])} queries, {args.threads} threads, max length "
        f"{args.max_length}; parity against splade-os fp32\n"
    )
    print("| system | precision | docs/s | queries/s | peak MiB | max abs diff | top-10 overlap |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        diff_cell = "" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2g}"
        overlap_cell = "" if row["top10_overlap"] is None else f"{row['top10_overlap']:.3f}"
        print(
            f"| {row['system']} | {row['precision']} | {row['docs_per_s']:.1f} | {row['queries_per_s']:.1f} | "
            f"{row['peak_mib']:.0f} | {diff_cell} | {overlap_cell} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    if args.plot and rows:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
