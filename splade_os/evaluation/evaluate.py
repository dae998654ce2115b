"""BEIR-style evaluation through the cluster: every test query in each mode, metrics from ir-measures."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splade_os.engines import engine_for
from splade_os.errors import EngineError, InputError, MissingDependencyError
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.indexing import Progress as IndexProgress
from splade_os.mappings import VECTOR_FIELD
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import MODES, Mode, QueryEncoder, Searcher
from splade_os.vectors import SparseVector

Run = dict[str, dict[str, float]]  # query id -> doc id -> score
Qrels = dict[str, dict[str, int]]
# ir-measures' names. Reciprocal rank is RR@10 (the mean over queries that MS MARCO calls MRR@10); compute_metrics
# takes MRR@10 too and answers under the name it was asked for.
METRICS = ("nDCG@10", "R@100", "RR@10")
OnProgress = Callable[[str, int, int | None], None]
"""Called as `(step, done, total)` while a long call runs: `step` names what is counted (the mode whose queries run,
`exact` for the documents read, `index` for the documents indexed); `total` is None when unknown."""


@dataclass(frozen=True)
class Dataset:
    root: Path
    corpus: Path
    queries: dict[str, str]
    qrels: Qrels


@dataclass
class ModeReport:
    mode: str
    metrics: dict[str, float]
    latency_ms_p50: float
    latency_ms_p95: float
    queries: int


@dataclass
class EvalReport:
    dataset: str
    index: str
    model: str
    modes: list[ModeReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; bytes that are not UTF-8 are an InputError naming the line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path} line {number}: invalid UTF-8 at byte {err.start}; fix or remove it") from None
            if text.strip():
                yield number, text.rstrip("\r\n")


def read_qrels(path: Path) -> Qrels:
    """qrels/<split>.tsv: `query-id<TAB>corpus-id<TAB>score` rows (an optional header); blank lines are skipped."""
    qrels: Qrels = {}
    header = True
    for number, text in _lines(path):
        row = next(csv.reader([text.lstrip("\ufeff")], delimiter="\t"))
        if header and row[:1] == ["query-id"]:
            continue
        header = False
        where = f"{path} line {number}"
        if len(row) < 3:
            raise InputError(
                f"{where} has {len(row)} tab-separated field(s); BEIR qrels rows are query-id, corpus-id, score"
            )
        try:
            score = int(row[2])
        except ValueError:
            raise InputError(f"{where}: the score {row[2]!r} is not an integer (BEIR qrels: 0, 1, 2, ...)") from None
        qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def read_queries(path: Path, judged: Qrels | None = None) -> dict[str, str]:
    """The text of each query in queries.jsonl (only the judged ones when `judged` is given); blank lines are
    skipped, a malformed line is an InputError."""
    queries: dict[str, str] = {}
    for number, text in _lines(path):
        where = f"{path} line {number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{where} is not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f'{where} is a JSON {type(record).__name__}, expected {{"_id": ..., "text": ...}}')
        query_id, query = record.get("_id"), record.get("text")
        if isinstance(query_id, bool) or not isinstance(query_id, str | int) or str(query_id) == "":
            raise InputError(f"{where} has no usable _id (a string or an integer), got {query_id!r}")
        if not isinstance(query, str):
            raise InputError(f"{where} (query {str(query_id)!r}): text must be a string, got {type(query).__name__}")
        if judged is None or str(query_id) in judged:
            queries[str(query_id)] = query
    return queries


def load_beir(root: str | Path, split: str = "test") -> Dataset:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv; only queries with judgements are kept.

    Blank lines are skipped; a malformed line is an InputError naming the file, the line and what is wrong.
    """
    root = Path(root)
    corpus, queries_file, qrels_file = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    for path in (corpus, queries_file, qrels_file):
        if not path.is_file():
            raise InputError(f"{path} is missing: a BEIR dataset folder holds corpus.jsonl, queries.jsonl, qrels/")
    qrels = read_qrels(qrels_file)
    queries = read_queries(queries_file, qrels)
    if not queries:
        raise InputError(f"no query in {queries_file} has a judgement in {qrels_file}")
    return Dataset(root, corpus, queries, {q: r for q, r in qrels.items() if q in queries})


