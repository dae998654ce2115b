"""benchmarks/realcorpus.py on a small slice: each source format as Debian ships it, written here in miniature, read
into documents, sampled with the needles kept whole and their judgements re-keyed."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def realcorpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("realcorpus", REPO / "benchmarks" / "realcorpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["realcorpus"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _b64(number: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        digits = alphabet[number % 64] + digits
        number //= 64
        if not number:
            return digits


def write_dictd(base: Path, entries: dict[str, str]) -> None:
    """A dictd database: gzip'd text (dictzip is gzip with an index) and a tab-separated index."""
    body, index = "", []
    for word, entry in entries.items():
        start = len(body.encode())
        body += entry
        index.append(f"{word}\t{_b64(start)}\t{_b64(len(entry.encode()))}\n")
    index.append(f"{list(entries)[0].lower()}\t{index[0].split(chr(9))[1]}\t{index[0].split(chr(9))[2]}")
    base.with_suffix(".dict.dz").write_bytes(gzip.compress(body.encode()))
    base.with_suffix(".index").write_text("".join(index), encoding="utf-8")


GCIDE_ENTRY = (
    'Abandon \\A*ban"don\\, v. t. [OF. abandoner.]\n'
    "   1. To cast or drive out; to banish; to expel; to reject.\n      [1913 Webster]\n\n"
    "            That he might . . . abandon them from him. --Udall.\n      [1913 Webster]\n\n"
    "   2. To give up absolutely; to forsake entirely; to renounce utterly.\n      [1913 Webster]\n\n"
    "   Syn: To give up; yield; forego; cede; surrender.\n\n"
)
ABACUS = 'Abacus \\Ab"a*cus\\, n. [L.] A table or tray strewn with sand, used for calculating.\n\n'
WORDNET_LINE = (
    "00001740 03 n 02 entity 0 physical_entity 0 000 | that which is perceived or known or inferred to have its own "
    'distinct existence; "the entity was living"; "a second example sentence here"  \n'
)
MAN_PAGE = """.TH GREET 1
.SH NAME
greet \\- say hello
.SH DESCRIPTION
.B greet
prints a friendly greeting to the standard output and then exits with
status zero when nothing went wrong.
.PP
.nf
greet --loud
.fi
.SH OPTIONS
.TP
.B \\-\\-loud
Print the greeting in capital letters so that everyone in the room can hear it.
"""
RST = """Title
=====

This paragraph explains what the :func:`frobnicate` function does with ``bytes`` in plain words.

.. note::

   A directive, dropped.

::

    literal block, dropped
"""


def test_each_source_format_becomes_documents(realcorpus: ModuleType, tmp_path: Path) -> None:
    write_dictd(tmp_path / "gcide", {"Abandon": GCIDE_ENTRY, "Abacus": ABACUS})
    gcide = [(d.title, d.text) for d in realcorpus.gcide_docs(tmp_path / "gcide")]
    assert ("Abandon", "To cast or drive out; to banish; to expel; to reject.") in gcide
    assert ("Abandon", "That he might . . . abandon them from him.") in gcide  # a quotation, author cut
    assert ("Abandon", "To give up absolutely; to forsake entirely; to renounce utterly.") in gcide
    assert ("Abacus", "A table or tray strewn with sand, used for calculating.") in gcide  # sense after etymology
    assert not any(text.startswith("Syn:") for _, text in gcide)
    assert len(gcide) == len(set(gcide)) == 4  # the lower-case headword points at an entry already read

    (tmp_path / "wn").mkdir()
    for part in ("noun", "verb", "adj", "adv"):
        lines = "  1 This software and database is being provided\n" + (WORDNET_LINE if part == "noun" else "")
        (tmp_path / "wn" / f"data.{part}").write_text(lines, encoding="utf-8")
    wordnet = [(d.title, d.text) for d in realcorpus.wordnet_docs(tmp_path / "wn")]
    assert wordnet == [
        ("entity, physical entity", "that which is perceived or known or inferred to have its own distinct existence"),
        ("entity, physical entity", "the entity was living"),
        ("entity, physical entity", "a second example sentence here"),
    ]

    (tmp_path / "man" / "man1").mkdir(parents=True)
    (tmp_path / "man" / "man1" / "greet.1.gz").write_bytes(gzip.compress(MAN_PAGE.encode()))
    (tmp_path / "man" / "man1" / "hello.1.gz").symlink_to("greet.1.gz")
    man = [(d.title, d.text) for d in realcorpus.man_docs(tmp_path / "man")]
    assert man == [
        (
            "greet(1) DESCRIPTION",
            "greet prints a friendly greeting to the standard output and then exits with "
            "status zero when nothing went wrong.",
        ),
        ("greet(1) OPTIONS", "--loud Print the greeting in capital letters so that everyone in the room can hear it."),
    ]
    assert list(realcorpus.man_docs(tmp_path / "man", only=set())) == []

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.rst.txt").write_text(RST, encoding="utf-8")
    tree = [(d.title, d.text) for d in realcorpus.tree_docs("py", tmp_path / "docs", "*.rst.txt")]
    assert tree == [
        ("py: guide", "This paragraph explains what the frobnicate function does with bytes in plain words.")
    ]


def test_build_keeps_every_needle_samples_the_rest_and_rekeys_judgements(
    realcorpus: ModuleType, tmp_path: Path
) -> None:
    needle = tmp_path / "tinyfact"
    (needle / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"T{i}", "text": f"needle document number {i} about cells"} for i in range(3)]
    (needle / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    queries = [{"_id": "1", "text": "cells"}, {"_id": "2", "text": "unjudged query"}]
    (needle / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (needle / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td2\t1\n", encoding="utf-8")
    Doc = realcorpus.Doc
    hay = [Doc("wordnet", f"w{i}", f"a plain gloss number {i} of several words") for i in range(50)]
    hay += [Doc("wordnet", "dup", "a plain gloss number 0 of several words"), Doc("wordnet", "short", "too short")]
    out = tmp_path / "out"
    provenance = realcorpus.build(out, 20, [needle], {"wordnet": iter(hay)}, min_words=4, seed=3)

    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == 20 == provenance["documents"]
    assert [d["_id"] for d in corpus[:3]] == ["tinyfact:d0", "tinyfact:d1", "tinyfact:d2"]
    assert len({d["_id"] for d in corpus}) == 20 and len({d["text"] for d in corpus}) == 20
    assert all(d["source"] == "wordnet" and len(d["text"].split()) >= 4 for d in corpus[3:])
    assert provenance["sources"]["wordnet"]["available"] == 50  # the duplicate text and the short one left out
    assert provenance["sources"]["wordnet"]["documents"] == 17 and provenance["needles"]["tinyfact"]["documents"] == 3
    assert (out / "queries.jsonl").read_text() == json.dumps({"_id": "tinyfact:1", "text": "cells"}) + "\n"
    assert (out / "qrels" / "test.tsv").read_text() == "query-id\tcorpus-id\tscore\ntinyfact:1\ttinyfact:d2\t1\n"

    again = tmp_path / "again"
    realcorpus.build(again, 20, [needle], {"wordnet": iter(hay)}, min_words=4, seed=3)
    assert (again / "corpus.jsonl").read_bytes() == (out / "corpus.jsonl").read_bytes()  # seeded: reproducible
