"""`stats`: what splade-os put in an index: documents, disk, features per document, vocabulary coverage, and the
cost of the vectors against the same documents indexed for BM25 only.

Features per document are read from the stored `_source`: every document when the index holds at most `sample`
of them (exact), otherwise a random sample of `sample` documents (`random_score`, at most 10,000).

The BM25-only size is measured, not estimated: OpenSearch has no `_disk_usage` API (Elasticsearch 7.15+ does), so
the same documents (at most `bm25_docs`) are copied with `_reindex` into two temporary one-shard indices, one with
the mapping as it is and one without the vector field, each force-merged to one segment, and their sizes compared.
The temporary indices are deleted whatever happens.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from splade_os import aliases
from splade_os.engines import engine_for
from splade_os.errors import ConfigError, EngineError, IndexNotFoundError
from splade_os.mappings import VECTOR_FIELD, check_vector_field, is_vector_field, meta_from_mapping
from splade_os.words import plural

OnProgress = Callable[[str, int, int | None], None]
"""Called as `(step, done, total)`: `sample` (documents read), then `copy` (documents copied to the BM25 copy)."""

MAX_SAMPLE = 10_000  # index.max_result_window: the largest random sample one search returns


@dataclass(frozen=True)
class Bm25Comparison:
    docs: int  # documents copied into each temporary index
    with_vectors_bytes: int
    bm25_only_bytes: int

    @property
    def ratio(self) -> float:
        return self.with_vectors_bytes / self.bm25_only_bytes if self.bm25_only_bytes else math.nan


@dataclass(frozen=True)
class IndexStats:
    index: str
    indices: tuple[str, ...]
    documents: int
    primary_bytes: int
    total_bytes: int
    sampled: int
    exact: bool  # every document was read (else a random sample)
    avg_features: float
    p50_features: float
    p95_features: float
    max_features: int
    distinct_features: int
    vocab_size: int | None
    encoder: str | None
    bm25: Bm25Comparison | None
    notes: tuple[str, ...] = ()

    @property
    def vocab_coverage(self) -> float | None:
        return self.distinct_features / self.vocab_size if self.vocab_size else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["vocab_coverage"] = self.vocab_coverage
        if self.bm25:
            data["bm25"]["ratio"] = self.bm25.ratio
        return data


def percentile(values: list[int], q: float) -> float:
    """Linear-interpolated percentile of sorted `values` (numpy's default method)."""
    if not values:
        return 0.0
    pos = (len(values) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _vectors(client: Any, index: str, documents: int, sample: int) -> Iterable[Mapping[str, Any]]:
    source = {"_source": [VECTOR_FIELD]}
    if documents <= sample:
        hits = engine_for(client).scan(client, index, {"query": {"match_all": {}}, **source}, size=500)
    else:
        body = {"size": min(sample, MAX_SAMPLE), "query": {"function_score": {"random_score": {}}}, **source}
        hits = client.search(index=index, body=body)["hits"]["hits"]
    for hit in hits:
        yield hit.get("_source", {}).get(VECTOR_FIELD) or {}


def _sizes(client: Any, *names: str) -> list[int]:
    for name in names:
        client.indices.refresh(index=name)
        patient, timeout = engine_for(client).with_timeout(client, 600)
        patient.indices.forcemerge(index=name, max_num_segments=1, **timeout)
        client.indices.flush(index=name)
    stats = client.indices.stats(index=",".join(names), metric="store")["indices"]
    return [int(stats[name]["primaries"]["store"]["size_in_bytes"]) for name in names]


def compare_bm25(client: Any, index: str, docs: int, on_progress: OnProgress | None = None) -> Bm25Comparison:
    """Copy up to `docs` documents with and without the vector field and compare the sizes of the two copies;
    `on_progress("copy", done, total)` as they are read.

    The copy runs through the client (scroll + bulk), not `_reindex`, which lives in a module that minimal
    distributions and some managed offerings lack.
    """
    concrete = aliases.resolve(client, index)[0]
    mapping = dict(client.indices.get_mapping(index=concrete)[concrete]["mappings"])
    analysis = client.indices.get_settings(index=concrete)[concrete]["settings"]["index"].get("analysis")
    settings: dict[str, Any] = {"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}}
    if analysis:
        settings["index"]["analysis"] = analysis
    mapping.pop("_meta", None)
    # BM25 only: without the vector field, the pruned first-phase field and its candidates alike.
    bm25_mapping = {
        **mapping,
        "properties": {k: v for k, v in mapping.get("properties", {}).items() if not is_vector_field(k)},
    }
    tag = uuid.uuid4().hex[:8]
    full, bm25 = f"{concrete}-stats-full-{tag}", f"{concrete}-stats-bm25-{tag}"
    try:
        client.indices.create(index=full, body={"settings": settings, "mappings": mapping})
        client.indices.create(index=bm25, body={"settings": settings, "mappings": bm25_mapping})
        engine = engine_for(client)
        hits = engine.scan(client, concrete, {"query": {"match_all": {}}}, size=500)

        total = min(docs, int(client.count(index=concrete)["count"]))

        def actions() -> Iterator[dict[str, Any]]:
            for done, hit in enumerate(itertools.islice(hits, docs), start=1):
                if on_progress and (done % 500 == 0 or done == total):
                    on_progress("copy", done, total)
                doc = hit.get("_source", {})
                yield {"_index": full, "_id": hit["_id"], "_source": doc}
                yield {
                    "_index": bm25,
                    "_id": hit["_id"],
                    "_source": {k: v for k, v in doc.items() if not is_vector_field(k)},
                }

        results = engine.bulk(client, actions(), chunk_size=500, request_timeout=120)
        failed = [item for ok, item in results if not ok]
        if failed:
            raise EngineError(f"copying documents for the BM25 comparison failed: {failed[0]}")
        client.indices.refresh(index=bm25)
        copied = int(client.count(index=bm25)["count"])
        full_bytes, bm25_bytes = _sizes(client, full, bm25)
    finally:
        client.indices.delete(index=f"{full},{bm25}", ignore_unavailable=True)
    return Bm25Comparison(docs=copied, with_vectors_bytes=full_bytes, bm25_only_bytes=bm25_bytes)


def index_stats(
    client: Any,
    index: str,
    *,
    model_dir: str | Path | None = None,
    sample: int = MAX_SAMPLE,
    bm25_docs: int | None = 50_000,
    on_progress: OnProgress | None = None,
) -> IndexStats:
    """Statistics of index or alias `index`; `bm25_docs=None` skips the BM25-only comparison.
    `on_progress(step, done, total)` follows the work: the documents read for features (`sample`), then those
    copied for the BM25-only comparison (`copy`)."""
    if sample < 1:
        raise ConfigError("--sample must be at least 1")
    vocab_size = None
    if model_dir is not None:
        from splade_os.model.folders import load_manifest

        vocab_size = int(load_manifest(Path(model_dir))["vocab_size"])
    concrete = aliases.resolve(client, index)
    if not concrete:
        raise IndexNotFoundError(f"no index or alias {index!r}: check the name with `splade-os alias {index}`")
    mapping = client.indices.get_mapping(index=index)
    check_vector_field(index, mapping, VECTOR_FIELD, engine=engine_for(client))
    meta = meta_from_mapping(mapping)
    documents = int(client.count(index=index)["count"])
    store = client.indices.stats(index=index, metric="store")["_all"]
    counts: list[int] = []
    distinct: set[str] = set()
    notes: tuple[str, ...] = ()
    # An index built with --no-vectors-in-source cannot give its vectors back: neither counts nor a copy are possible.
    in_source = meta.get("vectors_in_source", True) is not False
    if not in_source:
        notes = (
            "the index keeps vectors out of _source: features per document and the BM25-only comparison "
            "need them (build a copy with vectors to measure them)",
        )
    sampling = documents if documents <= sample else min(sample, MAX_SAMPLE)
    for vector in _vectors(client, index, documents, sample) if in_source else ():
        counts.append(len(vector))
        distinct.update(vector)
        if on_progress and (len(counts) % 500 == 0 or len(counts) == sampling):
            on_progress("sample", len(counts), sampling)
    counts.sort()
    bm25 = compare_bm25(client, index, bm25_docs, on_progress) if bm25_docs and documents and in_source else None
    return IndexStats(
        index=index,
        indices=tuple(concrete),
        documents=documents,
        primary_bytes=int(store["primaries"]["store"]["size_in_bytes"]),
        total_bytes=int(store["total"]["store"]["size_in_bytes"]),
        sampled=len(counts),
        exact=documents <= sample,
        avg_features=sum(counts) / len(counts) if counts else 0.0,
        p50_features=percentile(counts, 50),
        p95_features=percentile(counts, 95),
        max_features=counts[-1] if counts else 0,
        distinct_features=len(distinct),
        vocab_size=vocab_size,
        encoder=(meta.get("encoder") or {}).get("name"),
        bm25=bm25,
        notes=notes,
    )


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    unit = "KiB"
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007  (the unit the loop stops at is the one to print)
        n /= 1024
        if n < 1024:
            break
    return f"{n:.1f} {unit}"


def format_stats(s: IndexStats) -> str:
    how = "all documents" if s.exact else f"a random sample of {plural(s.sampled, 'document')}"
    lines = [
        f"index               {s.index} -> {', '.join(s.indices)}" + (f" (encoder {s.encoder})" if s.encoder else ""),
        f"documents           {s.documents:,}",
        f"size on disk        {_size(s.primary_bytes)} primaries, {_size(s.total_bytes)} with replicas",
    ]
    if s.sampled:
        lines.append(
            f"features per doc    avg {s.avg_features:.1f}, p50 {s.p50_features:.0f}, "
            f"p95 {s.p95_features:.0f}, max {s.max_features} (from {how})"
        )
        coverage = f"{s.distinct_features:,} distinct features"
        if s.vocab_coverage is not None:
            coverage += f" of a {s.vocab_size:,}-token vocabulary ({s.vocab_coverage:.1%})"
        lines.append(f"vocabulary coverage {coverage}" + ("" if s.exact else " in the sample"))
    if s.bm25:
        b = s.bm25
        lines.append(
            f"vs BM25 only        {_size(b.with_vectors_bytes)} with vectors vs {_size(b.bm25_only_bytes)} without "
            f"= {b.ratio:.2f}x (copies of {plural(b.docs, 'document')}, one segment each)"
        )
    lines += [f"note                {n}" for n in s.notes]
    return "\n".join(lines)
