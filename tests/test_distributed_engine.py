"""A distributed load on a local Ray instance against the real node: nothing lost when a worker dies or the driver
stops half-way, and the same record rules, dead letters and count check as the single-process load.

The workers run in other processes: they find this folder (for the fake encoder) and the checkout through the
PYTHONPATH the Ray instance is started with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, REPO, unavailable
from helpers import assert_df_exact, assert_first_phase, index_tokens, versions_left
from opensearchpy import OpenSearch
from secured_proxy import make_certs, running_proxy
from test_indexing_engine import (
    SMALL,
    FakeEncoder,
    assert_exactly,
    die_once_landed,
    landed,
    make_docs,
    write_jsonl,
)

from splade_os import aliases
from splade_os.cli.index import index as index_command
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FieldNames
from splade_os.df import build_df
from splade_os.engines import engine_for
from splade_os.errors import ModelError
from splade_os.indexing import IndexingInterrupted, LoadOptions, index_corpus
from splade_os.indexing.blocks import corpus_files, later_copies, plan_blocks, read_block
from splade_os.indexing.distributed import BlockDone, RayWorkers, index_corpus_on_ray
from splade_os.indexing.ledger import default_checkpoint, default_dead_letter
from splade_os.mappings import VECTOR_FIELD
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine


def start_local_ray() -> None:
    """Start a local Ray instance whose workers find the checkout and this folder."""
    try:
        import ray
        import ray.data
    except ImportError:
        unavailable("ray is not installed: pip install 'splade-os[ray]'")
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


@contextmanager
def ray_on_this_machine() -> Iterator[None]:
    """A local Ray for the block (tests/test_secured_nodes.py uses it)."""
    start_local_ray()
    import ray
    import ray.data

    # A run whose pool never starts (its CPUs held by an earlier run's actors) fails in minutes, not half an hour.
    context = ray.data.DataContext.get_current()
    waited, context.execution_no_progress_timeout_s = context.execution_no_progress_timeout_s, 300.0
    try:
        yield
    finally:
        context.execution_no_progress_timeout_s = waited
        ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    with ray_on_this_machine():
        yield


@pytest.fixture
def ray_per_command() -> Iterator[None]:
    """Each command starts Ray for its run and stops it after, as `splade-os index --ray` does in a shell; the
    module's Ray comes back for the tests after."""
    import ray

    ray.shutdown()
    try:
        yield
    finally:
        start_local_ray()


class WorkerEncoder(FakeEncoder):
    """The fake encoder in a worker: logs each text it encodes to `log`, and kills its own process the first time it
    meets `die_on` (the marker file makes it die only once)."""

    def __init__(self, log: str, die_on: str | None, marker: str) -> None:
        super().__init__()
        self.log, self.die_on, self.marker = log, die_on, marker

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        if self.die_on and any(self.die_on in t for t in texts) and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)  # no clean-up, no answer: a worker killed mid-block
        with open(self.log, "a", encoding="utf-8") as out:
            out.writelines(t.replace("\n", " ") + "\n" for t in texts)
        return super().encode_documents(texts)


@dataclass(frozen=True)
class FakeRecipe:
    log: str
    die_on: str | None = None
    marker: str = ""

    @property
    def manifest(self) -> Mapping[str, Any]:
        return FakeEncoder().manifest

    def build(self) -> WorkerEncoder:
        return WorkerEncoder(self.log, self.die_on, self.marker)


@dataclass(frozen=True)
class LandedThenDies(FakeRecipe):
    """The fake encoder, in a worker that dies right after the batch holding `doc_id` has landed (the first time):
    Ray then runs that block again, and finds its first documents already indexed."""

    doc_id: str = ""

    def build(self) -> WorkerEncoder:
        die_once_landed(self.doc_id, self.marker)
        return super().build()


def _settings() -> ConnectionSettings:
    return ConnectionSettings.from_env()


