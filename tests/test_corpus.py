"""Corpus readers: every format streams records, and every bad record becomes an error value with a reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from splade_os.corpus import CorpusReader, FieldNames, Record, RecordError, detect_format
from splade_os.errors import ConfigError, InputError


def _read(path: Path | str, **kwargs: object) -> list[Record | RecordError]:
    reader = CorpusReader(path, **kwargs)  # type: ignore[arg-type]
    try:
        return list(reader)
    finally:
        reader.close()


def _jsonl(tmp_path: Path, lines: list[bytes | str | dict]) -> Path:
    path = tmp_path / "corpus.jsonl"
    with open(path, "wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            out.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def test_jsonl_beir_layout_and_pass_through_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"_id": "d1", "title": "T", "text": "hello", "metadata": {"year": 2020}}, ""])
    (record,) = _read(path)
    assert record == Record(doc_id="d1", text="hello", title="T", fields={"metadata": {"year": 2020}}, line=1)


def test_every_kind_of_bad_record_is_reported_and_the_stream_goes_on(tmp_path: Path) -> None:
    lines: list[bytes | str | dict] = [
        '{"_id": "a", "text": "fine"}',
        '{"_id": "b", "text": ',  # malformed
        {"text": "no id"},
        {"_id": 1.5, "text": "float id"},
        {"_id": "c", "text": 7},
        {"_id": "d", "title": ["x"], "text": "list title"},
        b'{"_id": "e", "text": "caf\xe9"}',  # Latin-1 byte: invalid UTF-8
        '{"_id": "f", "text": "\\ud800"}',  # lone surrogate escape
        "[1, 2]",
        {"_id": "g", "body": "wrong field"},
        {"_id": 42, "text": "integer ids are fine", "title": None},
    ]
    items = _read(_jsonl(tmp_path, lines))
    reasons = {i.line: i.reason for i in items if isinstance(i, RecordError)}
    assert [i.doc_id for i in items if isinstance(i, Record)] == ["a", "42"]
    assert reasons == {
        2: "malformed JSON: Expecting value at column 22",
        3: "missing id: no '_id' field (choose another with --id-field)",
        4: "id field '_id' must be a string or an integer, got float",
        5: "text field 'text' must be a string, got int",
        6: "title field 'title' must be a string, got list",
        7: "invalid UTF-8 at byte 25 of the line",
        8: "text field 'text' is not valid Unicode (a lone surrogate escape)",
        9: "not a JSON object but list",
        10: "no 'text' field (choose another with --text-field)",
    }


def test_oversized_record_is_skipped_in_bounded_memory_and_the_next_one_read(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"_id": "big", "text": "x" * 5000}, {"_id": "next", "text": "ok"}])
    items = _read(path, max_record_bytes=1000)
    assert isinstance(items[0], RecordError) and "larger than 1000 bytes" in items[0].reason
    assert isinstance(items[1], Record) and items[1].doc_id == "next"


def test_csv_with_quotes_newlines_and_custom_field_names(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text('id,body,heading,lang\n1,"two\nlines, quoted ""x""",H,en\n2,short,,de\n3,too,many,fields,here\n')
    items = _read(path, names=FieldNames(id="id", text="body", title="heading"))
    assert items[0] == Record("1", 'two\nlines, quoted "x"', "H", {"lang": "en"}, line=2)
    assert items[1] == Record("2", "short", "", {"lang": "de"}, line=4)
    assert isinstance(items[2], RecordError) and items[2].reason == "row has 5 fields but the header has 4"


def test_tsv_without_header_and_quotes_kept_literally(tmp_path: Path) -> None:
    path = tmp_path / "collection.tsv"
    path.write_bytes(b'7\tsaid "hi"\n8\tbad \xff byte\n9\tlast\n')
    items = _read(path, names=FieldNames(id="id", text="text"), columns=["id", "text"])
    assert [(i.doc_id, i.text) for i in items if isinstance(i, Record)] == [("7", 'said "hi"'), ("9", "last")]
    assert isinstance(items[1], RecordError) and items[1].reason == "invalid UTF-8 in the row" and items[1].line == 2


def test_beir_folder_and_stdin(tmp_path: Path) -> None:
    _jsonl(tmp_path, [{"_id": "x", "text": "from folder"}])
    assert [r.doc_id for r in _read(tmp_path) if isinstance(r, Record)] == ["x"]
    stdin = io.BytesIO(b'{"_id": "s", "text": "from stdin"}\n')
    assert [r.doc_id for r in _read("-", stdin=stdin) if isinstance(r, Record)] == ["s"]


def test_offsets_and_digest_allow_an_exact_resume(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"_id": str(i), "text": f"doc {i}"} for i in range(10)])
    reader = CorpusReader(path)
    it = iter(reader)
    for _ in range(4):
        next(it)
    offset, line, digest = reader.offset, reader.line, reader.digest()
    rest = [r.doc_id for r in it if isinstance(r, Record)]
    reader.close()

    again = CorpusReader(path)
    again.skip_to(offset, line, digest)
    assert [r.doc_id for r in again if isinstance(r, Record)] == rest == [str(i) for i in range(4, 10)]
    again.close()

    path.write_text(path.read_text().replace("doc 1", "DOC 1"))
    changed = CorpusReader(path)
    with pytest.raises(InputError, match="is not the input of the interrupted run"):
        changed.skip_to(offset, line, digest)
    changed.close()


