"""Nothing is lost: bad records, a throttling or flaky cluster, a crash, Ctrl-C and a node restart mid-run.

All of these run against the real node; the fake encoder (from test_indexing_engine) replaces only the model.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner
from conftest import state_file, unavailable
from opensearchpy import OpenSearch
from test_indexing_engine import SMALL, FakeEncoder, assert_exactly, landed, make_docs, write_jsonl

from splade_os.cli.index import index as index_command
from splade_os.connection import ConnectionSettings
from splade_os.engines import engine_for
from splade_os.engines.clients import client_for
from splade_os.indexing import BulkOptions, IndexingInterrupted, LoadOptions, Progress, index_corpus

pytestmark = pytest.mark.engine

TESTS = Path(__file__).resolve().parent


# ---- bad input ----------------------------------------------------------------------------------------------------


def test_bad_records_go_to_the_dead_letter_file_and_nothing_else_is_lost(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import splade_os.model.encoder

    encoder = FakeEncoder(limit=100_000)
    monkeypatch.setattr(splade_os.model.encoder, "SpladeEncoder", lambda *a, **k: encoder)
    monkeypatch.chdir(tmp_path)
    good = make_docs(12, prefix="g")
    big = {"_id": "big", "title": "ten megabytes", "text": "lorem ipsum dolor sit amet " * 400_000}
    lines: list[bytes] = [json.dumps(d).encode() for d in good[:6]]
    lines += [
        b'{"_id": "broken", "text": "no closing brace"',
        json.dumps({"title": "no id", "text": "x"}).encode(),
        json.dumps({"_id": "g1", "text": "duplicate of a document sent in an earlier batch"}).encode(),
        json.dumps({"_id": "empty", "title": "", "text": "  "}).encode(),
        json.dumps({"_id": "wrongtype", "text": ["a", "list"]}).encode(),
        b'{"_id": "latin1", "text": "caf\xe9"}',
        json.dumps(big).encode(),
        json.dumps({"_id": "y1", "text": "year is a number", "year": 2020}).encode(),
    ]
    lines += [json.dumps(d).encode() for d in good[6:]]
    lines += [
        json.dumps({"_id": "y2", "text": "year is not a number", "year": "unknown"}).encode(),  # the cluster rejects
        json.dumps({"_id": "g11", "text": "duplicate of a document in the same batch"}).encode(),
    ]
    (tmp_path / "c.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    args = ["c.jsonl", "--index", index_name, "--model", "unused", "--replicas", "0", "--batch-size", "8"]

    result = CliRunner().invoke(index_command, args)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("read 22, indexed 14, failed 7, skipped 1, truncated 1 in ")
    assert (
        f"verified: {index_name}-v1 holds 14 documents; expected read 22 - failed 7 - skipped 1 = 14" in result.stdout
    )
    dead = state_file(engine_client, index_name, "dead-letter.jsonl")  # found from any folder, kept from others
    assert result.output.rstrip().endswith(f"Error: 7 documents failed; see {dead} (pass --allow-failures to accept)")
    assert (dead.stat().st_mode & 0o777, dead.parent.stat().st_mode & 0o777) == (0o600, 0o700)  # documents' text
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    by_line = {e["line"]: (e["doc_id"], e["outcome"], e["reason"]) for e in letters}
    assert by_line[7] == (None, "failed", "malformed JSON: Expecting ',' delimiter at column 45")
    assert by_line[8] == (None, "failed", "missing id: no '_id' field (choose another with --id-field)")
    assert by_line[9][:2] == ("g1", "failed") and by_line[9][2].startswith(
        "duplicate id 'g1': an earlier record with this id is already indexed and was kept (version_conflict"
    )
    assert by_line[10] == ("empty", "skipped", "empty text and title: nothing to encode")
    assert by_line[11] == ("wrongtype", "failed", "text field 'text' must be a string, got list")
    assert by_line[12] == (None, "failed", "invalid UTF-8 at byte 30 of the line")
    assert by_line[21][:2] == ("y2", "failed")
    # the engine's own reason: OpenSearch and Elasticsearch 8.x say mapper_parsing_exception, 9.x document_parsing
    assert by_line[21][2].split(":")[0] in ("mapper_parsing_exception", "document_parsing_exception")
    assert "failed to parse field [year]" in by_line[21][2]
    assert by_line[22] == ("g11", "failed", "duplicate id 'g11': the record at line 20 has it too and was kept")
    assert len(letters) == 8
    rejected = next(e for e in letters if e["doc_id"] == "y2")
    assert rejected["status"] == 400 and rejected["record"]["year"] == "unknown"  # replayable as it was read

    docs = landed(engine_client, index_name)
    assert sorted(docs) == sorted([d["_id"] for d in good] + ["big", "y1"])
    assert docs["g1"]["text"] == good[1]["text"] and docs["g11"]["text"] == good[11]["text"]  # first one kept
    assert len(docs["big"]["text"]) == len(big["text"])

    accepted = CliRunner().invoke(index_command, [*args, "--recreate", "--allow-failures"])
    assert accepted.exit_code == 0, accepted.output


# ---- a throttling, flaky cluster ---------------------------------------------------------------------------------


class FlakyProxy(ThreadingHTTPServer):
    """Forwards to the real node, but answers the first bulk requests (those whose path holds `planned`) according
    to `plan`: "429" (whole request), "item429" (every document rejected with 429), "503", or "lost" (forwarded, so
    the documents land, but the connection is closed before the answer)."""

    planned = "_bulk"

    daemon_threads = True

    def __init__(self, upstream: str, plan: list[str], product: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlparse(upstream)
        self.product = dict(product or {})  # what the engine marks its answers with (the Elasticsearch client checks)
        self.plan = list(plan)
        self.answers: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_answer(self, path: str) -> str:
        if self.planned not in path:
            return "forward"
        with self.lock:
            answer = self.plan.pop(0) if self.plan else "forward"
            self.answers[answer] += 1
            return answer


def _item_rejections(body: bytes) -> dict[str, Any]:
    actions = [json.loads(line) for line in body.splitlines()[::2] if line.strip()]
    items = []
    for action in actions:
        op, meta = next(iter(action.items()))
        error = {"type": "es_rejected_execution_exception", "reason": "write queue full (test proxy)"}
        items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 429, "error": error}})
    return {"took": 1, "errors": True, "items": items}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FlakyProxy

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.next_answer(self.path)
        if answer in ("429", "503"):
            error = {"type": "test_proxy", "reason": f"answered {answer} by the test proxy"}
            return self._reply(int(answer), json.dumps({"error": error, "status": int(answer)}).encode())
        if answer == "item429":
            return self._reply(200, json.dumps(_item_rejections(body)).encode(), self.server.product)
        upstream = http.client.HTTPConnection(self.server.upstream.netloc, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        if answer == "lost":
            self.close_connection = True  # the documents landed; the client never hears about it
            return None
        passed_on = {k: v for k, v in response.getheaders() if k.lower() in ("content-type", "x-elastic-product")}
        return self._reply(response.status, data, passed_on)

    def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


@contextmanager
def running_proxy(client: Any, plan: list[str], *, planned: str = "_bulk") -> Iterator[FlakyProxy]:
    """A `FlakyProxy` in front of the node under test, answering the requests whose path holds `planned` by `plan`."""
    upstream = ConnectionSettings.from_env().urls[0]
    product = {"X-Elastic-Product": "Elasticsearch"} if engine_for(client).name == "elasticsearch" else {}
    proxy = FlakyProxy(upstream, plan, product)
    proxy.planned = planned
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def flaky(engine_client: OpenSearch) -> Iterator[FlakyProxy]:
    with running_proxy(engine_client, []) as proxy:
        yield proxy


def test_every_document_lands_through_429s_5xx_and_lost_answers(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, flaky: FlakyProxy
) -> None:
    flaky.plan = ["429", "429", "item429", "503", "lost", "item429", "lost", "429"]
    client = client_for(ConnectionSettings.from_env(urls=(flaky.url,)))
    docs = make_docs(80)
    encoder = FakeEncoder()
    summary = index_corpus(
        client,
        write_jsonl(tmp_path / "c.jsonl", docs),
        index=index_name,
        encoder=encoder,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "dead", bulk=SMALL),
    )
    assert not flaky.plan, "the proxy's plan was not used up"
    assert flaky.answers["forward"] >= 5 and sum(flaky.answers.values()) >= 5 + 8
    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (80, 80, 0, 0) and summary.verified
    assert not (tmp_path / "dead").exists()
    assert_exactly(engine_client, index_name, docs, encoder)


def test_a_cluster_that_stays_down_stops_the_run_with_what_to_do(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, flaky: FlakyProxy
) -> None:
    flaky.plan = ["503"] * 1000
    client = client_for(ConnectionSettings.from_env(urls=(flaky.url,)))
    options = BulkOptions(batch_size=16, initial_backoff=0.05, max_backoff=0.2, retry_for=1.0)
    with pytest.raises(IndexingInterrupted, match=r"run the same command with --resume to continue"):
        index_corpus(
            client,
            write_jsonl(tmp_path / "c.jsonl", make_docs(20)),
            index=index_name,
            encoder=FakeEncoder(),
            load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "dead", bulk=options),
        )
    assert (tmp_path / "cp").exists()


# ---- interruptions and resume -------------------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import signal
    import sys

    # A shell that starts a job in the background makes it ignore SIGINT, and children inherit that: put Python's
    # own handler back, as `splade-os index` does, so Ctrl-C raises KeyboardInterrupt whoever started the test.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_indexing_engine import FakeEncoder
    from splade_os.engines.clients import connect
    from splade_os.errors import SpladeOSError
    from splade_os.indexing import BulkOptions, LoadOptions, index_corpus

    try:
        index_corpus(
            connect(), Path({corpus!r}), index={index!r}, encoder=FakeEncoder(delay=0.1), load=LoadOptions(
                replicas=0, checkpoint=Path({checkpoint!r}), dead_letter=Path({dead!r}),
                bulk=BulkOptions(batch_size=20),
            ),
        )
    except SpladeOSError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
    """
)