def _encoded(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_blocks_cover_every_line_once_and_are_the_same_every_time(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(25))
    blocks, files = plan_blocks(corpus_files(corpus), 10)
    assert [(b.start, b.stop) for b in blocks] == [(b.start, b.stop) for b in plan_blocks([corpus.resolve()], 10)[0]]
    assert [b.first_line for b in blocks] == [1, 11, 21] and blocks[-1].stop == corpus.stat().st_size
    ids = [r.doc_id for b in blocks for r in read_block(b, FieldNames())]
    assert ids == [f"d{i}" for i in range(25)]
    assert files[0][1] == corpus.stat().st_size


@pytest.mark.parametrize("colliding", [False, True], ids=["hashed", "every-hash-equal"])
def test_later_copies_are_the_repeats_of_an_id_in_file_then_line_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, colliding: bool
) -> None:
    from splade_os.indexing import blocks as planning

    if colliding:  # equal hashes must be told apart by the ids themselves
        monkeypatch.setattr(planning, "hash", lambda _: 7, raising=False)
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"_id": "x1", "text": "one"},
            {"_id": "x2", "text": "two"},
            {"_id": "x1", "text": "again"},
            {"_id": "e", "text": ""},
            {"_id": 7, "text": "an integer id"},
        ],
    )
    with open(a, "a", encoding="utf-8") as out:
        out.write("{not json\n")
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"_id": "e", "text": "not empty"},
            {"_id": "x2", "text": "two again"},
            {"_id": "e", "text": "e again"},
            {"_id": "7", "text": "the same id as a string"},
        ],
    )
    planned, _ = plan_blocks(corpus_files(tmp_path), 2)
    a_, b_ = str(a.resolve()), str(b.resolve())

    skipping = later_copies(planned, FieldNames(), skip_empty=True)
    indexing_empty = later_copies(planned, FieldNames(), skip_empty=False)

    by_line = {(block.path, line): first for block in planned for line, first in skipping.get(block.id, {}).items()}
    assert by_line == {(a_, 3): (a_, 1), (b_, 2): (a_, 2), (b_, 3): (b_, 1), (b_, 4): (a_, 5)}
    assert set(skipping) == {planned[1].id, planned[3].id, planned[4].id}  # a: lines 3-4; b: 1-2 and 3-4
    assert indexing_empty[planned[3].id] == {1: (a_, 4), 2: (a_, 2)}  # the empty e at a:4 now holds its id


def test_a_run_inside_its_corpus_folder_does_not_read_its_own_checkpoint_or_dead_letters(tmp_path: Path) -> None:
    parts = [write_jsonl(tmp_path / f"part-{i}.jsonl", make_docs(3)) for i in range(2)]
    # Where a run writes when its state folder (SPLADE_OS_STATE_DIR, --state-dir) is inside the corpus folder; or
    # its --checkpoint and --dead-letter are.
    folder = tmp_path / "state" / "127.0.0.1-9200" / "docs"
    folder.mkdir(parents=True)
    own = [
        folder / default_checkpoint("docs").name,
        tmp_path / default_dead_letter("docs").name,
        folder / default_dead_letter("docs").name,
    ]
    for path in own:
        path.write_text('{"_id": "x", "text": "not a document"}\n')
    assert corpus_files(tmp_path, exclude=own) == [p.resolve() for p in parts]


