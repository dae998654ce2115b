"""Helpers the test modules share (kept here so no test file copies another's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from conftest import delete_indices
from synthetic_corpus import DEMO_CORPUS

from splade_os.indexing import LoadOptions, index_corpus
from splade_os.indexing.lease import lock_index
from splade_os.vectors import SparseVector

RELATIVE_PRECISION = 2.0**-8  # Lucene keeps 9 significant bits of each stored feature value


def random_docs(vocab: Sequence[str], n: int, seed: int = 7) -> list[SparseVector]:
    """n vectors over `vocab` with some zero and negative weights: those must be dropped before indexing."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        size = int(rng.integers(1, len(vocab) + 1))
        chosen = rng.choice(len(vocab), size=size, replace=False)
        weights = rng.uniform(-0.5, 3.0, size=size).round(3)
        docs.append(SparseVector({vocab[i]: float(w) for i, w in zip(chosen, weights, strict=True)}))
    return docs


def indexed_demo(client: Any, encoder: Any, prefix: str, first_phase_k: int | None = None) -> Iterator[str]:
    """For a fixture: the 42 demo documents in a fresh index named `prefix-<random>` (with the pruned field of
    `first_phase_k`, if given), deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    load = LoadOptions(replicas=0, first_phase_k=first_phase_k)
    summary = index_corpus(client, DEMO_CORPUS, index=name, encoder=encoder, load=load)
    assert summary.problems() == [] and summary.counters.indexed == 42
    yield name
    delete_indices(client, f"{name}*")


def assert_first_phase(client: Any, index: str, k: int, candidates: tuple[int, ...] = ()) -> int:
    """Assert that `index` records a pruned first-phase field of `k` (and candidate fields of `candidates`) in
    `_meta`, maps each as the vector field, and that every document's stored pruned vectors are exactly the top k of
    its full vector; return the document count."""
    from splade_os.engines import engine_for
    from splade_os.mappings import FIRST_PHASE_FIELD, VECTOR_FIELD, candidate_field, read_index_meta

    engine = engine_for(client)
    record = {"field": FIRST_PHASE_FIELD, "top_k": k, **({"candidates": list(candidates)} if candidates else {})}
    assert read_index_meta(client, index)["first_phase"] == record
    fields = {FIRST_PHASE_FIELD: k, **{candidate_field(c): c for c in candidates}}
    for body in client.indices.get_mapping(index=index).values():
        assert all(engine.field_type(body, field) == engine.vector_type for field in fields)
    client.indices.refresh(index=index)
    seen = 0
    for hit in engine.scan(client, index, {"query": {"match_all": {}}}):
        source = hit["_source"]
        full = engine.from_field(source[VECTOR_FIELD])
        for field, top in fields.items():
            assert engine.from_field(source.get(field) or {}) == full.top_k(top), (hit["_id"], field)
        seen += 1
    return seen


def index_tokens(client: Any, index: str) -> dict[str, int]:
    """{token: number of documents of `index` holding it}, counted from the vectors in `_source`."""
    from collections import Counter

    from splade_os.engines import engine_for
    from splade_os.mappings import VECTOR_FIELD

    engine = engine_for(client)
    client.indices.refresh(index=index)
    counts: Counter[str] = Counter()
    for hit in engine.scan(client, index, {"query": {"match_all": {}}}):
        counts.update(engine.from_field(hit["_source"][VECTOR_FIELD]).keys())
    return dict(counts)


def assert_df_exact(client: Any, index: str) -> Any:
    """Assert that the df table of the concrete index behind `index` counts every token the index holds, each at
    the number of documents holding it now, at today's document count; return the table."""
    from splade_os import aliases
    from splade_os.df import read_df

    table = read_df(client, index)
    assert table is not None, f"no df table for {index}"
    assert [table.index] == aliases.resolve(client, index)
    counts = index_tokens(client, index)
    assert table.documents == int(client.count(index=index)["count"])
    assert dict(table.counts) == {t: counts[t] for t in table.tokens if counts.get(t)}
    assert not set(counts) - set(table.tokens), f"tokens of {index} the table never counted"
    return table


def versions_left(client: Any, alias: str) -> list[str]:
    """The indices named after `alias`, but for its lease's lock index (kept, released, between loads)."""
    found = client.indices.get(index=f"{alias}*", allow_no_indices=True, ignore_unavailable=True)
    return [name for name in found if name != lock_index(alias)]
