"""Loads that careless use cannot break, on a real node: the checkpoint and dead letters live in a state folder that
`--resume` finds from any folder; counting the df table never decides whether a verified load moves the alias; an
input the load could index nothing of is refused before anything exists, and a load whose every record failed
leaves no index or alias behind.

`FakeEncoder` replaces the model only; the cluster is always the real node (the df failure comes from a loopback
proxy in front of it that answers 429 to the df table's `_msearch` requests alone).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import state_file
from test_indexing_engine import SMALL, FakeEncoder, assert_exactly, landed, make_docs, write_jsonl
from test_indexing_reliability import FlakyProxy, running_proxy

from splade_os import aliases
from splade_os.cli import main
from splade_os.cli.index import index as index_command
from splade_os.df import read_df
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.indexing.lease import Lease, lock_index
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine


class StoppingEncoder(FakeEncoder):
    """The fake model, stopped by Ctrl-C on its `stop_at`-th batch: an interrupted load."""

    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at = stop_at

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        if self.calls + 1 == self.stop_at:
            raise KeyboardInterrupt
        return super().encode_documents(texts)


def _use_model(monkeypatch: pytest.MonkeyPatch, encoder: FakeEncoder) -> None:
    import splade_os.model.encoder

    monkeypatch.setattr(splade_os.model.encoder, "SpladeEncoder", lambda *a, **k: encoder)


def _index(*args: str) -> Any:
    return CliRunner().invoke(index_command, [*args, "--replicas", "0", "--log-every", "0", "--batch-size", "8"])


def _nothing_named(client: Any, alias: str) -> list[str]:
    """Every index or alias whose name starts with `alias` (the versions, the lock index, the alias itself)."""
    found = set(client.indices.get(index=f"{alias}*", allow_no_indices=True, ignore_unavailable=True))
    return sorted(found | set(aliases.resolve(client, alias)))


# ---- 2. the state folder ------------------------------------------------------------------------------------------


def test_resume_finds_the_checkpoint_and_dead_letters_from_any_folder(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = make_docs(40)
    corpus = write_jsonl(tmp_path / "c.jsonl", [*docs[:5], {"_id": "bad", "text": 5}, *docs[5:]])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _use_model(monkeypatch, StoppingEncoder(stop_at=3))
    stopped = _index(str(corpus), "--index", index_name, "--model", "unused")
    checkpoint = state_file(engine_client, index_name, "checkpoint.json")
    folder = checkpoint.parent
    assert stopped.exit_code != 0
    assert stopped.output.strip().endswith(
        f"run the same command with --resume to continue (from any folder; its checkpoint: {checkpoint})"
    )
    assert checkpoint.is_file() and not list((tmp_path / "a").iterdir())  # nothing in the folder it ran from
    assert (checkpoint.stat().st_mode & 0o777, folder.stat().st_mode & 0o777) == (0o600, 0o700)

    done = json.loads(checkpoint.read_text())["counters"]["indexed"]
    assert done > 0

    monkeypatch.chdir(tmp_path / "b")
    encoder = FakeEncoder()
    _use_model(monkeypatch, encoder)
    resumed = _index(str(corpus), "--index", index_name, "--model", "unused", "--resume")
    dead = state_file(engine_client, index_name, "dead-letter.jsonl")
    assert resumed.exit_code == 1 and f"see {dead} (pass --allow-failures" in resumed.output  # the 'bad' record
    assert encoder.encoded == len(docs) - done  # continued where it stopped
    assert_exactly(engine_client, index_name, docs, encoder)
    (letter,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["doc_id"] == "bad" and dead.stat().st_mode & 0o777 == 0o600
    assert not checkpoint.exists() and not list((tmp_path / "b").iterdir())


def test_a_checkpoint_an_earlier_version_left_in_the_current_folder_still_resumes(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = make_docs(30)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    old_place = [f"{index_name}.checkpoint.json", f"{index_name}.dead-letter.jsonl"]  # where 0.1 wrote them
    _use_model(monkeypatch, StoppingEncoder(stop_at=2))
    stopped = _index(
        str(corpus),
        "--index",
        index_name,
        "--model",
        "unused",
        "--checkpoint",
        old_place[0],
        "--dead-letter",
        old_place[1],
    )
    assert stopped.exit_code != 0 and (tmp_path / old_place[0]).is_file()
    done = json.loads((tmp_path / old_place[0]).read_text())["counters"]["indexed"]
    encoder = FakeEncoder()
    _use_model(monkeypatch, encoder)
    resumed = _index(str(corpus), "--index", index_name, "--model", "unused", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert encoder.encoded == len(docs) - done  # none again (none may have landed: offset 0 resumes too)
    assert_exactly(engine_client, index_name, docs, encoder)
    assert not (tmp_path / old_place[0]).exists()
    assert not state_file(engine_client, index_name, "checkpoint.json").exists()


# ---- 3. counting the df table never decides the swap ------------------------------------------------------------


@pytest.fixture
def msearch_refused(engine_client: Any) -> Iterator[FlakyProxy]:
    """A proxy in front of the node that answers 429 to every `_msearch` (the df table's counting) and forwards the
    rest."""
    with running_proxy(engine_client, ["429"] * 10_000, planned="_msearch") as proxy:
        yield proxy


def test_a_df_count_that_fails_after_a_verified_load_is_a_note_and_the_alias_moves(
    engine_client: Any,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    msearch_refused: FlakyProxy,
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = make_docs(20)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, bulk=SMALL),
    )
    assert read_df(engine_client, index_name) is not None  # v1 has its table
    encoder = FakeEncoder(salt="v2")
    _use_model(monkeypatch, encoder)
    result = _index(str(corpus), "--index", index_name, "--model", "unused", "--recreate", "--url", msearch_refused.url)
    assert msearch_refused.answers["429"] > 0  # the counting was refused, not skipped
    assert result.exit_code == 0, result.output
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert_exactly(engine_client, index_name, docs, encoder)
    (note,) = [line for line in result.stdout.splitlines() if line.startswith("note: df table")]
    assert note.startswith("note: df table not counted (") and "429" in note
    assert note.endswith(f"); the load itself is complete: run `splade-os df {index_name}-v2 --model MODEL`")
    assert read_df(engine_client, f"{index_name}-v2") is None
    # what the note says to run counts it
    counted = CliRunner().invoke(main, ["df", f"{index_name}-v2", "--tokens", str(_tokens(tmp_path, encoder, docs))])
    assert counted.exit_code == 0, counted.output


def _tokens(tmp_path: Path, encoder: FakeEncoder, docs: list[dict[str, Any]]) -> Path:
    tokens = sorted({t for d in docs for t in encoder.vector(f"{d['title']} {d['text']}")})
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def test_df_tokens_refuses_an_empty_list_and_records_a_list_as_partial_which_loads_and_doctor_never_trust(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    docs = make_docs(12)
    encoder = FakeEncoder()
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", docs[:6]),
        index=index_name,
        encoder=encoder,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp", dead_letter=tmp_path / "dl", bulk=SMALL),
    )
    assert read_df(engine_client, index_name).partial is False  # type: ignore[union-attr]
    (tmp_path / "empty.txt").write_text("\n")
    refused = CliRunner().invoke(main, ["df", index_name, "--tokens", str(tmp_path / "empty.txt")])
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"Error: --tokens {tmp_path / 'empty.txt'} lists no tokens (one per line): give "
        "them, or --model MODEL to count the model's vocabulary"
    )
    assert read_df(engine_client, index_name).partial is False  # type: ignore[union-attr]  # the table is kept

    (tmp_path / "some.txt").write_text("u\ncafé\n", encoding="utf-8")
    listed = CliRunner().invoke(main, ["df", index_name, "--tokens", str(tmp_path / "some.txt")])
    assert listed.exit_code == 0, listed.output
    assert (
        f"note: recorded as partial (only the tokens of {tmp_path / 'some.txt'}): `splade-os df {index_name} "
        "--model MODEL` counts the whole vocabulary" in listed.output
    )
    table = read_df(engine_client, index_name)
    assert table is not None and table.partial and set(table.counts) == {"u", "café"}
    doctor = CliRunner().invoke(main, ["doctor", "--index", index_name])
    (line,) = [line for line in doctor.output.splitlines() if "df" in line and "partial" in line]
    assert f"the table of {index_name}-v1 is partial: counted over 2 listed tokens only" in line

    # A load into the index builds on that table: it says its own is partial, and records it so.
    summary = index_corpus(
        engine_client,
        write_jsonl(tmp_path / "d.jsonl", docs[6:]),
        index=index_name,
        encoder=encoder,
        load=LoadOptions(checkpoint=tmp_path / "cp", dead_letter=tmp_path / "dl", bulk=SMALL),
    )
    assert summary.verified and summary.counters.indexed == 6
    (note,) = [n for n in summary.notes if n.startswith("df table")]
    assert "over the tokens this run sent only" in note and f"splade-os df {index_name}-v1 --model MODEL" in note
    table = read_df(engine_client, index_name)
    assert table is not None and table.partial


# ---- 10. check before creating anything -------------------------------------------------------------------------


def test_a_csv_without_the_text_column_is_refused_before_anything_exists(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _use_model(monkeypatch, FakeEncoder())
    (tmp_path / "docs.csv").write_text("_id,title,body\n1,A,first text\n2,B,second text\n")
    result = _index("docs.csv", "--index", index_name, "--model", "unused")
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()[-1] == "Error: docs.csv has no 'text' column: columns: "
        "_id,title,body; pass --text-field body"
    )
    assert _nothing_named(engine_client, index_name) == []  # no version, no alias, no lock index
    (tmp_path / "docs.tsv").write_text("id\ttitle\ttext\n1\tA\tfirst text\n")
    result = _index("docs.tsv", "--index", index_name, "--model", "unused")
    assert result.output.strip().splitlines()[-1] == (
        "Error: docs.tsv has no '_id' column: columns: id,title,text; pass --id-field id"
    )
    assert _nothing_named(engine_client, index_name) == []
    fixed = _index("docs.csv", "--index", index_name, "--model", "unused", "--text-field", "body")
    assert fixed.exit_code == 0, fixed.output
    assert sorted(landed(engine_client, index_name)) == ["1", "2"]


def test_a_vectors_file_whose_first_records_all_fail_is_refused_before_anything_exists(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [{"_id": f"d{i}", "text": "t", "emb": {"a": 1.0}} for i in range(3)]  # the vectors under another name
    write_jsonl(tmp_path / "v.jsonl", lines)
    result = _index("v.jsonl", "--index", index_name, "--vectors")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: v.jsonl: the first 3 records all fail (line 1: no 'vector' field (choose another with "
        "--vector-field)); nothing was created: fix the input or the options and run again"
    )
    assert _nothing_named(engine_client, index_name) == []
    fixed = _index("v.jsonl", "--index", index_name, "--vectors", "--vector-field", "emb")
    assert fixed.exit_code == 0, fixed.output


def test_a_load_whose_every_record_failed_leaves_no_index_alias_or_lease_behind(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Each vector reads well but holds a token longer than Lucene's terms: every record fails at its batch.
    long = "x" * 40_000
    write_jsonl(tmp_path / "v.jsonl", [{"_id": f"d{i}", "vector": {long: 1.0, "a": 0.5}} for i in range(10)])
    result = _index("v.jsonl", "--index", index_name, "--vectors", "--allow-failures")
    assert result.exit_code == 1
    assert (
        f"every record failed (10 failed, 0 skipped): nothing was indexed, so {index_name}-v1 was removed with "
        f"alias {index_name}" in result.output
    )
    assert _nothing_named(engine_client, index_name) == [lock_index(index_name)]  # the lease's index, released:
    holder, _ = Lease._read(engine_client, lock_index(index_name), index_name)
    assert holder is not None and holder["released"] is True
    assert not state_file(engine_client, index_name, "checkpoint.json").exists()

    # Into an alias with a version readers use: it stays there, even with --allow-failures.
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", make_docs(3)),
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, bulk=SMALL),
    )
    (first,) = aliases.resolve(engine_client, index_name)
    result = _index("v.jsonl", "--index", index_name, "--vectors", "--recreate", "--allow-failures")
    assert result.exit_code == 1 and f"so {first[:-1]}2 was removed\n" in result.output
    assert aliases.resolve(engine_client, index_name) == [first] and aliases.versions(engine_client, index_name) == [
        first
    ]