def test_a_worker_killed_mid_block_loses_and_duplicates_nothing(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(300)
    docs[150]["text"] += " die here"  # the 4th batch of 16 of the second block: 3 batches of it are already sent
    lines = [json.dumps(d, ensure_ascii=False) for d in docs]
    lines.insert(40, "{not json")
    lines.insert(120, json.dumps({"title": "no id", "text": "x"}))
    lines.insert(200, json.dumps({"_id": "empty", "title": "", "text": ""}))
    lines.insert(280, json.dumps({"_id": "d5", "title": "Other", "text": "another d5"}))  # a later block
    bad_lines = [n for n, line in enumerate(lines, start=1) if not line.startswith('{"_id": "d') or "another" in line]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log, marker, dead = tmp_path / "encoded.txt", tmp_path / "died", tmp_path / "dead.jsonl"

    summary = index_corpus_on_ray(
        _settings(),
        corpus,
        index=index_name,
        recipe=FakeRecipe(str(log), "die here", str(marker)),
        pool=RayWorkers(workers=1),
        block_size=100,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp.json", dead_letter=dead, bulk=SMALL),
    )

    assert marker.exists(), "the worker never died: the test proves nothing"
    encoded = _encoded(log)
    assert sum("Title 100 " in t for t in encoded) == 2  # its block was run again after the death
    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (304, 300, 3, 1)
    assert c.replaced >= 16  # documents of the re-run block found already indexed, identical
    assert summary.verified, summary.verification
    assert summary.index_count == 300 and engine_client.count(index=index_name)["count"] == 300
    assert_exactly(engine_client, index_name, docs, FakeEncoder())  # every id once, each with its own content
    letters = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    by_line = {entry["line"]: entry for entry in letters}
    assert sorted(by_line) == bad_lines and {e["file"] for e in letters} == {str(corpus.resolve())}
    malformed, no_id, empty, duplicate = (by_line[n] for n in bad_lines)
    assert malformed["reason"].startswith("malformed JSON") and "missing id" in no_id["reason"]
    assert empty["outcome"] == "skipped" and "duplicate id 'd5'" in duplicate["reason"]
    assert summary.problems() == [f"3 documents failed; see {dead} (pass --allow-failures to accept)"]
    assert not (tmp_path / "cp.json").exists()


@dataclass(frozen=True)
class MissingModelRecipe(FakeRecipe):
    def build(self) -> WorkerEncoder:
        raise ModelError("no model folder /models/splade on this worker")


class DeadProviderEncoder(FakeEncoder):
    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        raise RuntimeError("CUDA error: the execution provider is gone")


@dataclass(frozen=True)
class DeadProviderRecipe(FakeRecipe):
    def build(self) -> WorkerEncoder:
        return DeadProviderEncoder()  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("recipe", "error"),
    [
        (MissingModelRecipe, "no model folder /models/splade on this worker"),
        (DeadProviderRecipe, "the encoder failed on every one of 10 documents"),
    ],
    ids=["worker-cannot-start", "encoder-fails-on-everything"],
)
def test_a_worker_error_stops_the_run_with_that_error(
    engine_client: OpenSearch, index_name: str, tmp_path: Path, recipe: type[FakeRecipe], error: str
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(10))
    with pytest.raises(ModelError, match=error):
        index_corpus_on_ray(
            _settings(),
            corpus,
            index=index_name,
            recipe=recipe(str(tmp_path / "log")),
            load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp.json", dead_letter=tmp_path / "dead.jsonl"),
        )
    assert json.loads((tmp_path / "cp.json").read_text(encoding="utf-8"))["finished"] == []


