"""`splade-os index --vectors`: vectors made elsewhere indexed as they are, against the real node (both engines).

The same guarantees as an encoding load: every record indexed, failed (with the reason) or skipped, the count
verified, a crash then `--resume` giving every document once; and vectors checked against the vocabulary of the
index, with one error and nothing sent when they are in another.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, REPO, unavailable
from helpers import versions_left
from opensearchpy import OpenSearch
from synthetic_corpus import write_collection
from test_indexing_engine import SMALL, FakeEncoder, landed, make_docs, write_jsonl

from splade_os import aliases
from splade_os.cli.encode import encode as encode_command
from splade_os.cli.index import index as index_command
from splade_os.engines import engine_for
from splade_os.errors import EncoderMismatchError
from splade_os.indexing import LoadOptions, index_corpus
from splade_os.indexing.precomputed import PrecomputedVectors, vocabulary_sha256
from splade_os.mappings import VECTOR_FIELD, read_index_meta
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import Searcher
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

QUERIES = ["how do vaccines train the immune system", "ocean tides and the moon", "python programming language"]


def need_model() -> None:
    if not (BUNDLED_MODEL / "manifest.json").is_file():
        unavailable(f"no exported model at {BUNDLED_MODEL}")


def vector_lines(docs: list[dict[str, Any]], encoder: FakeEncoder) -> list[dict[str, Any]]:
    """The documents with the vector the fake encoder gives them, as a file made elsewhere would carry it."""
    return [{**d, "vector": encoder.vector(f"{d['title']} {d['text']}").to_dict()} for d in docs]


def index_args(corpus: Path, alias: str, tmp: Path, *more: str) -> list[str]:
    return [
        str(corpus),
        "--index",
        alias,
        "--vectors",
        "--replicas",
        "0",
        "--checkpoint",
        str(tmp / "cp.json"),
        "--dead-letter",
        str(tmp / "dead.jsonl"),
        *more,
    ]


def test_encode_then_index_vectors_ranks_and_scores_like_indexing_with_the_model(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    need_model()
    corpus = write_collection(tmp_path, documents=64) / "corpus.jsonl"
    encoded = tmp_path / "vectors.jsonl"
    runner = CliRunner()
    made = runner.invoke(
        encode_command, [str(corpus), "--output", str(encoded), "--model", str(BUNDLED_MODEL), "--no-progress"]
    )
    assert made.exit_code == 0, made.output
    by_model, from_file = f"{index_name}-model", f"{index_name}-file"
    common = ["--replicas", "0", "--checkpoint", str(tmp_path / "cp.json"), "--dead-letter", str(tmp_path / "d")]
    first = runner.invoke(index_command, [str(corpus), "--index", by_model, "--model", str(BUNDLED_MODEL), *common])
    assert first.exit_code == 0, first.output
    second = runner.invoke(index_command, [str(encoded), "--index", from_file, "--vectors", *common])  # no model
    assert second.exit_code == 0, second.output
    assert f"verified: {from_file}-v1 holds 64 documents" in second.output

    with (
        SpladeEncoder(BUNDLED_MODEL) as encoder,
        Searcher(by_model, encoder, client=engine_client) as a,
        Searcher(from_file, encoder, client=engine_client) as b,
    ):
        for query in QUERIES:
            expected, got = a.search(query, k=10).hits, b.search(query, k=10).hits
            assert len(expected) == 10
            assert [h.id for h in got] == [h.id for h in expected], query
            assert [h.score for h in got] == pytest.approx([h.score for h in expected], rel=1e-6)
    meta = read_index_meta(engine_client, from_file)
    assert meta["encoder"] == {"name": "precomputed", "sha256": None, "vocabulary": None}  # nothing to check against


def test_bad_vectors_are_dead_lettered_with_the_reason_and_the_rest_indexed(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    engine = engine_for(engine_client)
    good = vector_lines(make_docs(20), FakeEncoder())
    good[0] |= {"lang": "en"}  # the user's own fields are stored, as in an encoding load
    good[1] = {"_id": good[1]["_id"], "vector": good[1]["vector"]}  # no text at all: the vector is the document
    dots = "." * 11_000  # 11,000 bytes, 33,000 once OpenSearch escapes it: over Lucene's 32,766 there only
    bad = {
        "list": ([["a", 1.0]], "a JSON object of token: weight, got an array"),
        "string": ("a:1", "got a string"),
        "zero": ({"a": 1.0, "b": 0}, "token 'b' has the weight 0.0: weights must be positive"),
        "negative": ({"a": -0.5}, "token 'a' has the weight -0.5: weights must be positive"),
        "nan": ({"a": math.nan}, "token 'a' has the weight nan: weights must be finite"),
        "infinite": ({"a": math.inf}, "token 'a' has the weight inf: weights must be finite"),
        "text": ({"a": "1.5"}, "token 'a' has a weight that is not a number (a string)"),
        "boolean": ({"a": True}, "token 'a' has a weight that is not a number (a boolean)"),
        "empty-key": ({"": 1.0}, "an empty token"),
        "subnormal": ({"a": 1e-40}, "outside what a 32-bit float stores"),
        "too-large": ({"a": 1e39}, "outside what a 32-bit float stores"),
        "immense": ({"a" * 33_000: 1.0}, "bytes a term may have"),
    }
    lines = [json.dumps(d, ensure_ascii=False) for d in good]
    lines += [json.dumps({"_id": name, "vector": v}, allow_nan=True) for name, (v, _) in bad.items()]
    lines += [
        json.dumps({"_id": "missing", "text": "no vector"}),
        json.dumps({"_id": "empty", "vector": {}}),
        json.dumps({"_id": "dots", "vector": {dots: 1.0}}),
    ]
    corpus = tmp_path / "vectors.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dead = tmp_path / "dead.jsonl"

    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=PrecomputedVectors(),
        load=LoadOptions(replicas=0, dead_letter=dead, checkpoint=tmp_path / "cp.json", bulk=SMALL),
    )

    stored_dots = engine.name == "elasticsearch"  # sparse_vector keeps the dots as they are
    c = summary.counters
    failed = len(bad) + 1 + (0 if stored_dots else 1)
    assert (c.read, c.failed, c.skipped, c.indexed) == (35, failed, 1, 34 - failed)
    assert summary.verified, summary.verification  # the count checks out: read - failed - skipped
    letters = {e["doc_id"]: e for e in map(json.loads, dead.read_text(encoding="utf-8").splitlines())}
    for name, (_, reason) in bad.items():
        assert reason in letters[name]["reason"] and letters[name]["outcome"] == "failed", (name, letters[name])
    assert "no 'vector' field (choose another with --vector-field)" in letters["missing"]["reason"]
    assert (letters["empty"]["outcome"], letters["empty"]["reason"]) == ("skipped", "empty vector: nothing to index")
    assert ("dots" in letters) is not stored_dots
    got = landed(engine_client, index_name)
    assert sorted(got) == sorted([d["_id"] for d in good] + (["dots"] if stored_dots else []))
    for doc in good:  # every weight exactly as given, no token dropped
        assert engine.from_field(got[doc["_id"]][VECTOR_FIELD]) == SparseVector(doc["vector"])
        assert got[doc["_id"]]["doc_id"] == doc["_id"] and got[doc["_id"]]["text"] == doc.get("text", "")
    assert got["d0"]["lang"] == "en" and "vector" not in got["d0"]  # the input vector field is not stored again


def test_vectors_in_another_vocabulary_are_one_error_and_nothing_is_sent(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    need_model()
    docs = vector_lines(make_docs(10), FakeEncoder())  # whole words: "café" is no token of BERT's uncased vocabulary
    corpus = write_jsonl(tmp_path / "vectors.jsonl", docs)
    args = index_args(corpus, index_name, tmp_path, "--model", str(BUNDLED_MODEL))

    refused = CliRunner().invoke(index_command, args)

    assert refused.exit_code == 1
    line = refused.output.strip()
    assert "\n" not in line and "'splade-tiny' (30522 tokens), which the index's vectors use" in line, line
    assert "'café'" in line and "nothing of this batch was sent" in line
    assert not versions_left(engine_client, index_name)
    assert not aliases.resolve(engine_client, index_name)
    assert not (tmp_path / "cp.json").exists()  # the corrected command needs neither --resume nor --recreate

    fixed = CliRunner().invoke(index_command, index_args(corpus, index_name, tmp_path))  # unchecked: no --model
    assert fixed.exit_code == 0, fixed.output
    assert len(landed(engine_client, index_name)) == 10


def test_an_index_of_another_encoder_refuses_vectors_before_anything_is_sent(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    need_model()
    fake = FakeEncoder()
    docs = make_docs(6)
    index_corpus(
        engine_client,
        write_jsonl(tmp_path / "c.jsonl", docs),
        index=index_name,
        encoder=fake,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp0.json", dead_letter=tmp_path / "d0", bulk=SMALL),
    )
    more = write_jsonl(tmp_path / "v.jsonl", vector_lines(make_docs(4, prefix="x"), fake))
    vectors = PrecomputedVectors.from_model(BUNDLED_MODEL)

    with pytest.raises(EncoderMismatchError) as refused:
        index_corpus(
            engine_client,
            more,
            index=index_name,
            encoder=vectors,
            load=LoadOptions(checkpoint=tmp_path / "cp.json", dead_letter=tmp_path / "d", bulk=SMALL),
        )

    message = str(refused.value)
    assert "built with encoder 'fake'" in message and "the vocabulary of 'splade-tiny'" in message
    assert sorted(landed(engine_client, index_name)) == sorted(d["_id"] for d in docs)
    # Without the model nothing can be checked: the vectors go in, and the run says it could not check.
    summary = index_corpus(
        engine_client,
        more,
        index=index_name,
        encoder=PrecomputedVectors(),
        load=LoadOptions(checkpoint=tmp_path / "cp.json", dead_letter=tmp_path / "d", bulk=SMALL),
    )
    assert summary.verified and summary.counters.indexed == 4 and len(landed(engine_client, index_name)) == 10


def test_an_index_built_from_checked_vectors_records_their_vocabulary(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    need_model()
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        vectors = encoder.encode_documents(["tides follow the moon", "vaccines train the immune system"])
    corpus = write_jsonl(tmp_path / "v.jsonl", [{"_id": str(i), "vector": v.to_dict()} for i, v in enumerate(vectors)])
    checked = PrecomputedVectors.from_model(BUNDLED_MODEL)
    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=checked,
        load=LoadOptions(replicas=0, checkpoint=tmp_path / "cp.json", dead_letter=tmp_path / "d", bulk=SMALL),
    )
    assert summary.verified and summary.counters.indexed == 2
    recorded = read_index_meta(engine_client, index_name)["encoder"]
    assert recorded["name"] == "precomputed" and recorded["vocabulary"]["name"] == "splade-tiny"
    assert recorded["vocabulary"]["sha256"] == vocabulary_sha256(checked.vocabulary or ())
    other = PrecomputedVectors(["tides", "moon"], "tiny-vocab")
    with pytest.raises(EncoderMismatchError, match="vocabulary of 'splade-tiny'.*vocabulary of 'tiny-vocab'"):
        index_corpus(
            engine_client,
            corpus,
            index=index_name,
            encoder=other,
            load=LoadOptions(checkpoint=tmp_path / "cp.json", dead_letter=tmp_path / "d", bulk=SMALL),
        )


# `splade-os index` in a process that dies once the batch holding d4 (its second) has landed, before its checkpoint
# records it: the checkpoint then lists that batch as pending, exactly as after a crash at that instant.
DIES_AFTER_A_LANDED_BATCH = textwrap.dedent(
    """
    import sys

    from test_indexing_engine import die_once_landed
    from splade_os.cli import main

    die_once_landed("d4")
    main(sys.argv[1:], prog_name="splade-os")
    """
)


def test_a_crash_after_a_batch_landed_then_resume_indexes_every_document_once(
    engine_client: OpenSearch, index_name: str, tmp_path: Path
) -> None:
    docs = vector_lines(make_docs(12), FakeEncoder())
    corpus = write_jsonl(tmp_path / "vectors.jsonl", docs)
    args = index_args(corpus, index_name, tmp_path, "--batch-size", "4")  # 3 batches
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    crashed = subprocess.run(
        [sys.executable, "-c", DIES_AFTER_A_LANDED_BATCH, "index", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == 3, crashed.stderr
    pending = json.loads((tmp_path / "cp.json").read_text(encoding="utf-8"))["pending_ids"]
    assert pending == ["d4", "d5", "d6", "d7"]

    resumed = CliRunner().invoke(index_command, [*args, "--resume"])

    assert resumed.exit_code == 0, resumed.output
    assert "read 12, indexed 12, failed 0, skipped 0" in resumed.output and "resumed: 4 documents" in resumed.output
    got = landed(engine_client, index_name)  # fails on an id seen twice
    assert sorted(got) == sorted(d["_id"] for d in docs)
    engine = engine_for(engine_client)
    assert all(engine.from_field(got[d["_id"]][VECTOR_FIELD]) == SparseVector(d["vector"]) for d in docs)


def test_cli_vectors_options(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "v.jsonl", [{"_id": "1", "vector": {"a": 1.0}}])
    runner = CliRunner()
    no_model = runner.invoke(index_command, [str(corpus), "--index", "x"], env={"SPLADE_OS_MODEL": None})
    assert no_model.exit_code == 2 and "give --model (or set SPLADE_OS_MODEL), or --vectors" in no_model.output
    field_alone = runner.invoke(index_command, [str(corpus), "--index", "x", "--vector-field", "v"])
    assert field_alone.exit_code == 2 and "--vector-field goes with --vectors" in field_alone.output
    pruned = runner.invoke(index_command, [str(corpus), "--index", "x", "--vectors", "--top-k", "5"])
    assert pruned.exit_code == 2 and "--top-k change how text is encoded" in pruned.output
    table = runner.invoke(index_command, [str(corpus), "--index", "x", "--vectors", "--format", "csv"])
    assert table.exit_code == 2 and "--vectors reads JSON Lines" in table.output
