"""Bulk indexing against a real node: what landed is checked document by document, not only the summary.

`FakeEncoder` replaces the MODEL only (fast and deterministic); the engine is always the real node. One test runs
the real bundled model end to end through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, state_file, unavailable
from opensearchpy import OpenSearch
from synthetic_corpus import write_collection

from splade_os import aliases
from splade_os.cli.index import alias as alias_command
from splade_os.cli.index import index as index_command
from splade_os.engines import engine_for
from splade_os.errors import EncoderMismatchError
from splade_os.indexing import BulkOptions, LoadOptions, Progress, index_corpus, reencode_index
from splade_os.mappings import VECTOR_FIELD, read_index_meta
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

SMALL = BulkOptions(batch_size=16, initial_backoff=0.05, max_backoff=0.5, retry_for=10)


class FakeEncoder:
    """Every word and punctuation mark weighs 0.5 + crc32(word) % 100 / 50; texts over `limit` count as truncated."""

    def __init__(self, *, salt: str = "", delay: float = 0.0, limit: int = 20_000) -> None:
        self.manifest = {"name": f"fake{salt}", "sha256": f"{zlib.crc32(salt.encode()):064x}"}
        self.salt, self.delay, self.limit = salt, delay, limit
        self.truncated = 0
        self.calls = self.encoded = 0

    def vector(self, text: str) -> SparseVector:
        words = re.findall(r"\w+|[^\w\s]", text.lower()[: self.limit])
        return SparseVector({w: 0.5 + zlib.crc32((self.salt + w).encode()) % 100 / 50 for w in words})

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        self.calls += 1
        self.encoded += len(texts)
        time.sleep(self.delay)
        self.truncated += sum(len(t) > self.limit for t in texts)
        return [self.vector(t) for t in texts]


def die_once_landed(doc_id: str, marker: str = "") -> None:
    """Make this process die (os._exit: no clean-up, no answer) right after the batch holding `doc_id` has landed,
    before its checkpoint or the driver records it: a crash at that instant. With `marker`, only the first time."""
    from splade_os.indexing.pipeline import Loader

    send = Loader._send

    def send_then_die(self: Loader, actions: list[dict[str, Any]]) -> Any:
        results = send(self, actions)
        if any(a["_id"] == doc_id for a in actions) and not (marker and os.path.exists(marker)):
            if marker:
                Path(marker).touch()
            os._exit(3)
        return results

    Loader._send = send_then_die  # type: ignore[method-assign]


def make_docs(n: int, prefix: str = "d") -> list[dict[str, Any]]:
    # Dotted tokens (u.s.) and a non-ASCII word: the keys that trip naive stores.
    return [
        {"_id": f"{prefix}{i}", "title": f"Title {i}", "text": f"u.s. café number {i} text {i % 7}"} for i in range(n)
    ]


def write_jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def landed(client: OpenSearch, index: str) -> dict[str, dict[str, Any]]:
    """Every document in the index by `_id`, with its source; fails on an `_id` seen twice."""
    client.indices.refresh(index=index)
    found: dict[str, dict[str, Any]] = {}
    for hit in engine_for(client).scan(client, index, {"query": {"match_all": {}}}):
        assert hit["_id"] not in found, f"{hit['_id']} is in the index twice"
        found[hit["_id"]] = hit["_source"]
    return found


def assert_exactly(client: OpenSearch, index: str, docs: list[dict[str, Any]], encoder: FakeEncoder) -> None:
    got = landed(client, index)
    assert sorted(got) == sorted(d["_id"] for d in docs)
    for doc in docs:
        source = got[doc["_id"]]
        assert (source["doc_id"], source["title"], source["text"]) == (doc["_id"], doc["title"], doc["text"])
        assert source[VECTOR_FIELD] == engine_for(client).to_field(encoder.vector(f"{doc['title']} {doc['text']}"))


def test_load_writes_every_document_once_through_a_versioned_alias(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(100)
    encoder = FakeEncoder()
    checkpoint, dead = tmp_path / "cp.json", tmp_path / "dead.jsonl"
    summary = index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", docs),
        index=index_name,
        encoder=encoder,
        load=LoadOptions(replicas=0, checkpoint=checkpoint, dead_letter=dead, bulk=SMALL),
    )

    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (100, 100, 0, 0)
    assert summary.verified and summary.problems() == [] and summary.index_count == 100
    assert summary.index == f"{index_name}-v1" and aliases.resolve(engine_client, index_name) == [summary.index]
    assert_exactly(engine_client, index_name, docs, encoder)
    keys = set(landed(engine_client, index_name)["d1"][VECTOR_FIELD])
    if engine_for(engine_client).name == "opensearch":
        assert all("." not in key for key in keys)  # rank_features keys are escaped
    else:
        assert "." in keys  # sparse_vector takes dotted tokens as they are
    assert read_index_meta(engine_client, index_name)["encoder"] == {"name": "fake", "sha256": "0" * 64}
    settings = engine_client.indices.get_settings(index=summary.index, name="index.refresh_interval")
    assert settings[summary.index]["settings"]["index"]["refresh_interval"] == "1s"  # restored after the load
    assert encoder.calls == 7  # 100 documents in batches of 16
    assert not checkpoint.exists() and not dead.exists() and summary.dead_letter is None


def test_rerun_replaces_in_place_and_recreate_switches_the_alias(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(40)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    load = LoadOptions(replicas=0, checkpoint=tmp_path / "cp", bulk=SMALL)
    index_corpus(
        engine_client, corpus, index=index_name, encoder=FakeEncoder(), load=replace(load, dead_letter=tmp_path / "d1")
    )

    again = index_corpus(
        engine_client, corpus, index=index_name, encoder=FakeEncoder(), load=replace(load, dead_letter=tmp_path / "d2")
    )
    assert again.index == f"{index_name}-v1" and again.verified
    assert (again.counters.indexed, again.counters.replaced, again.index_count) == (40, 40, 40)

    docs[0]["text"] = "changed"
    write_jsonl(corpus, docs)
    fresh = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=replace(load, dead_letter=tmp_path / "d3", recreate=True),
    )
    assert fresh.index == f"{index_name}-v2" and fresh.verified
    assert fresh.swapped is not None and fresh.swapped.previous == (f"{index_name}-v1",)
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert engine_client.indices.exists(index=f"{index_name}-v1")  # kept: deleting it is an explicit choice
    assert landed(engine_client, index_name)["d0"]["text"] == "changed"


def test_an_index_built_by_another_encoder_is_refused(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(5))
    load = LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL)
    index_corpus(engine_client, corpus, index=index_name, encoder=FakeEncoder(), load=load)
    other = FakeEncoder(salt="other")
    with pytest.raises(EncoderMismatchError) as refused:
        index_corpus(engine_client, corpus, index=index_name, encoder=other, load=load)
    message = str(refused.value)
    assert message.startswith(f"index '{index_name}-v1' was built with encoder 'fake' (sha256 {'0' * 12}), but ")
    assert "encoder is 'fakeother'" in message
    assert message.endswith("Use the same model folder, or pass --force if the vocabularies match.")
    assert other.encoded == 0  # refused before a single document was encoded or written


def test_count_mismatch_is_reported(engine_client: OpenSearch, index_name: str, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(20))

    def intruder(progress: Progress) -> None:  # another writer adds a document while the load runs
        engine_client.index(index=f"{index_name}-v1", id="intruder", body={"text": "not from the corpus"})

    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
        on_progress=intruder,
    )
    assert not summary.verified
    assert summary.problems() == [
        f"count mismatch: {index_name}-v1 holds 21 documents; expected read 20 - failed 0 - skipped 0 = 20. "
        "Look at the dead-letter file and the cluster's logs"
    ]


def test_reencode_reads_an_index_and_switches_readers_to_the_new_vectors(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(50)
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", docs),
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
    )
    new_model = FakeEncoder(salt="v2")
    summary = reencode_index(
        engine_client,
        index_name,
        index=index_name,
        encoder=new_model,
        load=LoadOptions(recreate=True, replicas=0, dead_letter=tmp_path / "d2", bulk=SMALL),
    )
    assert summary.verified and summary.counters.indexed == 50
    assert summary.index == f"{index_name}-v2" and aliases.resolve(engine_client, index_name) == [summary.index]
    assert engine_client.indices.exists(index=f"{index_name}-v1")  # kept: a re-encode is easy to roll back
    assert_exactly(engine_client, index_name, docs, new_model)
    assert read_index_meta(engine_client, index_name)["encoder"]["name"] == "fakev2"


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads `SpladeEncoder(model_dir, ...)`; swap in the fake model for CLI plumbing tests."""
    import splade_os.model.encoder

    monkeypatch.setattr(splade_os.model.encoder, "SpladeEncoder", lambda *a, **k: FakeEncoder())


