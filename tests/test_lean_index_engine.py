"""Smaller indices against a real node: vectors left out of `_source`, and document pruning by ratio.

An index built with `--no-vectors-in-source` must score exactly like one that keeps them (the postings are the
same), say so in `_meta`, keep explanations working (by re-encoding the hit's text with the recorded pruning),
and keep its choice through a re-encode. How much disk it saves is measured by benchmarks/scale.py
(`--source-split`): the engine keeps a recovery copy of the full source until its retention leases move on and a
merge drops it, so a freshly built index is not yet smaller.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, delete_indices
from opensearchpy import OpenSearch
from synthetic_corpus import write_collection

from splade_os import aliases
from splade_os.cli.index import index as index_command
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.mappings import VECTOR_FIELD, read_index_meta
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher

pytestmark = pytest.mark.engine

QUERIES = ["protein folding in cells", "vaccine trial results", "gene expression and cancer risk"]
PRECISION = 2.0**-8  # Lucene keeps 9 significant bits of a stored weight: each contribution is off by at most this


def _index(corpus: Path, alias: str, *extra: str) -> None:
    args = [str(corpus), "--index", alias, "--model", str(BUNDLED_MODEL), "--replicas", "0", *extra]
    result = CliRunner().invoke(index_command, args)
    assert result.exit_code == 0, result.output


@pytest.fixture
def built(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """The same 48 documents, pruned the same way, with and without the vectors in `_source`."""
    monkeypatch.chdir(tmp_path)
    corpus = write_collection(tmp_path, documents=48) / "corpus.jsonl"
    full, lean = f"{index_name}-full", f"{index_name}-lean"
    _index(corpus, full, "--prune-ratio", "0.1", "--top-k", "60")
    _index(corpus, lean, "--prune-ratio", "0.1", "--top-k", "60", "--no-vectors-in-source")
    return full, lean


def test_a_lean_index_records_its_choices_and_returns_no_vectors(
    engine_client: OpenSearch, built: tuple[str, str]
) -> None:
    full, lean = built
    (lean_index,) = aliases.resolve(engine_client, lean)
    meta = read_index_meta(engine_client, lean_index)
    assert meta["vectors_in_source"] is False and meta["pruning"] == {"top_k": 60, "max_ratio": 0.1}
    assert read_index_meta(engine_client, aliases.resolve(engine_client, full)[0])["vectors_in_source"] is True
    hits = engine_client.search(index=lean, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    assert len(hits) == 48 and all(VECTOR_FIELD not in h["_source"] and h["_source"]["text"] for h in hits)
    # Pruning by ratio held at index time: no stored weight of the full index is under 0.1 x its largest.
    stored = engine_client.search(index=full, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    for hit in stored:
        weights = hit["_source"][VECTOR_FIELD].values()
        assert 0 < len(weights) <= 60 and min(weights) >= 0.1 * max(weights)


def test_a_lean_index_ranks_and_explains_like_a_full_one(engine_client: OpenSearch, built: tuple[str, str]) -> None:
    full, lean = built
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        with (
            Searcher(full, encoder, client=engine_client) as on_full,
            Searcher(lean, encoder, client=engine_client) as on_lean,
        ):
            for query in QUERIES:
                a = on_full.search(query, k=5, mode="splade", explain=True)
                b = on_lean.search(query, k=5, mode="splade", explain=True)
                assert [h.id for h in a.hits] == [h.id for h in b.hits]
                assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], rel=1e-6)
                for x, y in zip(a.hits, b.hits, strict=True):
                    assert VECTOR_FIELD not in y.source and y.explanation
                    assert x.explanation is not None, "explain=True gives every hit its explanation"
                    assert dict(y.explanation) == pytest.approx(dict(x.explanation), rel=1e-5)
                    # The re-encoded contributions add up to the engine's score (Lucene stores weights rounded).
                    assert sum(w for _, w in y.explanation) == pytest.approx(y.score, rel=1e-2)


def _assert_explanations_add_up(client: OpenSearch, index: str, queries: list[str]) -> None:
    """Explanations on an index without vectors in `_source` sum to the engine's scores, with a searcher whose own
    encoder cuts texts differently (the model's full length, truncating) from the encoder that built the index."""
    with SpladeEncoder(BUNDLED_MODEL) as encoder, Searcher(index, encoder, client=client) as searcher:
        for query in queries:
            hits = searcher.search(query, k=10, mode="splade", explain=True).hits
            assert hits, query
            for hit in hits:
                explained = sum(w for _, w in hit.explanation or [])
                assert abs(hit.score - explained) <= PRECISION * explained, (query, hit.id, hit.score, explained)
        assert encoder.max_length == 512 and encoder.long_documents == "truncate"


@pytest.mark.parametrize("how", ["cli-truncate", "split"])
def test_explanations_re_encode_with_the_settings_the_index_was_built_with(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Documents of the collection are longer than 16 tokens: encoded at the searcher's length, their
    contributions would add up to about twice the score."""
    monkeypatch.chdir(tmp_path)
    corpus = write_collection(tmp_path, documents=48) / "corpus.jsonl"
    if how == "cli-truncate":
        _index(corpus, index_name, "--max-length", "16", "--no-vectors-in-source")
        recorded = {"max_length": 16, "long_documents": "truncate"}
    else:  # the CLI has no --stride, and the default overlap (64 tokens) does not fit in windows of 16
        with SpladeEncoder(BUNDLED_MODEL, max_length=16, long_documents="split", stride=4) as built_with:
            summary = index_corpus(
                engine_client,
                corpus,
                index=index_name,
                encoder=built_with,
                load=LoadOptions(replicas=0, vectors_in_source=False),
            )
        assert summary.problems() == []
        recorded = {"max_length": 16, "long_documents": "split", "stride": 4}
    assert read_index_meta(engine_client, index_name)["encoding"] == recorded
    _assert_explanations_add_up(engine_client, index_name, QUERIES)


def test_explanations_of_a_re_encode_use_the_fields_it_was_encoded_from(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = write_collection(tmp_path, documents=48) / "corpus.jsonl"
    source, copy = f"{index_name}-src", f"{index_name}-new"
    _index(corpus, source, "--prune-ratio", "0.1")
    # Each document's text again under other names, shifted by one: the vectors come from another document's text.
    hits = engine_client.search(index=source, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    ordered = sorted(hits, key=lambda h: h["_id"])
    for hit, other in zip(ordered, ordered[1:] + ordered[:1], strict=True):
        fields = {"body": other["_source"]["text"], "headline": other["_source"]["title"]}
        engine_client.update(index=source, id=hit["_id"], body={"doc": fields})
    engine_client.indices.refresh(index=source)
    result = CliRunner().invoke(
        index_command,
        [
            "--from-index",
            source,
            "--index",
            copy,
            "--text-field",
            "body",
            "--title-field",
            "headline",
            "--max-length",
            "16",
            "--no-vectors-in-source",
            "--model",
            str(BUNDLED_MODEL),
            "--replicas",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = read_index_meta(engine_client, copy)
    assert meta["encoded_from"] == {"text": "body", "title": "headline"} and meta["vectors_in_source"] is False
    _assert_explanations_add_up(engine_client, copy, QUERIES)


def test_a_re_encode_keeps_vectors_out_of_source(
    engine_client: OpenSearch, built: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, lean = built
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        index_command,
        ["--from-index", lean, "--index", lean, "--recreate", "--model", str(BUNDLED_MODEL), "--replicas", "0"],
    )
    assert result.exit_code == 0, result.output
    (current,) = aliases.resolve(engine_client, lean)
    assert current.endswith("-v2") and read_index_meta(engine_client, current)["vectors_in_source"] is False
    assert int(engine_client.count(index=lean)["count"]) == 48
    delete_indices(engine_client, f"{lean}*")


def test_stats_says_what_a_lean_index_cannot_report(engine_client: OpenSearch, built: tuple[str, str]) -> None:
    from splade_os.stats import format_stats, index_stats

    full, lean = built
    on_full, on_lean = index_stats(engine_client, full, bm25_docs=100), index_stats(engine_client, lean, bm25_docs=100)
    assert on_full.sampled == 48 and on_full.bm25 is not None and not on_full.notes
    assert on_lean.documents == 48 and on_lean.sampled == 0 and on_lean.bm25 is None
    text = format_stats(on_lean)
    assert "keeps vectors out of _source" in text and "features per doc    avg" not in text
