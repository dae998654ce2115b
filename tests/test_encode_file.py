"""`splade-os encode` checks records with the same rules as `index`: bad ones are named and left out, never guessed.

Every bad record gets one line on stderr (where it is, what is wrong, what to do), every good record is written,
and the exit code is 1 unless --allow-failures. No bad input ever prints a Python traceback.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from splade_os.cli.encode import encode
from splade_os.corpus import FieldNames
from splade_os.errors import ConfigError, InputError
from splade_os.indexing.encode_file import encode_path
from splade_os.model.encoder import SpladeEncoder

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "splade-tiny"


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(BUNDLED, threads=1)


def _run(args: list[str], stdin: bytes | str | None = None) -> Result:
    return CliRunner().invoke(encode, [*args, "--model", str(BUNDLED), "--no-progress"], input=stdin)


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def _ids(text: str) -> list[str]:
    return [json.loads(line)["_id"] for line in text.splitlines()]


def test_bad_records_are_named_the_good_ones_written_and_the_exit_code_is_1(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(
        b'{"_id": "a", "text": "heart attack"}\n'
        b'{"_id": null, "text": "null id"}\n'
        b'{"_id": "b"}\n'
        b'{"_id": "a", "text": "the same id again"}\n'
        b"\n"
        b'{"_id": "c", "text": "caf\xe9 au lait"}\n'
        b'{"_id": "d", "text": "vitamin d", "splade": {"x": 1}}\n'
        b'{"_id": "e", "text": "last one", "title": "kept"}\n'
    )
    out = tmp_path / "vectors.jsonl"
    result = _run([str(corpus), "--output", str(out)])
    _no_traceback(result)
    assert result.exit_code == 1
    assert _ids(out.read_text()) == ["a", "e"]
    lines = result.stderr.splitlines()
    where = str(corpus)
    assert lines == [
        f"{where} line 2: missing id: no '_id' field (choose another with --id-field); not encoded",
        f"{where} line 3 (id 'b'): no 'text' field (choose another with --text-field); not encoded",
        f"{where} line 4 (id 'a'): duplicate id 'a': an earlier record has it and was kept; give each record its "
        "own id; not encoded",
        f"{where} line 6: invalid UTF-8 at byte 25 of the line; not encoded",
        f"{where} line 7 (id 'd'): field 'splade' would be overwritten by the SPLADE vector: rename it in the input; "
        "not encoded",
        "encoded 2 records, 5 bad records left out (listed above)",
        "Error: 5 of 7 records were not encoded: fix those lines and encode them again, or pass --allow-failures to "
        "accept the output without them",
    ]


def test_allow_failures_exits_0_with_the_same_output(tmp_path: Path) -> None:
    stdin = '{"_id": "a", "text": "heart"}\n{"_id": "", "text": "empty id"}\n'
    result = _run(["-", "--allow-failures"], stdin)
    _no_traceback(result)
    assert result.exit_code == 0
    assert _ids(result.stdout) == ["a"]
    assert "<stdin> line 2: missing id: field '_id' is empty; not encoded" in result.stderr
    assert "encoded 1 record, 1 bad record left out" in result.stderr


@pytest.mark.parametrize(
    "stdin",
    [
        b"\xff\xfe not utf-8 at all\n",
        b'{"_id": "x", "text": "\xc3"}\n',
        b"\x00\x01\x02\n",
        b'{"_id": "x", "text": "\\ud800"}\n',
    ],
)
def test_undecodable_input_is_one_line_not_a_traceback(stdin: bytes) -> None:
    result = _run(["-"], stdin)
    _no_traceback(result)
    assert result.exit_code == 1
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith("<stdin> line 1") and first.endswith("; not encoded")


def test_a_good_file_still_exits_0_and_writes_every_record_in_order(tmp_path: Path, encoder: SpladeEncoder) -> None:
    rows = [{"_id": f"d{i}", "title": f"title {i}", "text": f"text number {i}", "year": 2000 + i} for i in range(7)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "vectors.jsonl"
    result = _run([str(corpus), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = encoder.encode_documents([f"title {i} text number {i}" for i in range(7)])
    assert [w["_id"] for w in written] == [r["_id"] for r in rows]
    for line, vector in zip(written, expected, strict=True):
        assert line["vector"] == pytest.approx(vector.to_dict())
    assert result.stderr.strip() == "encoded 7 records"


def test_field_options_choose_id_text_and_title(encoder: SpladeEncoder) -> None:
    stdin = json.dumps({"id": 9, "body": "heart attack", "heading": "Cardiology", "lang": "en"}) + "\n"
    result = _run(["-", "--id-field", "id", "--text-field", "body", "--title-field", "heading"], stdin)
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["_id"] == "9"
    assert line["vector"] == pytest.approx(encoder.encode_documents(["Cardiology heart attack"])[0].to_dict())


def test_a_folder_or_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    result = _run([str(tmp_path)])
    assert result.exit_code == 1 and "is a folder: give the JSON Lines file to encode" in result.stderr
    (tmp_path / "q.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    result = _run([str(tmp_path / "q.jsonl"), "--output", str(tmp_path / "no" / "such" / "dir.jsonl")])
    assert result.exit_code == 1 and "cannot write the output file" in result.stderr
    _no_traceback(result)


def test_library_summary_and_error_lines(tmp_path: Path, encoder: SpladeEncoder) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q1", "text": "heart"}\n{"_id": "q1", "text": "again"}\n{"_id": "q2", "text": "lungs"}\n')
    out = tmp_path / "out.jsonl"
    errors: list[str] = []
    summary = encode_path(encoder, path, out, queries=True, on_error=errors.append)
    assert (summary.read, summary.written, summary.failed) == (3, 2, 1)
    assert _ids(out.read_text()) == ["q1", "q2"]
    assert errors == [
        f"{path} line 2 (id 'q1'): duplicate id 'q1': an earlier record has it and was kept; give each record its "
        "own id; not encoded"
    ]
    stdin = io.BytesIO(b'{"key": "k", "text": "heart"}\n')
    sink = tmp_path / "k.jsonl"
    assert encode_path(encoder, "-", sink, names=FieldNames(id="key"), stdin=stdin).written == 1
    assert _ids(sink.read_text()) == ["k"]
    with pytest.raises(InputError, match="does not exist"):
        encode_path(encoder, tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="cannot write the output file"):
        encode_path(encoder, path, tmp_path)