class StopAfter:
    """Stops the driver (as Ctrl-C would) once `blocks` blocks are recorded."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks

    def __call__(self, done: BlockDone) -> None:
        if done.done >= self.blocks:
            raise KeyboardInterrupt


def test_a_resumed_driver_sends_only_the_blocks_not_finished(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(400)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    log, checkpoint = tmp_path / "encoded.txt", tmp_path / "cp.json"
    load = LoadOptions(replicas=0, checkpoint=checkpoint, dead_letter=tmp_path / "dead.jsonl", bulk=SMALL)
    common: dict[str, Any] = dict(
        index=index_name, recipe=FakeRecipe(str(log)), pool=RayWorkers(workers=2), block_size=50
    )
    with pytest.raises(IndexingInterrupted, match="--resume"):
        index_corpus_on_ray(_settings(), corpus, on_block=StopAfter(3), load=load, **common)

    state = json.loads(checkpoint.read_text(encoding="utf-8"))
    finished = set(state["finished"])
    assert len(finished) >= 3 and state["counters"]["indexed"] == 50 * len(finished)
    blocks, _ = plan_blocks(corpus_files(corpus), 50)
    done_ids = {r.doc_id for b in blocks if b.id in finished for r in read_block(b, FieldNames())}
    done_numbers = {i[1:] for i in done_ids if i is not None}
    first_run = len(_encoded(log))
    with pytest.raises(Exception, match="--resume to continue it"):
        index_corpus_on_ray(_settings(), corpus, load=load, **common)  # neither --resume nor --recreate: refused

    summary = index_corpus_on_ray(_settings(), corpus, load=replace(load, resume=True), **common)

    again = _encoded(log)[first_run:]
    assert not [t for t in again if t.split()[1] in done_numbers], "a finished block was sent again"
    assert len(again) >= 400 - len(done_ids)
    assert summary.processed == 400 - len(done_ids)
    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (400, 400, 0, 0)
    assert summary.verified and summary.problems() == [], summary.verification
    assert any(f"{len(finished)} of 8 blocks" in note for note in summary.notes)
    assert_exactly(engine_client, index_name, docs, FakeEncoder())
    assert not checkpoint.exists()


def test_in_place_into_an_existing_alias_overwrites_and_adds(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    first = make_docs(50)
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "a.jsonl", first),
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(
            replicas=0,
            checkpoint=tmp_path / "cp1.json",
            dead_letter=tmp_path / "d1.jsonl",
            bulk=SMALL,
            first_phase_k=2,
        ),
    )
    build_df(engine_client, index_name, index_tokens(engine_client, index_name))
    docs = make_docs(70)
    for doc in docs[:50]:
        doc["text"] += " revised"

    summary = index_corpus_on_ray(
        _settings(),
        write_jsonl(tmp_path / "b.jsonl", docs),
        index=index_name,
        recipe=FakeRecipe(str(tmp_path / "l")),
        pool=RayWorkers(workers=2),
        block_size=20,
        load=LoadOptions(checkpoint=tmp_path / "cp2.json", dead_letter=tmp_path / "d2.jsonl", bulk=SMALL),
    )

    c = summary.counters
    assert (c.read, c.indexed, c.replaced) == (70, 70, 50) and summary.index == f"{index_name}-v1"
    assert summary.verified, summary.verification
    assert_exactly(engine_client, index_name, docs, FakeEncoder())
    assert assert_first_phase(engine_client, index_name, 2) == 70  # the workers fill the pruned field the index has
    assert assert_df_exact(engine_client, index_name).documents == 70  # and the df table is counted again


def test_cli_ray_indexes_json_lines_and_parquet_with_the_real_model(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", make_docs(30, prefix="j"))
    parquet_docs = make_docs(25, prefix="p")
    parquet_docs[3]["text"] = ""
    parquet_docs[3]["title"] = ""
    pq.write_table(pa.Table.from_pylist(parquet_docs), folder / "b.parquet", row_group_size=7)
    args = [
        str(folder),
        "--index",
        index_name,
        "--model",
        str(BUNDLED_MODEL),
        "--ray",
        "--workers",
        "1",
        "--block-size",
        "20",
        "--replicas",
        "0",
        "--log-every",
        "0",
        "--checkpoint",
        str(tmp_path / "cp"),
        "--dead-letter",
        str(tmp_path / "dead.jsonl"),
        "--first-phase-k",
        "8",
        "--first-phase-candidates",
        "3",
    ]

    result = CliRunner().invoke(index_command, args)

    assert result.exit_code == 0, result.output
    assert "read 55, indexed 54, failed 0, skipped 1" in result.output and "verified:" in result.output
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v1"]
    got = landed(engine_client, index_name)
    assert len(got) == 54 and "p3" not in got and got["p24"]["text"] == parquet_docs[24]["text"]
    assert assert_first_phase(engine_client, index_name, 8, (3,)) == 54  # the workers fill every pruned field
    letter = json.loads((tmp_path / "dead.jsonl").read_text(encoding="utf-8"))
    assert (letter["doc_id"], letter["line"], letter["outcome"]) == ("p3", 4, "skipped")
    assert letter["file"] == str((folder / "b.parquet").resolve())


def test_cli_ray_options_go_with_ray(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(2))
    alone = CliRunner().invoke(
        index_command, [str(corpus), "--index", "x", "--model", str(BUNDLED_MODEL), "--workers", "2"]
    )
    assert alone.exit_code == 2 and "--workers go with --ray" in alone.output
    csv = tmp_path / "c.csv"
    csv.write_text("_id,text\n1,a\n", encoding="utf-8")
    wrong = CliRunner().invoke(index_command, [str(csv), "--index", "x", "--model", str(BUNDLED_MODEL), "--ray"])
    assert wrong.exit_code == 1 and "JSON Lines and Parquet" in wrong.output


@pytest.mark.opensearch_only  # the secured proxy stands in for the security plugin, as in test_secured_engine.py
def test_workers_reach_a_secured_cluster_and_never_log_the_password(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    import ray

    password = f"s3cr3t-{uuid.uuid4().hex[:12]}"
    (tmp_path / "certs").mkdir()
    certs = make_certs(tmp_path / "certs")
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(20))
    upstream = ConnectionSettings.from_env().urls[0]
    with running_proxy(upstream, certs, user="admin", password=password) as proxy:
        env = {
            "OPENSEARCH_URL": proxy.url,
            "OPENSEARCH_USERNAME": "admin",
            "OPENSEARCH_PASSWORD": password,
            "OPENSEARCH_CA_CERTS": str(certs.ca),
        }
        args = [
            str(corpus),
            "--index",
            index_name,
            "--model",
            str(BUNDLED_MODEL),
            "--ray",
            "--replicas",
            "0",
            "--checkpoint",
            str(tmp_path / "cp"),
            "--dead-letter",
            str(tmp_path / "dead.jsonl"),
        ]
        result = CliRunner().invoke(index_command, args, env=env)

    assert result.exit_code == 0, result.output
    assert engine_client.count(index=index_name)["count"] == 20 and password not in result.output
    node = ray._private.worker._global_node
    assert node is not None, "Ray is not running in this process"
    logs = Path(node.get_session_dir_path()) / "logs"  # every Ray process's log
    logged = [f for f in logs.rglob("*") if f.is_file() and password.encode() in f.read_bytes()]
    assert not logged, f"the password is in {logged}"


def _with_vectors(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`docs` with the fake encoder's vectors (whole words as tokens) in a "vector" field, as `index --vectors`
    reads them."""
    fake = FakeEncoder()
    return [{**d, "vector": fake.vector(f"{d['title']} {d['text']}").to_dict()} for d in docs]