def compute_metrics(qrels: Qrels, run: Run, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean metrics over the judged queries (a query with no hit scores 0), computed by ir-measures."""
    try:
        import ir_measures
    except ImportError:
        raise MissingDependencyError("evaluation needs ir-measures: pip install 'splade-os[eval]'") from None
    parsed = [ir_measures.parse_measure(m) for m in metrics]
    full_run = {q: run.get(q) or {"__no_hit__": 0.0} for q in qrels}
    results = ir_measures.calc_aggregate(parsed, qrels, full_run)
    return {name: float(results[m]) for name, m in zip(metrics, parsed, strict=True)}


def search_run(
    searcher: Searcher,
    queries: Mapping[str, str],
    mode: Mode,
    depth: int = 100,
    on_progress: OnProgress | None = None,
) -> tuple[Run, list[float]]:
    """Every query through the searcher; the run and each query's client-side latency in milliseconds.
    `on_progress(mode, done, total)` after each query."""
    run: Run = {}
    latencies = []
    for query_id, text in queries.items():
        start = time.perf_counter()
        result = searcher.search(text, k=depth, mode=mode)
        latencies.append((time.perf_counter() - start) * 1000)
        run[query_id] = {hit.id: hit.score for hit in result.hits}
        if on_progress:
            on_progress(mode, len(run), len(queries))
    return run, latencies


def exact_run(
    documents: Iterable[tuple[str, SparseVector]], queries: Mapping[str, SparseVector], depth: int = 100
) -> Run:
    """Brute-force dot products in memory: the reference that the engine's scores must reproduce."""
    ids: list[str] = []
    postings: dict[str, list[tuple[int, float]]] = {}
    for position, (doc_id, vector) in enumerate(documents):
        ids.append(doc_id)
        for token, weight in vector.items():
            postings.setdefault(token, []).append((position, weight))
    arrays = {t: (np.array([p for p, _ in ps]), np.array([w for _, w in ps])) for t, ps in postings.items()}
    run: Run = {}
    for query_id, query in queries.items():
        scores = np.zeros(len(ids))
        for token, weight in query.items():
            if token in arrays:
                positions, weights = arrays[token]
                scores[positions] += weight * weights
        top = np.argsort(-scores, kind="stable")[:depth]
        run[query_id] = {ids[i]: float(scores[i]) for i in top if scores[i] > 0}
    return run


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def evaluate_modes(
    searcher: Searcher,
    dataset: Dataset,
    modes: Sequence[Mode] = MODES,
    depth: int = 100,
    on_progress: OnProgress | None = None,
) -> list[ModeReport]:
    reports = []
    for mode in modes:
        run, latencies = search_run(searcher, dataset.queries, mode, depth, on_progress)
        reports.append(
            ModeReport(
                mode,
                compute_metrics(dataset.qrels, run),
                percentile(latencies, 50),
                percentile(latencies, 95),
                len(latencies),
            )
        )
    return reports


def stored_vectors(
    client: Any, index: str, field_name: str = VECTOR_FIELD, on_progress: OnProgress | None = None
) -> Iterator[tuple[str, SparseVector]]:
    """Every document's vector as indexed (before Lucene rounds it), read back with a scroll;
    `on_progress("exact", done, total)` every 1,000 documents and at the end."""
    engine = engine_for(client)
    total = int(client.count(index=index)["count"]) if on_progress else None
    done = 0
    for hit in engine.scan(client, index, {"_source": [field_name]}, size=1000):
        done += 1
        if on_progress and done % 1000 == 0:
            on_progress("exact", done, total)
        yield hit["_id"], engine.from_field(hit["_source"].get(field_name) or {})
    if on_progress:
        on_progress("exact", done, total)


def exact_report(
    client: Any,
    index: str,
    encoder: QueryEncoder,
    dataset: Dataset,
    depth: int = 100,
    on_progress: OnProgress | None = None,
) -> ModeReport:
    """Exact in-memory scoring of the same vectors: the reference the engine must reproduce."""
    texts = list(dataset.queries.values())
    start = time.perf_counter()
    vectors = encoder.encode_queries(texts)
    per_query = (time.perf_counter() - start) * 1000 / max(len(texts), 1)
    queries = dict(zip(dataset.queries, vectors, strict=True))
    run = exact_run(stored_vectors(client, index, on_progress=on_progress), queries, depth)
    return ModeReport("exact", compute_metrics(dataset.qrels, run), per_query, per_query, len(texts))


def default_index_name(dataset: Dataset, manifest: Mapping[str, Any]) -> str:
    """One index per dataset and encoder, so evaluating two models never mixes their vectors."""
    name = "".join(c if c.isalnum() else "-" for c in dataset.root.resolve().name.lower()).strip("-") or "dataset"
    return f"eval-{name}-{str(manifest.get('sha256', 'model'))[:10]}"


def evaluate(
    dataset_dir: str | Path | Dataset,
    encoder: SpladeEncoder,
    *,
    client: Any,
    index: str | None = None,
    modes: Sequence[Mode] = MODES,
    depth: int = 100,
    split: str = "test",
    exact: bool = False,
    force: bool = False,
    on_indexing: Callable[[str], None] | None = None,
    on_progress: OnProgress | None = None,
) -> EvalReport:
    """Index the corpus unless the index exists, then run every judged query in each mode.

    `dataset_dir` is a BEIR folder (read with `load_beir(dataset_dir, split)`) or a Dataset already loaded.
    `on_progress(step, done, total)` follows the work (see `OnProgress`): documents indexed, each mode's queries,
    the documents `exact` reads.
    """
    dataset = dataset_dir if isinstance(dataset_dir, Dataset) else load_beir(dataset_dir, split)
    index = index or default_index_name(dataset, encoder.manifest)
    if not client.indices.exists(index=index):
        if on_indexing:
            on_indexing(index)

        def indexed(p: IndexProgress) -> None:  # the documents the cluster acknowledged, as `index` counts them
            if on_progress:
                on_progress("index", p.counters.indexed + p.counters.failed + p.counters.skipped, None)

        summary = index_corpus(
            client,
            dataset.corpus,
            index=index,
            encoder=encoder,
            load=LoadOptions(replicas=0),
            on_progress=indexed if on_progress else None,
        )
        problems = summary.problems()
        if problems:
            raise EngineError(f"indexing {dataset.corpus} into {index!r} failed: {'; '.join(problems)}")
    searcher = Searcher(index, encoder, client=client, force=force)
    report = EvalReport(dataset.root.name, index, str(encoder.manifest.get("name", "")))
    report.modes = evaluate_modes(searcher, dataset, modes, depth, on_progress)
    if exact:
        report.modes.append(exact_report(client, index, encoder, dataset, depth, on_progress))
    return report


def format_table(report: EvalReport) -> str:
    header = f"{'mode':<10} " + " ".join(f"{m:>8}" for m in METRICS) + f" {'p50 ms':>8} {'p95 ms':>8}"
    lines = [f"{report.dataset} on index {report.index} with {report.model}", header]
    for row in report.modes:
        values = " ".join(f"{row.metrics.get(m, float('nan')):>8.4f}" for m in METRICS)
        lines.append(f"{row.mode:<10} {values} {row.latency_ms_p50:>8.1f} {row.latency_ms_p95:>8.1f}")
    return "\n".join(lines)


__all__ = [
    "MODES",
    "Dataset",
    "EvalReport",
    "ModeReport",
    "compute_metrics",
    "evaluate",
    "evaluate_modes",
    "exact_run",
    "format_table",
    "load_beir",
    "search_run",
]
