"""What scripts and people rely on, on a real node: JSON summaries on stdout, green indices on one node, missing
things said once, `--optimize` of a live index only with --yes, the query model of an index of vectors checked, and
stats against a real BM25-only copy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner, Result
from synthetic_corpus import DEMO_CORPUS, write_collection

from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FieldNames
from splade_os.errors import IndexNotFoundError
from splade_os.indexing.reindex import reindex
from splade_os.indexing.sources import IndexSource
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher
from splade_os.stats import index_stats

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")
INT8 = str(REPO / "models" / "splade-tiny-int8")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def load(corpus: Path | str, alias: str, *extra: str) -> Result:
    return cli(
        "index",
        str(corpus),
        "--index",
        alias,
        "--model",
        MODEL,
        "--dead-letter",
        f"{alias}.dl.jsonl",
        "--checkpoint",
        f"{alias}.cp.json",
        "--no-progress",
        *extra,
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _health(client: Any, index: str) -> str:
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline:
        status = str(client.cluster.health(index=index)["status"])
        if status == "green":
            break
        time.sleep(0.5)
    return status


def test_index_json_summary_and_a_green_index_on_one_node(engine_client: Any, index_name: str, here: Path) -> None:
    result = load(DEMO_CORPUS, index_name, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    assert summary["counters"]["indexed"] == 42 and summary["verified"] and summary["problems"] == []
    assert summary["swapped"] is None and summary["index"] == f"{index_name}-v1"
    settings = engine_client.indices.get_settings(index=summary["index"])[summary["index"]]["settings"]["index"]
    assert settings["auto_expand_replicas"] == "0-1"
    assert _health(engine_client, summary["index"]) == "green"
    again = load(DEMO_CORPUS, index_name, "--recreate", "--replicas", "1", "--json")
    second = json.loads(again.stdout)
    assert second["swapped"] == {"index": f"{index_name}-v2", "previous": [f"{index_name}-v1"], "deleted": []}
    settings = engine_client.indices.get_settings(index=second["index"])[second["index"]]["settings"]["index"]
    assert settings["number_of_replicas"] == "1" and "auto_expand_replicas" not in settings
    shown = json.loads(cli("alias", index_name, "--json").stdout)
    assert shown == {
        "name": index_name,
        "kind": "alias",
        "indices": [f"{index_name}-v2"],
        "other_versions": [f"{index_name}-v1"],
    }
    merged = json.loads(cli("merge", f"{index_name}-v1", "--json").stdout)
    assert merged["index"] == f"{index_name}-v1" and merged["after"] == 1
    tokens = here / "tokens.txt"
    tokens.write_text("heart\nattack\nzzzznothing\n")
    counted = json.loads(cli("df", index_name, "--tokens", str(tokens), "--json").stdout)
    assert counted["index"] == f"{index_name}-v2" and counted["tokens_with_df"] == 2 and counted["documents"] == 42


def test_missing_index_and_alias_are_said_once(engine_client: Any, index_name: str) -> None:
    doctor = cli("doctor", "--index", index_name)
    assert doctor.exit_code == 1
    assert doctor.stdout.count("FAIL") == 1, doctor.stdout
    assert f"FAIL  index             no index or alias {index_name!r}" in doctor.stdout
    assert "408" not in doctor.stdout and "permissions" not in doctor.stdout
    shown = cli("alias", index_name)
    assert shown.exit_code == 1
    assert shown.stderr == (
        f"Error: no index or alias {index_name!r}: build it with `splade-os index CORPUS --index "
        f"{index_name}`, or point it at an index with `splade-os alias {index_name} INDEX`\n"
    )
    with pytest.raises(IndexNotFoundError):
        Searcher(index_name, MODEL, settings=ConnectionSettings.from_env())
    with pytest.raises(IndexNotFoundError):
        index_stats(engine_client, index_name)
    with pytest.raises(IndexNotFoundError, match=f"cannot re-encode {index_name!r}: no index or alias of that name"):
        IndexSource(engine_client, index_name, FieldNames(), 10)
    with pytest.raises(IndexNotFoundError, match=f"nothing to re-encode: no index or alias {index_name!r}"):
        reindex(engine_client, index_name, SpladeEncoder(MODEL))


def test_optimize_into_the_live_version_asks_for_yes(engine_client: Any, index_name: str, here: Path) -> None:
    assert load(DEMO_CORPUS, index_name).exit_code == 0
    refused = load(DEMO_CORPUS, index_name, "--optimize")
    assert refused.exit_code == 1
    assert f"{index_name!r} is an alias: a force-merge of a live index costs I/O and CPU" in refused.stderr
    assert "Pass --yes to merge it anyway" in refused.stderr
    done = load(DEMO_CORPUS, index_name, "--optimize", "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert any(note.startswith(f"merged {index_name}-v1 from ") for note in json.loads(done.stdout)["notes"])


def test_an_index_of_vectors_checks_the_query_model(engine_client: Any, index_name: str, here: Path) -> None:
    vectors = here / "vectors.jsonl"
    assert cli("encode", str(DEMO_CORPUS), "--model", MODEL, "--output", str(vectors), "--no-progress").exit_code == 0
    built = cli("index", str(vectors), "--index", index_name, "--vectors", "--model", MODEL, "--no-progress")
    assert built.exit_code == 0, built.output
    assert cli("search", "heart attack", "--index", index_name, "--model", MODEL).exit_code == 0
    other = cli("search", "heart attack", "--index", index_name, "--model", INT8)
    assert other.exit_code == 1 and f"index {index_name!r} holds vectors made by 'splade-tiny'" in other.stderr
    hits = json.loads(cli("search", "heart attack", "--index", index_name, "--model", MODEL, "--json").stdout)
    assert hits["hits"][0]["title"] == "Heart attack warning signs"  # the title came through encode
    unchecked = cli("index", str(vectors), "--index", f"{index_name}-plain", "--vectors", "--no-progress")
    assert unchecked.exit_code == 0, unchecked.output
    assert unchecked.stderr.startswith("warning: --vectors without --model: the vectors' tokens are not checked")


def test_stats_compares_against_a_copy_without_vector_fields(engine_client: Any, index_name: str, here: Path) -> None:
    assert load(DEMO_CORPUS, index_name, "--first-phase-k", "128").exit_code == 0  # with the pruned field
    assert load(DEMO_CORPUS, f"{index_name}-plain", "--no-first-phase").exit_code == 0
    two_step = index_stats(engine_client, index_name)
    plain = index_stats(engine_client, f"{index_name}-plain")
    assert two_step.bm25 is not None and plain.bm25 is not None
    # The same 42 documents without vectors: the same size, whatever vector fields the index holds.
    assert abs(two_step.bm25.bm25_only_bytes - plain.bm25.bm25_only_bytes) <= 0.1 * plain.bm25.bm25_only_bytes
    assert two_step.bm25.ratio > plain.bm25.ratio


def _progress_lines(stderr: str, name: str) -> list[str]:
    assert "\r" not in stderr  # plain lines off a terminal, never a carriage return
    return [line for line in stderr.splitlines() if line.startswith(f"{name}: ")]


def test_eval_tune_stats_and_reindex_print_progress_and_json(engine_client: Any, index_name: str, here: Path) -> None:
    beir = write_collection(here / "beir", documents=60)
    queries = sum(1 for line in (beir / "queries.jsonl").read_text().splitlines() if line.strip())
    ran = cli(
        "eval", str(beir), "--model", MODEL, "--index", index_name, "--mode", "splade", "--json", "--log-every", "0"
    )
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)  # stdout holds the JSON alone; progress goes to stderr
    assert report["index"] == index_name and [m["mode"] for m in report["modes"]] == ["splade"]
    assert set(report["modes"][0]["metrics"]) == {"nDCG@10", "R@100", "RR@10"}
    assert _progress_lines(ran.stderr, "eval index")[-1].startswith("eval index: 60 documents")
    assert _progress_lines(ran.stderr, "eval splade")[-1].startswith(f"eval splade: {queries:,} of {queries:,} queries")
    quiet = cli("eval", str(beir), "--model", MODEL, "--index", index_name, "--mode", "splade", "--no-progress")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr

    shown = cli("stats", index_name, "--json", "--log-every", "0")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["documents"] == 60
    assert _progress_lines(shown.stderr, "stats sample")[-1].startswith("stats sample: 60 of 60 documents (100%")
    assert _progress_lines(shown.stderr, "stats copy")[-1].startswith("stats copy: 60 of 60 documents (100%")

    asked = here / "queries.jsonl"
    asked.write_text(
        "".join(
            json.dumps({"_id": f"q{n}", "text": text}) + "\n"
            for n, text in enumerate(["heart attack", "solar power", "coffee"])
        )
    )
    tuned = cli(
        "tune",
        index_name,
        "--model",
        MODEL,
        "--queries",
        str(asked),
        "--target",
        "0.5",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--dry-run",
        "--json",
        "--log-every",
        "0",
    )
    assert tuned.exit_code == 0, tuned.output
    settings = 1 + len(json.loads(tuned.stdout)["trials"])  # exact search and each setting, one pass
    assert _progress_lines(tuned.stderr, "tune queries")[-1].startswith("tune queries: 3 of 3 queries (100%")
    assert _progress_lines(tuned.stderr, "tune settings")[-1].startswith(
        f"tune settings: {settings} of {settings} settings (100%"
    )

    moved = cli("reindex", index_name, "--from-index", "--model", MODEL, "--json", "--dead-letter", "dl.jsonl")
    assert moved.exit_code == 0, moved.output
    summary = json.loads(moved.stdout)
    assert summary["alias_moved"] and summary["previous"] == [f"{index_name}-v1"] and summary["previous_count"] == 60
    assert summary["index"] == f"{index_name}-v2" and summary["counters"]["indexed"] == 60


def test_node_start_json_on_the_node_under_test(engine: Any, tmp_path: Path) -> None:
    port = urlparse(ConnectionSettings.from_env().urls[0]).port or 9200
    version = ".".join(str(part) for part in engine.version)
    started = cli(
        "node",
        "start",
        "--engine",
        engine.name,
        "--version",
        version,
        "--port",
        str(port),
        "--home",
        str(tmp_path),
        "--json",
    )
    assert started.exit_code == 0, started.output
    info = json.loads(started.stdout)  # the node answering there, reused, as JSON alone
    assert info["reused"] is True and info["url"] == f"http://127.0.0.1:{port}"
    assert (info["engine"], info["version"], info["new_passwords"]) == (engine.name, version, [])