def test_cli_ray_vectors_indexes_every_document_once_without_a_model(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = _with_vectors(make_docs(45))
    docs[7]["vector"] = {"u": -1.0}  # refused, as on one machine
    corpus = write_jsonl(tmp_path / "vectors.jsonl", docs)
    args = [
        str(corpus),
        "--index",
        index_name,
        "--vectors",
        "--ray",
        "--workers",
        "2",
        "--block-size",
        "10",
        "--replicas",
        "0",
        "--log-every",
        "0",
        "--checkpoint",
        str(tmp_path / "cp"),
        "--dead-letter",
        str(tmp_path / "dead.jsonl"),
        "--allow-failures",
    ]

    result = CliRunner().invoke(index_command, args, env={"SPLADE_OS_MODEL": None})

    assert result.exit_code == 0, result.output
    assert "read 45, indexed 44, failed 1, skipped 0" in result.output and "verified:" in result.output
    got = landed(engine_client, index_name)  # fails on an id seen twice
    assert sorted(got) == sorted(d["_id"] for d in docs if d["_id"] != "d7")
    engine = engine_for(engine_client)
    for doc in docs[8:]:  # every weight exactly as given
        assert engine.from_field(got[doc["_id"]][VECTOR_FIELD]) == SparseVector(doc["vector"])
    letter = json.loads((tmp_path / "dead.jsonl").read_text(encoding="utf-8"))
    assert letter["doc_id"] == "d7" and "token 'u' has the weight -1.0: weights must be positive" in letter["reason"]


@pytest.mark.usefixtures("ray_per_command")
def test_cli_ray_vectors_in_another_vocabulary_leave_no_index_and_no_checkpoint(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = _with_vectors(make_docs(20))  # whole words: "café" is no token of BERT's uncased vocabulary
    corpus = write_jsonl(tmp_path / "vectors.jsonl", docs)
    args = [
        str(corpus),
        "--index",
        index_name,
        "--vectors",
        "--ray",
        "--workers",
        "2",
        "--block-size",
        "10",
        "--replicas",
        "0",
        "--log-every",
        "0",
        "--checkpoint",
        str(tmp_path / "cp"),
        "--dead-letter",
        str(tmp_path / "dead.jsonl"),
    ]

    refused = CliRunner().invoke(index_command, [*args, "--model", str(BUNDLED_MODEL)])

    assert refused.exit_code == 1 and "which the index's vectors use" in refused.output, refused.output
    assert not versions_left(engine_client, index_name)
    assert not (tmp_path / "cp").exists()  # the corrected command needs neither --resume nor --recreate
    fixed = CliRunner().invoke(index_command, args, env={"SPLADE_OS_MODEL": None})  # unchecked: no --model
    assert fixed.exit_code == 0, fixed.output
    assert sorted(landed(engine_client, index_name)) == sorted(d["_id"] for d in docs)


def test_a_refused_run_on_a_shared_ray_gives_its_workers_cpus_back_while_its_error_is_kept(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "vectors.jsonl", _with_vectors(make_docs(20)))
    script = Path(__file__).with_name("ray_kept_refusal.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, str(script), str(corpus), index_name, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["freed"], run.stderr[-3000:]
    assert not versions_left(engine_client, index_name)


def _corpus_with_duplicates(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Records whose ids repeat across blocks of 5, and what a load keeps of them: the first copy of each id."""
    kept = make_docs(36)
    records = list(kept)
    records.insert(5, {"_id": "e1", "title": "", "text": ""})  # line 6: empty, skipped, so it holds no claim on e1
    records.insert(13, {"_id": "d3", "title": "Copy", "text": "second d3"})  # lines 14 and 15: d3 is at line 4,
    records.insert(14, {"_id": "d3", "title": "Copy", "text": "third d3"})  # in the same batch of 16, another block
    records.insert(19, {"_id": "e1", "title": "E", "text": "the e1 kept"})  # line 20
    records.append({"_id": "d1", "title": "Copy", "text": "late d1"})  # line 41: another batch than d1 at line 2
    return write_jsonl(path, records), [*kept, records[19]]


def _letters(path: Path) -> dict[int, dict[str, Any]]:
    return {e["line"]: e for e in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


@pytest.mark.parametrize("stop_after", [None, 7], ids=["one-run", "resumed"])
def test_the_first_copy_of_an_id_wins_whichever_block_runs_first(
    engine_client: OpenSearch,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop_after: int | None,
) -> None:
    from splade_os.indexing import distributed

    corpus, kept = _corpus_with_duplicates(tmp_path / "c.jsonl")
    single = index_corpus(
        engine_client,
        corpus,
        index=f"{index_name}-single",
        encoder=FakeEncoder(),
        load=LoadOptions(
            replicas=0,
            allow_failures=True,
            checkpoint=tmp_path / "cp1.json",
            dead_letter=tmp_path / "d1.jsonl",
            bulk=SMALL,
        ),
    )
    # One worker runs the blocks last first: the later copies of d3 and d1 reach the cluster before the first ones.
    in_order = distributed.run_blocks
    monkeypatch.setattr(distributed, "run_blocks", lambda blocks, *a, **k: in_order(blocks[::-1], *a, **k))
    ran: list[str] = []

    def note(done: BlockDone) -> None:
        ran.append(done.result.block)
        if stop_after is not None and len(ran) == stop_after:
            raise KeyboardInterrupt

    load = LoadOptions(
        replicas=0, allow_failures=True, checkpoint=tmp_path / "cp2.json", dead_letter=tmp_path / "d2.jsonl", bulk=SMALL
    )
    common: dict[str, Any] = dict(
        index=index_name,
        recipe=FakeRecipe(str(tmp_path / "log")),
        pool=RayWorkers(workers=1),
        block_size=5,
        on_block=note,
    )
    if stop_after is None:
        summary = index_corpus_on_ray(_settings(), corpus, load=load, **common)
    else:
        with pytest.raises(IndexingInterrupted, match="--resume"):
            index_corpus_on_ray(_settings(), corpus, load=load, **common)
        summary = index_corpus_on_ray(_settings(), corpus, load=replace(load, resume=True), **common)

    blocks = [b.id for b in plan_blocks(corpus_files(corpus), 5)[0]]
    assert ran.index(blocks[2]) < ran.index(blocks[0]), "the later copies did not run first: the test proves nothing"
    assert_exactly(engine_client, index_name, kept, FakeEncoder())  # d3 and d1 with their first content
    assert landed(engine_client, index_name) == landed(engine_client, f"{index_name}-single")
    c, s = summary.counters, single.counters
    assert (c.read, c.indexed, c.failed, c.skipped) == (s.read, s.indexed, s.failed, s.skipped)
    assert c.replaced == 0 or stop_after, "no copy may be sent: only blocks in flight at the stop are sent again"
    assert (c.read, c.indexed, c.failed, c.skipped) == (41, 37, 3, 1) and summary.verified, summary.verification
    ray_letters, single_letters = _letters(tmp_path / "d2.jsonl"), _letters(tmp_path / "d1.jsonl")
    assert sorted(ray_letters) == sorted(single_letters) == [6, 14, 15, 41]
    for line, letter in ray_letters.items():
        assert letter.pop("file") == str(corpus.resolve())
        alone = single_letters[line]
        if line == 41:  # the single-process load learnt it from the cluster's conflict; Ray from the corpus
            assert letter.pop("reason").startswith("duplicate id 'd1': ") and alone.pop("status") == 409
            assert alone.pop("reason").startswith("duplicate id 'd1': ")
        assert letter == alone
    assert "the record at line 4 has it too and was kept" in ray_letters[14]["reason"]
