"""doctor, stats and zero-downtime re-index against a real node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

from splade_os import aliases
from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.doctor import FAIL, OK, SKIP, run_checks
from splade_os.engines import Engine, engine_for, opensearch_privileges
from splade_os.engines.elasticsearch import security_off
from splade_os.engines.refusals import http_status, is_missing_endpoint
from splade_os.indexing import BulkOptions, LoadOptions
from splade_os.indexing.reindex import ReindexResult, reindex
from splade_os.mappings import VECTOR_FIELD
from splade_os.model.encoder import SpladeEncoder
from splade_os.stats import index_stats, percentile

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "splade-tiny"
TEXTS = [
    "learned sparse retrieval expands queries",
    "the alias moves in one atomic request",
    "bm25 scores documents by term statistics",
    "transport layer security protects the cluster",
    "a verified count before every swap",
]


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(MODEL)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS * 2)))
    return path


def _build(
    client: OpenSearch, alias: str, encoder: SpladeEncoder, tmp: Path, *, delete_previous: bool = False, **kwargs: Any
) -> ReindexResult:
    load = LoadOptions(
        replicas=0, dead_letter=tmp / "dl.jsonl", bulk=BulkOptions(batch_size=4), delete_previous=delete_previous
    )
    return reindex(client, alias, encoder, load=load, **kwargs)


def test_reindex_builds_verifies_swaps_and_keeps_or_deletes(
    engine_client: OpenSearch, index_name: str, encoder: SpladeEncoder, corpus: Path, tmp_path: Path
) -> None:
    first = _build(engine_client, index_name, encoder, tmp_path, corpus=corpus)
    assert first.swapped and first.previous == () and first.summary.index == f"{index_name}-v1"
    assert first.problems == [] and first.summary.index_count == len(TEXTS) * 2

    second = _build(engine_client, index_name, encoder, tmp_path)  # from the current version's documents
    assert second.swapped and second.previous == (f"{index_name}-v1",) and second.previous_count == len(TEXTS) * 2
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert engine_client.indices.exists(index=f"{index_name}-v1")  # kept by default, for a rollback
    old = engine_client.get(index=f"{index_name}-v1", id="d3")["_source"][VECTOR_FIELD]
    new = engine_client.get(index=f"{index_name}-v2", id="d3")["_source"][VECTOR_FIELD]
    assert new == pytest.approx(old, rel=1e-6)  # same model, same text: the same vector

    third = _build(engine_client, index_name, encoder, tmp_path, corpus=corpus, delete_previous=True)
    assert third.swapped and third.deleted == (f"{index_name}-v2",)
    assert not engine_client.indices.exists(index=f"{index_name}-v2")
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v3"]
    assert engine_client.count(index=index_name)["count"] == len(TEXTS) * 2


def test_reindex_does_not_swap_when_documents_are_lost(
    engine_client: OpenSearch, index_name: str, encoder: SpladeEncoder, corpus: Path, tmp_path: Path
) -> None:
    _build(engine_client, index_name, encoder, tmp_path, corpus=corpus)
    # A document whose text is not a string cannot be re-encoded: the new version would have one document less.
    engine_client.index(index=f"{index_name}-v1", id="odd", body={"text": 12345}, refresh=True)
    result = _build(engine_client, index_name, encoder, tmp_path)
    assert not result.swapped and result.summary.counters.failed == 1
    assert any("1 documents failed" in p for p in result.problems)
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v1"]  # readers never moved


def test_doctor_passes_and_names_a_different_encoder(
    engine_client: OpenSearch, index_name: str, encoder: SpladeEncoder, corpus: Path, tmp_path: Path
) -> None:
    _build(engine_client, index_name, encoder, tmp_path, corpus=corpus)
    settings = ConnectionSettings.from_env()
    checks = {c.name: c for c in run_checks(settings, index=index_name, model_dir=MODEL)}
    field_check = "mapper-extras" if engine_for(engine_client).name == "opensearch" else "sparse_vector"
    names = ("reachable", "version", field_check, "index", "mapping", "encoder")
    assert [checks[n].status for n in names] == [OK] * 6
    assert checks["max_clause_count"].detail.isdigit() and checks["shards"].status == OK  # 0 replicas: green
    assert checks["privileges"].status == SKIP  # a test node without security: nothing to lack

    other = tmp_path / "other-model"
    other.mkdir()
    manifest = json.loads((MODEL / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "name": "other", "sha256": "0" * 64}))
    shutil.copy(MODEL / "tokenizer.json", other / "tokenizer.json")
    mismatch = {c.name: c for c in run_checks(settings, index=index_name, model_dir=other)}["encoder"]
    assert mismatch.status == FAIL and "built with encoder 'splade-tiny'" in mismatch.detail
    assert "--from-index --model NEW_MODEL" in mismatch.fix


@pytest.mark.opensearch_only
def test_privilege_probes_leave_a_live_index_as_it_was_and_create_nothing(
    engine_client: OpenSearch, index_name: str
) -> None:
    # On a node without security every probe is allowed, so each does what it does to an index it may touch.
    live = f"{index_name}-v1"
    engine_client.indices.create(
        index=live,
        body={"settings": {"index": {"refresh_interval": "-1", "number_of_replicas": 0}}, "aliases": {index_name: {}}},
    )
    engine_client.index(index=live, id="unrefreshed", body={"text": "not yet visible to searchers"})
    flushes = engine_client.indices.stats(index=live, metric="flush")["_all"]["primaries"]["flush"]["total"]
    assert opensearch_privileges.missing_actions(engine_client, index_name, live) == {"index": [], "search": []}
    assert engine_client.count(index=live)["count"] == 0  # not refreshed: a running load stays invisible
    assert engine_client.indices.stats(index=live, metric="flush")["_all"]["primaries"]["flush"]["total"] == flushes
    assert sorted(engine_client.indices.get(index=f"{index_name}*")) == [live]
    assert engine_client.indices.get_alias(name=index_name) == {live: {"aliases": {index_name: {}}}}

    # An alias or index deleted while doctor checks it is not created again by a probe.
    gone = f"{index_name}-gone"
    opensearch_privileges.missing_actions(engine_client, gone, f"{gone}-v1")
    opensearch_privileges.missing_actions(engine_client, gone, gone)
    assert list(engine_client.indices.get(index=f"{gone}*", allow_no_indices=True, ignore_unavailable=True)) == []


def test_only_a_missing_security_api_reads_as_a_cluster_without_security(
    engine_client: Any, engine: Engine, index_name: str
) -> None:
    assert engine.missing_privileges(engine_client, index_name, index_name) is None  # the test node has none
    answered = []  # real errors of APIs that exist: not "no security", whatever their status
    for call in (
        lambda: engine_client.indices.get(index=index_name),  # 404: no such index
        lambda: engine_client.indices.create(index=index_name.upper()),  # 400: invalid name
        lambda: engine_client.search(index=index_name, body={"query": {"no_such_query": {}}}),
    ):
        with pytest.raises(Exception) as caught:
            call()
        answered.append(caught.value)
    assert [http_status(e) for e in answered] == [404, 400, 400]
    assert not any(is_missing_endpoint(e) or security_off(e) for e in answered)


def test_stats_match_the_stored_vectors(
    engine_client: OpenSearch, index_name: str, encoder: SpladeEncoder, corpus: Path, tmp_path: Path
) -> None:
    _build(engine_client, index_name, encoder, tmp_path, corpus=corpus)
    hits = engine_client.search(index=index_name, body={"size": 100})["hits"]["hits"]
    sizes = sorted(len(h["_source"][VECTOR_FIELD]) for h in hits)
    distinct = {k for h in hits for k in h["_source"][VECTOR_FIELD]}

    stats = index_stats(engine_client, index_name, model_dir=MODEL, bm25_docs=100)
    assert stats.documents == len(TEXTS) * 2 and stats.exact and stats.sampled == stats.documents
    assert stats.avg_features == pytest.approx(sum(sizes) / len(sizes))
    assert stats.p95_features == pytest.approx(percentile(sizes, 95)) and stats.max_features == sizes[-1]
    assert stats.distinct_features == len(distinct)
    assert stats.vocab_coverage == pytest.approx(len(distinct) / 30522)
    assert stats.primary_bytes > 0 and stats.encoder == "splade-tiny"
    assert stats.bm25 is not None and stats.bm25.docs == stats.documents
    assert stats.bm25.with_vectors_bytes > stats.bm25.bm25_only_bytes > 0 and stats.bm25.ratio > 1
    assert engine_client.indices.get(index=f"{index_name}*-stats-*", allow_no_indices=True) == {}  # cleaned up

    sampled = index_stats(engine_client, index_name, sample=3, bm25_docs=None)
    assert not sampled.exact and sampled.sampled == 3 and sampled.bm25 is None

    result = CliRunner().invoke(main, ["stats", index_name, "--no-bm25", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["documents"] == len(TEXTS) * 2


def test_percentile_is_linear_interpolation() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5 and percentile([], 95) == 0.0
    assert percentile(list(range(101)), 95) == 95


def test_scripts_reindex_and_roll_back(
    engine_client: OpenSearch, engine: Engine, index_name: str, corpus: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "SPLADE_OS": f"{sys.executable} -m splade_os"}

    def script(*args: str) -> str:
        done = subprocess.run(["bash", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = script(str(REPO / "scripts/reindex.sh"), index_name, str(MODEL), str(corpus))
    assert "verified:" in out and f"documents           {len(TEXTS) * 2}" in out
    script(str(REPO / "scripts/reindex.sh"), index_name, str(MODEL))  # from the index: v2
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert f"-> {index_name}-v1" in script(str(REPO / "scripts/rollback.sh"), index_name)
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v1"]
    said = script(str(REPO / "scripts/backup-mapping.sh"), index_name, "backups/")
    saved = list((tmp_path / "backups").glob("*.mapping.json"))
    assert said.startswith(f"saved backups/{index_name}.") and "//" not in said, said
    assert len(saved) == 1 and engine.vector_type in saved[0].read_text()
