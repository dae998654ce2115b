"""Paths that used to lose documents or leave state behind, each against a real node.

Re-encoding an index copies every document and keeps the previous version; a load that fails, at setup or half-way,
stops its sender thread, closes its files and leaves no index that never refreshes; the caller's client is never
changed or closed; a corrupt checkpoint and a broken encoder each stop with one clear error.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL
from opensearchpy import OpenSearch
from test_indexing_engine import SMALL, FakeEncoder, landed, make_docs, write_jsonl

from splade_os import aliases
from splade_os.cli.index import index as index_command
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import client_for
from splade_os.errors import ConfigError, EngineError, ModelError
from splade_os.indexing import LoadOptions, Progress, index_corpus, reencode_index
from splade_os.retrieval.search import Searcher
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine


class FailingEncoder(FakeEncoder):
    """Raises for texts containing `poison`; after `break_after` calls it raises for everything (a dead provider)."""

    def __init__(self, *, break_after: int | None = None, salt: str = "") -> None:
        super().__init__(salt=salt)
        self.break_after = break_after

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        if self.break_after is not None and self.calls >= self.break_after:
            self.calls += 1
            raise RuntimeError("CUDA error: the execution provider is gone")
        if any("poison" in t for t in texts):
            self.calls += 1
            raise ValueError("cannot encode this text")
        return super().encode_documents(texts)


def _refresh_interval(client: OpenSearch, index: str) -> Any:
    settings = client.indices.get_settings(index=index, name="index.refresh_interval")
    return settings[index]["settings"].get("index", {}).get("refresh_interval")


def _bulk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "splade-os-bulk" and t.is_alive()]


def _open_files() -> set[str]:
    fds = Path("/proc/self/fd")
    found = set()
    for fd in fds.iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


def _docs_with_an_empty_text() -> list[dict[str, Any]]:
    docs = make_docs(3)
    docs[1]["text"] = ""
    docs[1]["title"] = ""
    return docs


def test_cli_reencode_with_recreate_copies_empty_texts_and_keeps_the_previous_version(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", _docs_with_an_empty_text())
    args = ["--model", str(BUNDLED_MODEL), "--replicas", "0", "--log-every", "0", "--index", index_name]
    first = CliRunner().invoke(
        index_command,
        [
            str(corpus),
            "--index-empty",
            "--dead-letter",
            str(tmp_path / "d1"),
            "--checkpoint",
            str(tmp_path / "cp"),
            *args,
        ],
    )
    assert first.exit_code == 0, first.output
    assert engine_client.count(index=index_name)["count"] == 3

    again = CliRunner().invoke(
        index_command, ["--from-index", index_name, "--recreate", "--dead-letter", str(tmp_path / "d2"), *args]
    )
    assert again.exit_code == 0, again.output
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert sorted(landed(engine_client, index_name)) == ["d0", "d1", "d2"]  # the empty one too
    assert landed(engine_client, index_name)["d1"]["text"] == ""
    assert engine_client.count(index=f"{index_name}-v1")["count"] == 3  # the previous version is kept
    assert "skipped 0" in again.output and "deleted previous index" not in again.output


def test_cli_delete_previous_is_an_explicit_choice(engine_client: OpenSearch, index_name: str, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(4))
    args = ["--model", str(BUNDLED_MODEL), "--replicas", "0", "--index", index_name]
    args += ["--checkpoint", str(tmp_path / "c")]
    assert CliRunner().invoke(index_command, [str(corpus), *args]).exit_code == 0
    both = CliRunner().invoke(index_command, [str(corpus), "--recreate", "--keep-previous", "--delete-previous", *args])
    assert both.exit_code == 2 and "contradict each other" in both.output  # a usage error, as click's own
    done = CliRunner().invoke(index_command, [str(corpus), "--recreate", "--delete-previous", *args])
    assert done.exit_code == 0, done.output
    assert not engine_client.indices.exists(index=f"{index_name}-v1")
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]


def test_a_short_reencode_does_not_move_the_alias(engine_client: OpenSearch, index_name: str, tmp_path: Path) -> None:
    docs = make_docs(20)
    docs[7]["text"] = "poison pill"
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", docs),
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
    )
    summary = reencode_index(
        engine_client,
        index_name,
        index=index_name,
        encoder=FailingEncoder(salt="v2"),
        load=LoadOptions(recreate=True, replicas=0, dead_letter=tmp_path / "d2", bulk=SMALL),
    )
    assert summary.counters.failed == 1 and summary.index_count == 19
    # Every document accounted for (the failed one is in the dead letters), so no count mismatch; the failure alone
    # keeps the alias where it was.
    assert summary.verified and summary.swapped is None
    assert "the source held 20" in summary.verification
    assert summary.problems() == [f"1 documents failed; see {tmp_path / 'd2'} (pass --allow-failures to accept)"]
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v1"]  # readers keep every document
    letters = [json.loads(line) for line in (tmp_path / "d2").read_text().splitlines()]
    assert [e["doc_id"] for e in letters] == ["d7"]

    accepted = reencode_index(
        engine_client,
        index_name,
        index=index_name,
        encoder=FailingEncoder(salt="v3"),
        load=LoadOptions(recreate=True, replicas=0, allow_failures=True, dead_letter=tmp_path / "d3", bulk=SMALL),
    )
    assert accepted.verified and accepted.swapped is not None  # the one missing document is in the dead letters


def test_a_concrete_index_is_never_replaced_by_an_alias(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    engine_client.indices.create(index=index_name, body={"mappings": {"properties": {"text": {"type": "text"}}}})
    engine_client.index(index=index_name, id="a", body={"text": "x"}, refresh=True)
    with pytest.raises(ConfigError, match="concrete index, not an alias"):
        index_corpus(
            engine_client,
            write_jsonl(tmp_path / "c.jsonl", make_docs(2)),
            index=index_name,
            encoder=FakeEncoder(),
            load=LoadOptions(
                recreate=True,
                replicas=0,
                checkpoint=tmp_path / "cp",
                dead_letter=tmp_path / "d",
                bulk=SMALL,
            ),
        )
    assert engine_client.count(index=index_name)["count"] == 1


def test_a_broken_encoder_stops_the_run_with_one_error_and_resume_finishes(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(80)
    corpus, checkpoint, dead = write_jsonl(tmp_path / "c.jsonl", docs), tmp_path / "cp.json", tmp_path / "dead.jsonl"
    load = LoadOptions(replicas=0, checkpoint=checkpoint, dead_letter=dead, bulk=SMALL)
    with pytest.raises(ModelError, match="failed on every one of 16 documents .*CUDA error.*--resume"):
        index_corpus(engine_client, corpus, index=index_name, encoder=FailingEncoder(break_after=2), load=load)
    assert _bulk_threads() == []  # the sender stopped with the run
    assert str(dead) not in _open_files()
    assert not dead.exists()  # not 48 dead letters for one broken encoder
    assert _refresh_interval(engine_client, f"{index_name}-v1") != "-1"
    state = json.loads(checkpoint.read_text())
    assert state["counters"]["indexed"] == 32  # the two batches encoded before the failure were sent

    summary = index_corpus(
        engine_client, corpus, index=index_name, encoder=FakeEncoder(), load=replace(load, resume=True)
    )
    assert summary.verified and summary.counters.indexed == 80
    assert sorted(landed(engine_client, index_name)) == sorted(d["_id"] for d in docs)


def test_a_failure_during_setup_closes_files_and_restores_refreshes(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    with pytest.raises(FileNotFoundError):
        index_corpus(
            engine_client,
            write_jsonl(tmp_path / "c.jsonl", make_docs(5)),
            index=index_name,
            encoder=FakeEncoder(),
            load=LoadOptions(
                replicas=0,
                checkpoint=tmp_path / "no-such-folder" / "cp.json",
                dead_letter=dead,
                bulk=SMALL,
            ),
        )
    assert _refresh_interval(engine_client, f"{index_name}-v1") != "-1"
    assert str(dead) not in _open_files() and _bulk_threads() == []


def test_an_in_place_load_never_stops_the_live_index_refreshing(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(48))
    load = LoadOptions(replicas=0, checkpoint=tmp_path / "cp", bulk=SMALL)
    index_corpus(
        engine_client, corpus, index=index_name, encoder=FakeEncoder(), load=replace(load, dead_letter=tmp_path / "d1")
    )
    seen: list[Any] = []

    def look(progress: Progress) -> None:  # a SIGKILL here would leave whatever the live index has now
        seen.append(_refresh_interval(engine_client, f"{index_name}-v1"))

    again = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=replace(load, dead_letter=tmp_path / "d2"),
        on_progress=look,
    )
    assert again.verified and len(seen) == 3
    assert "-1" not in seen


def test_the_callers_client_keeps_its_retries_and_stays_open(
    index_name: str, tmp_path: Path, engine_client: OpenSearch
) -> None:
    client = client_for(ConnectionSettings.from_env())
    retries = client.transport.max_retries
    assert retries > 0
    seen: list[int] = []

    def look(progress: Progress) -> None:  # another thread of the application uses the same client meanwhile
        seen.append(client.transport.max_retries)

    try:
        summary = index_corpus(
            client,
            write_jsonl(tmp_path / "c.jsonl", make_docs(40)),
            index=index_name,
            encoder=FakeEncoder(),
            load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
            on_progress=look,
        )
        assert summary.verified
        assert seen == [retries] * 3 and client.transport.max_retries == retries
        assert client.count(index=index_name)["count"] == 40  # still open
    finally:
        client.close()


def test_a_corrupt_checkpoint_is_one_clear_error(engine_client: OpenSearch, index_name: str, tmp_path: Path) -> None:
    corpus, checkpoint = write_jsonl(tmp_path / "c.jsonl", make_docs(3)), tmp_path / "cp.json"
    checkpoint.write_text('{"version": 1, "target": {"ali')
    with pytest.raises(ConfigError, match=r"checkpoint .*cp.json cannot be read .*start over with --recreate"):
        index_corpus(
            engine_client,
            corpus,
            index=index_name,
            encoder=FakeEncoder(),
            load=LoadOptions(resume=True, checkpoint=checkpoint, dead_letter=tmp_path / "d", bulk=SMALL),
        )
    result = CliRunner().invoke(
        index_command,
        [
            str(corpus),
            "--index",
            index_name,
            "--model",
            str(BUNDLED_MODEL),
            "--resume",
            "--checkpoint",
            str(checkpoint),
            "--replicas",
            "0",
        ],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "cannot be read" in result.output
    fresh = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(recreate=True, checkpoint=checkpoint, dead_letter=tmp_path / "d", bulk=SMALL, replicas=0),
    )
    assert fresh.verified and fresh.index_count == 3


def _pool_closed(client: Any) -> bool:
    if hasattr(client.transport, "node_pool"):  # the Elasticsearch client
        return all(node.pool.pool is None for node in client.transport.node_pool.all())
    pool = client.transport.connection_pool
    connections = getattr(pool, "connections", None) or [pool.connection]
    return all(conn.pool is None for conn in connections)


def _record_clients(monkeypatch: pytest.MonkeyPatch, function: str) -> list[Any]:
    """Every client `engines.clients.<function>` makes from now on, so a test can check each was closed."""
    from splade_os.engines import clients

    made: list[Any] = []
    real = getattr(clients, function)

    def recording(settings: ConnectionSettings) -> Any:
        made.append(real(settings))
        return made[-1]

    monkeypatch.setattr(clients, function, recording)
    return made


def test_searcher_closes_what_it_made_and_never_what_it_was_given(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _record_clients(monkeypatch, "client_for")
    with pytest.raises(EngineError, match="does not exist"):
        Searcher(f"{index_name}-missing", BUNDLED_MODEL, settings=ConnectionSettings.from_env())
    assert len(made) == 1 and _pool_closed(made[0])  # its own client, closed on the error path

    given = client_for(ConnectionSettings.from_env())
    try:
        with pytest.raises(EngineError, match="does not exist"):
            Searcher(f"{index_name}-missing", BUNDLED_MODEL, client=given)
        assert given.cluster.health()["status"] in ("green", "yellow")  # the caller's client still works

        from splade_os.model.encoder import SpladeEncoder

        index_corpus(
            given,
            write_jsonl(tmp_path / "c.jsonl", make_docs(2)),
            index=index_name,
            encoder=SpladeEncoder(BUNDLED_MODEL),
            load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d", bulk=SMALL),
        )
        with Searcher(index_name, BUNDLED_MODEL, client=given) as searcher:
            assert searcher.search("café number", k=2).hits
        assert not _pool_closed(given) and given.count(index=index_name)["count"] == 2
    finally:
        given.close()


def test_doctor_closes_its_client_when_the_cluster_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from splade_os.doctor import FAIL, run_checks

    made = _record_clients(monkeypatch, "client_for")
    checks = run_checks(ConnectionSettings(urls=("http://127.0.0.1:9",), max_retries=0, timeout=2))
    assert checks[-1].name == "reachable" and checks[-1].status == FAIL
    assert len(made) == 1 and _pool_closed(made[0])


def test_async_searcher_closes_its_client_when_create_fails(
    index_name: str, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from splade_os.retrieval.search import AsyncSearcher

    made = _record_clients(monkeypatch, "async_client")

    async def attempt() -> None:
        with pytest.raises(EngineError, match="does not exist"):
            await AsyncSearcher.create(f"{index_name}-missing", BUNDLED_MODEL, settings=ConnectionSettings.from_env())

    asyncio.run(attempt())
    assert len(made) == 1
    transport = made[0].transport
    if hasattr(transport, "node_pool"):  # AsyncElasticsearch: each node's aiohttp session is closed
        assert all(node.session is None or node.session.closed for node in transport.node_pool.all())
    else:  # AsyncOpenSearch: the connection drops its session on close
        assert all(conn.session is None for conn in transport.connection_pool.connections)