def test_format_detection_and_missing_inputs(tmp_path: Path) -> None:
    assert [detect_format(n) for n in ("a.jsonl", "b.CSV", "c.tsv", "-")] == ["jsonl", "csv", "tsv", "jsonl"]
    with pytest.raises(ConfigError, match="pass --format"):
        detect_format("corpus.txt")
    with pytest.raises(InputError, match="holds no corpus.jsonl"):
        CorpusReader(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        CorpusReader(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------------------------------------------
# Fields the index writes itself: a record never loses one silently
# ----------------------------------------------------------------------------------------------------------------


def test_fields_the_index_would_overwrite_send_the_record_to_the_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text(
        "id,body,heading,text,title,doc_id,splade,_score,lang\n"
        "1,b1,h1,,,,,,en\n"  # empty CSV cells: nothing to lose
        "2,b2,h2,old text,,,,,en\n"
        "3,b3,h3,,old title,,,,en\n"
        "4,b4,h4,,,other,,,en\n"
        "5,b5,h5,,,,0.5,,en\n"
        "6,b6,h6,,,,,1.0,en\n"
    )
    items = _read(path, names=FieldNames(id="id", text="body", title="heading"))
    reasons = {i.line: i.reason for i in items if isinstance(i, RecordError)}
    fix = "rename it in the input, or choose it with"
    assert reasons == {
        3: f"field 'text' would be overwritten by the text read from 'body': {fix} --text-field",
        4: f"field 'title' would be overwritten by the title read from 'heading': {fix} --title-field",
        5: f"field 'doc_id' would be overwritten by the id read from 'id': {fix} --id-field",
        6: "field 'splade' would be overwritten by the SPLADE vector: rename it in the input",
        7: "field '_score' starts with '_', which OpenSearch keeps for its own metadata: rename it in the input, "
        "or choose it with --id-field, --text-field or --title-field",
    }
    assert {i.doc_id for i in items if isinstance(i, RecordError)} == {"2", "3", "4", "5", "6"}
    assert items[0] == Record("1", "b1", "h1", {"lang": "en"}, line=2)


def test_only_copies_and_nulls_of_written_fields_are_dropped(tmp_path: Path) -> None:
    lines: list[bytes | str | dict] = [
        {"_id": "a", "text": "t", "doc_id": "a", "kept": 1},  # what a re-encoded index holds: doc_id == _id
        {"_id": 7, "text": "t", "doc_id": 7},
        {"_id": "b", "text": "t", "splade": None, "_note": "", "title": None},
        {"_id": "c", "text": "t", "doc_id": "not c"},
        {"_id": "d", "text": "t", "splade": {"heart": 1.0}},
        {"_id": "e", "text": "t", "_source": {"x": 1}},
        {"_id": "f", "text": "t", "doc_id": True},
    ]
    items = _read(_jsonl(tmp_path, lines))
    assert [i for i in items if isinstance(i, Record)] == [
        Record("a", "t", "", {"kept": 1}, line=1),
        Record("7", "t", "", {}, line=2),
        Record("b", "t", "", {}, line=3),
    ]
    failed = {i.doc_id: i.reason.split(":")[0] for i in items if isinstance(i, RecordError)}
    assert failed == {
        "c": "field 'doc_id' would be overwritten by the id read from '_id'",
        "d": "field 'splade' would be overwritten by the SPLADE vector",
        "e": "field '_source' starts with '_', which OpenSearch keeps for its own metadata",
        "f": "field 'doc_id' would be overwritten by the id read from '_id'",
    }


def test_an_id_field_other_than_underscore_id_refuses_a_different_underscore_id(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"id": "1", "_id": "1", "text": "same"}, {"id": "2", "_id": "x9", "text": "other"}])
    items = _read(path, names=FieldNames(id="id"))
    assert items[0] == Record("1", "same", "", {}, line=1)
    assert isinstance(items[1], RecordError) and items[1].reason.startswith("field '_id' starts with '_'")


def test_fields_named_like_the_vector_fields_splade_os_writes_are_refused(tmp_path: Path) -> None:
    lines: list[bytes | str | dict] = [
        {"_id": "a", "text": "t", "splade_first": {"heart": 1.0}},
        {"_id": "b", "text": "t", "splade_first_k64": "mine"},
        {"_id": "c", "text": "t", "splade_first": None, "splade_firstly": 1},
    ]
    items = _read(_jsonl(tmp_path, lines))
    assert [i for i in items if isinstance(i, Record)] == [Record("c", "t", "", {"splade_firstly": 1}, line=3)]
    failed = {i.doc_id: i.reason for i in items if isinstance(i, RecordError)}
    assert failed == {
        doc: f"field {name!r} would be overwritten by the pruned SPLADE vector splade-os writes there: rename it in "
        "the input"
        for doc, name in (("a", "splade_first"), ("b", "splade_first_k64"))
    }