def _acknowledged(checkpoint: Path) -> int:
    """Documents the cluster has acknowledged, as the checkpoint records them after each batch; 0 before."""
    try:
        return int(json.loads(checkpoint.read_text())["counters"]["indexed"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _wait_for_a_batch(proc: subprocess.Popen[str], checkpoint: Path, timeout: float = 60.0) -> int:
    """Block until the run has at least one acknowledged batch, and fail if it ends or the deadline passes first."""
    deadline = time.monotonic() + timeout
    while (acknowledged := _acknowledged(checkpoint)) == 0:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the run ended (exit code {proc.returncode}) before any batch was acknowledged: {stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"no batch acknowledged within {timeout:.0f} s: {checkpoint} never recorded one")
        time.sleep(0.02)
    return acknowledged


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
def test_resume_after_a_crash_or_ctrl_c_leaves_every_document_exactly_once(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, how: signal.Signals
) -> None:
    docs = make_docs(600)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    paths = {"checkpoint": str(tmp_path / "cp.json"), "dead": str(tmp_path / "dead.jsonl")}
    script = RUNNER.format(tests=str(TESTS), corpus=str(corpus), index=index_name, **paths)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        # 30 batches of 20 with 0.1 s of encoding each: seconds of work are left once the first one is acknowledged.
        acknowledged = _wait_for_a_batch(proc, tmp_path / "cp.json")
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, "the run finished before it could be interrupted"
    if how == signal.SIGINT:
        assert proc.returncode == 1, f"Ctrl-C must end the run cleanly with exit code 1: {stderr}"
        assert "interrupted:" in stderr and "run the same command with --resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    before = len(landed(engine_client, f"{index_name}-v1"))
    assert acknowledged <= before < 600

    encoder = FakeEncoder()
    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=encoder,
        load=LoadOptions(
            replicas=0,
            resume=True,
            checkpoint=tmp_path / "cp.json",
            dead_letter=tmp_path / "dead.jsonl",
            bulk=SMALL,
        ),
    )
    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (600, 600, 0, 0) and summary.verified
    # A bulk request the killed process left on the wire may land after `before` was counted: at most one batch.
    assert 600 - before - 20 <= encoder.encoded <= 600 - before, "documents that had landed were encoded again"
    assert_exactly(engine_client, index_name, docs, encoder)


def _managed_node(client: Any) -> Any:
    """The node `splade-os node start` manages that is the whole cluster under test, OpenSearch or Elasticsearch.

    Stopping and starting a node is only possible for a node this machine manages (a pid file under a node home).
    The cluster the suite uses must be that node, alone: otherwise stopping it would leave the cluster under test
    running, or stop a node that the other tests do not even use.
    """
    from splade_os.node.run import running_nodes

    nodes = list(client.nodes.info(metric="process")["nodes"].values())
    pids = [node["process"]["id"] for node in nodes]
    managed = {pid: spec for spec, pid in running_nodes()}
    if len(pids) != 1 or pids[0] not in managed:
        unavailable(
            "this test stops and restarts the cluster under test, so that cluster must be a single node that "
            f"`splade-os node start` manages: the managed nodes run pids {sorted(managed) or 'none'}, while the "
            f"cluster at {', '.join(ConnectionSettings.from_env().urls)} runs node pids {pids}"
        )
    return managed[pids[0]]


def test_node_stopped_mid_run_then_started_and_resumed(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    from splade_os.node.run import start_node, stop_node

    spec = _managed_node(engine_client)
    which: dict[str, Any] = dict(engine=spec.engine.name, version=spec.version, port=spec.port, home=spec.home)
    docs = make_docs(400)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    options = BulkOptions(batch_size=20, initial_backoff=0.2, max_backoff=1.0, retry_for=3.0, request_timeout=10)
    stopped = threading.Event()

    def stop_after_three_batches(progress: Progress) -> None:
        if progress.counters.indexed >= 60 and not stopped.is_set():
            stopped.set()
            stop_node(**which)

    load = LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "d")
    client = client_for(ConnectionSettings.from_env())
    try:
        with pytest.raises(
            IndexingInterrupted, match="once the cluster is healthy, run the same command with --resume"
        ):
            index_corpus(
                client,
                corpus,
                index=index_name,
                encoder=FakeEncoder(delay=0.05),
                load=replace(load, bulk=options),
                on_progress=stop_after_three_batches,
            )
        assert stopped.is_set()
    finally:
        start_node(**which)
    patient, timeout = engine_for(engine_client).with_timeout(engine_client, 120)
    patient.cluster.health(index=f"{index_name}-v1", wait_for_status="yellow", **timeout)
    before = len(landed(engine_client, f"{index_name}-v1"))
    assert 60 <= before < 400

    encoder = FakeEncoder()
    summary = index_corpus(
        engine_client, corpus, index=index_name, encoder=encoder, load=replace(load, resume=True, bulk=SMALL)
    )
    c = summary.counters
    assert (c.read, c.indexed, c.failed) == (400, 400, 0) and summary.verified
    assert encoder.encoded == 400 - before, "documents that had landed were encoded again"
    assert_exactly(engine_client, index_name, docs, encoder)