def _cli(args: list[str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(
        index_command, ["--model", "unused", "--replicas", "0", "--log-every", "0", *args], input=stdin
    )


@pytest.mark.usefixtures("fake_model")
def test_cli_reads_csv_tsv_beir_folder_and_stdin(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # checkpoints and dead letters default to the current folder
    (tmp_path / "docs.csv").write_text('id,title,body\n1,A,"first, with comma"\n2,B,second\n')
    (tmp_path / "docs.tsv").write_text("1\tfirst\n2\tsecond\n3\tthird\n")
    (tmp_path / "beir").mkdir()
    write_jsonl(tmp_path / "beir" / "corpus.jsonl", make_docs(4))
    runs = {
        "csv": (["docs.csv", "--id-field", "id", "--text-field", "body"], None, 2),
        "tsv": (["docs.tsv", "--columns", "_id,text"], None, 3),
        "beir": (["beir"], None, 4),
        "stdin": (["-"], "".join(json.dumps(d) + "\n" for d in make_docs(5)), 5),
    }
    for suffix, (args, stdin, expected) in runs.items():
        result = _cli([*args, "--index", f"{index_name}-{suffix}"], stdin)
        assert result.exit_code == 0, result.output
        assert f"verified: {index_name}-{suffix}-v1 holds {expected} documents" in result.stdout
        assert "docs/s" in result.stderr  # plain progress lines off a terminal
        assert engine_client.count(index=f"{index_name}-{suffix}")["count"] == expected
    assert landed(engine_client, f"{index_name}-csv")["1"]["text"] == "first, with comma"


@pytest.mark.usefixtures("fake_model")
def test_cli_refuses_to_restart_over_an_interrupted_run(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "c.jsonl", make_docs(3))
    left = state_file(engine_client, index_name, "checkpoint.json")  # in the state folder, not the current one
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_text("{}")
    result = _cli(["c.jsonl", "--index", index_name])
    assert result.exit_code == 1
    assert f"an interrupted run left {left}: pass --resume" in result.output
    result = _cli(["c.jsonl", "--index", index_name, "--recreate"])
    assert result.exit_code == 0, result.output
    result = _cli(["c.jsonl", "--index", index_name, "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output


def test_alias_command_shows_and_switches(engine_client: OpenSearch, index_name: str) -> None:
    for version in (1, 2):
        engine_client.indices.create(index=f"{index_name}-v{version}", body={"settings": {"number_of_replicas": 0}})
    aliases.swap(engine_client, index_name, f"{index_name}-v1")
    shown = CliRunner().invoke(alias_command, [index_name])
    assert shown.output.splitlines() == [f"{index_name} (alias) -> {index_name}-v1", f"other versions: {index_name}-v2"]
    switched = CliRunner().invoke(alias_command, [index_name, f"{index_name}-v2", "--delete-previous"])
    assert switched.exit_code == 0, switched.output
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert not engine_client.indices.exists(index=f"{index_name}-v1")
    missing = CliRunner().invoke(alias_command, [index_name, "nope"])
    assert missing.exit_code == 1 and "no index of that name exists" in missing.output


def test_real_model_end_to_end(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (BUNDLED_MODEL / "manifest.json").is_file():
        unavailable(f"no exported model at {BUNDLED_MODEL}")
    monkeypatch.chdir(tmp_path)
    corpus = write_collection(tmp_path, documents=64) / "corpus.jsonl"  # the demo corpus and 22 recombinations
    lines = corpus.read_text(encoding="utf-8").splitlines()
    result = CliRunner().invoke(
        index_command, [corpus.name, "--index", index_name, "--model", str(BUNDLED_MODEL), "--replicas", "0"]
    )
    assert result.exit_code == 0, result.output
    assert f"verified: {index_name}-v1 holds 64 documents" in result.stdout
    docs = landed(engine_client, index_name)
    first = json.loads(lines[0])
    assert len(docs) == 64 and docs[first["_id"]]["title"] == first["title"]
    assert all(doc[VECTOR_FIELD] and all(w > 0 for w in doc[VECTOR_FIELD].values()) for doc in docs.values())


def test_the_document_pruning_of_the_encoder_is_recorded_in_meta(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    from splade_os.model.encoder import SpladeEncoder

    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(3))
    pruned = SpladeEncoder(BUNDLED_MODEL, top_k=20, min_weight=0.1)
    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=pruned,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
    )
    assert summary.verified
    assert read_index_meta(engine_client, index_name)["pruning"] == {"top_k": 20, "min_weight": 0.1}
    stored = landed(engine_client, index_name)
    assert all(0 < len(doc[VECTOR_FIELD]) <= 20 and min(doc[VECTOR_FIELD].values()) >= 0.1 for doc in stored.values())
