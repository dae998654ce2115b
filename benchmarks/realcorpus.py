"""A real-text scale corpus with judged queries, built from what Debian installs.

    apt-get install dict-gcide wordnet-base dict-foldoc dict-jargon dict-devil fortunes \
        python3.11-doc perl-doc linux-doc manpages manpages-dev       # the text sources (see docs/scale.md)
    python benchmarks/realcorpus.py OUT_DIR --documents 500000 --needle scifact/ --needle cranfield/

Writes a BEIR folder to OUT_DIR: `corpus.jsonl` (`_id`, `title`, `text`, `source`), `queries.jsonl` and
`qrels/test.tsv`, plus `provenance.json` (each source's package, version, licence and document count). The haystack
is real English from installed packages: GCIDE dictionary senses and quotations (GPL), WordNet 3.0 glosses and usage
examples (WordNet licence), FOLDOC, Jargon File and Devil's Dictionary entries, fortune cookies, paragraphs of the
Python, Linux and Perl documentation, and manual-page and info-manual paragraphs (each package's own free licence;
pages of packages Debian's archive does not serve are left out, so the corpus does not depend on what else a machine
has installed from elsewhere). The judged part is each `--needle` BEIR collection (SciFact, Cranfield, ...) embedded
whole, its ids prefixed with the collection's name, with its test queries and judgements: their nDCG@10 and R@100
over the whole corpus is the quality measure at scale. Nothing it reads or writes belongs in the repository: the
corpus is rebuilt on each machine from the packages, and a needle's licence (SciFact is non-commercial) travels with
it.

Documents are sampled (seeded) down to `--documents` in all, needles first; every text is whitespace-folded, has
at least `--min-words` words and appears once.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GCIDE = Path("/usr/share/dictd/gcide")
WORDNET = Path("/usr/share/wordnet")
MAN = Path("/usr/share/man")
INFO = Path("/usr/share/info")
DICTD = Path("/usr/share/dictd")
FORTUNES = Path("/usr/share/games/fortunes")
# reStructuredText and POD sources: (name, package, licence, folder, file pattern)
DOC_TREES = [
    ("python", "python3.11-doc", "PSF-2.0", Path("/usr/share/doc/python3.11/html/_sources"), "**/*.rst.txt"),
    ("linux", "linux-doc-6.1", "GPL-2.0", Path("/usr/share/doc/linux-doc-6.1/Documentation"), "**/*.rst.gz"),
    ("perl", "perl-doc", "GPL-1.0-or-later or Artistic-1.0", Path("/usr/share/perl/5.36/pod"), "*.pod"),
]

LICENCES = {
    "gcide": ("dict-gcide", "GPL-2.0-or-later (GCIDE, from Webster's 1913 and WordNet)"),
    "wordnet": ("wordnet-base", "WordNet 3.0 licence (Princeton University; free use, copy and redistribution)"),
    "man": ("manpages and every installed package's pages", "each page's package licence (DFSG-free)"),
    "info": ("every installed package's info manuals", "GFDL or each package's licence (DFSG-free)"),
    "foldoc": ("dict-foldoc", "GFDL-1.1-or-later (Free On-line Dictionary of Computing)"),
    "jargon": ("dict-jargon", "public domain (The Jargon File 4.4.7)"),
    "devil": ("dict-devil", "public domain (Ambrose Bierce, The Devil's Dictionary)"),
    "fortunes": ("fortunes", "BSD-4-Clause; each quotation its author's"),
    **{name: (package, licence) for name, package, licence, _, _ in DOC_TREES},
}


@dataclass(frozen=True)
class Doc:
    source: str
    title: str
    text: str


def fold(text: str) -> str:
    return " ".join(text.split())


# --- GCIDE (dictd format: an index of headword, base64 offset, base64 length; a dictzip'd text) ----------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_GCIDE_MARK = re.compile(r"\[(?:1913 Webster|WordNet 1\.5|PJC|Century Dict\.|[^\]]{0,20}Webster[^\]]*)\]")
_SENSE = re.compile(r"^\s*(?:\d+\.|\([a-z]\))\s+")


def _b64(value: str) -> int:
    number = 0
    for char in value:
        number = number * 64 + _B64.index(char)
    return number


def _gcide_clean(text: str) -> str:
    text = _GCIDE_MARK.sub(" ", text)
    text = re.sub(r"[{}]", "", text)
    return fold(text.replace("\\", ""))


def dictd_entries(base: Path) -> Iterator[tuple[str, str]]:
    """(headword, entry text) of a dictd database, each entry once however many headwords point at it."""
    data = gzip.open(f"{base}.dict.dz").read().decode("utf-8", "replace")
    seen: set[int] = set()
    with open(f"{base}.index", encoding="utf-8") as index:
        for line in index:
            word, offset, length = line.rstrip("\n").split("\t")[:3]
            start = _b64(offset)
            if not word.startswith("00-database") and start not in seen:
                seen.add(start)
                yield word, data[start : start + _b64(length)]


def gcide_docs(base: Path = GCIDE) -> Iterator[Doc]:
    """Each numbered or single sense of an entry, and each quotation (`text --Author.`), titled by headword."""
    for word, entry in dictd_entries(base):
        paragraphs = re.split(r"\n\s*\n", entry.strip("\n"))
        head = re.split(r"\n\s+\d+\.\s", paragraphs[0])[0]
        if "]" in head and not head.rstrip().endswith("]"):
            yield Doc("gcide", word, _gcide_clean(head.rsplit("]", 1)[1]))  # a single sense after the etymology
        for paragraph in paragraphs[1:] + re.split(r"\n(?=\s+\d+\.\s)", paragraphs[0])[1:]:
            if "--" in paragraph and paragraph.startswith("            "):
                quote, _, _author = paragraph.rpartition("--")
                yield Doc("gcide", word, _gcide_clean(quote))
            elif _SENSE.match(paragraph) or paragraph.startswith("   "):
                text = _gcide_clean(_SENSE.sub("", paragraph))
                if not text.startswith(("Syn:", "Usage:", "Note:")):
                    yield Doc("gcide", word, text)


def dictd_docs(name: str, base: Path) -> Iterator[Doc]:
    """Every paragraph of every entry after its headword line (FOLDOC, the Jargon File, the Devil's Dictionary)."""
    for word, entry in dictd_entries(base):
        for paragraph in re.split(r"\n\s*\n", entry.strip("\n"))[1:]:
            yield Doc(name, word, fold(re.sub(r"[{}]", "", paragraph)))


def fortune_docs(root: Path = FORTUNES) -> Iterator[Doc]:
    """Each fortune cookie (the `off/` collection left out), titled by its file."""
    for path in sorted(root.iterdir()):
        if path.is_file() and not path.suffix:
            for cookie in re.split(r"\n%\n", path.read_text(encoding="utf-8", errors="replace")):
                yield Doc("fortunes", path.name, fold(cookie))


# --- WordNet 3.0 data files: `offset lex type count word lexid ... | gloss; "example"; "example"` --------------


def wordnet_docs(root: Path = WORDNET) -> Iterator[Doc]:
    """Each synset's definition and each of its quoted usage examples, titled by its words."""
    for part in ("noun", "verb", "adj", "adv"):
        with (root / f"data.{part}").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  ") or " | " not in line:
                    continue  # the licence header
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                count = int(fields[3], 16)
                words = ", ".join(fields[4 + 2 * i].replace("_", " ") for i in range(count))
                examples = re.findall(r'"([^"]+)"', gloss)
                definition = re.sub(r'"[^"]*"', "", gloss).strip(" ;\n")
                yield Doc("wordnet", words, fold(definition))
                for example in examples:
                    yield Doc("wordnet", words, fold(example))


# --- manual pages (man and mdoc roff) and info manuals: paragraphs ----------------------------------------------

_ROFF_ESCAPES = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\s[+-]?\d"), ""),
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\((?:em|en|hy)"), "-"),
    (re.compile(r"\\\((?:aq|cq|oq)"), "'"),
    (re.compile(r"\\\((?:lq|rq|dq)"), '"'),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), " "),
    (re.compile(r"\\[-e]"), "-"),
    (re.compile(r"\\[&|^%:c,/]"), ""),
    (re.compile(r"\\ "), " "),
]
_BREAKS = {"PP", "P", "LP", "TP", "IP", "HP", "SH", "SS", "Pp", "Sh", "Ss", "It", "Bl", "El", "sp", "br", "TQ"}
_SKIP_BLOCKS = {"TS": "TE", "nf": "fi", "EX": "EE", "de": "..", "Bd": "Ed", "EQ": "EN", "PS": "PE"}


def _roff_text(line: str) -> str:
    for pattern, replacement in _ROFF_ESCAPES:
        line = pattern.sub(replacement, line)
    return line.replace('"', "")


def _prose(text: str, min_words: int) -> bool:
    """Sentences, not code, option lists or tables: enough words, mostly letters."""
    words = text.split()
    letters = sum(char.isalpha() for char in text)
    return len(words) >= min_words and letters >= 0.7 * len(text.replace(" ", ""))


def man_paragraphs(source: str) -> Iterator[tuple[str, str]]:
    """(section heading, paragraph) of one page's roff source; tables, examples and macros dropped."""
    heading, end_block = "", ""
    lines: list[str] = []
    for raw in source.splitlines():
        if end_block:
            if raw.startswith((f".{end_block}", f"'{end_block}")):
                end_block = ""
            continue
        if raw.startswith((".", "'")):
            name, _, args = raw[1:].strip().partition(" ")
            if name in _SKIP_BLOCKS:
                end_block = _SKIP_BLOCKS[name]
            if name in _BREAKS or name in _SKIP_BLOCKS:
                if lines:
                    yield heading, " ".join(lines)
                    lines = []
                if name in {"SH", "Sh", "SS", "Ss"}:
                    heading = _roff_text(args).strip().upper()
                continue
            if name[:1].isupper() and args and name not in {"TH", "Dd", "Dt", "Os", "Nm", "Fl", "Ar"}:
                lines.append(_roff_text(args))  # font macros (.B, .IR, .Em ...) carry their text
            continue
        if raw.strip():
            lines.append(_roff_text(raw))
        elif lines:
            yield heading, " ".join(lines)
            lines = []
    if lines:
        yield heading, " ".join(lines)


def debian_owned(prefix: Path) -> set[str] | None:
    """Installed files under `prefix` whose package Debian's archive serves (None where dpkg is absent): pages of
    packages installed from elsewhere would make the corpus depend on the machine it was built on."""
    owners: dict[str, str] = {}
    lists = list(Path("/var/lib/dpkg/info").glob("*.list"))
    if not lists:
        return None
    for listing in lists:
        package = listing.name.removesuffix(".list").split(":")[0]
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(str(prefix) + "/"):
                owners[line] = package
    found = subprocess.run(["apt-cache", "madison", *sorted(set(owners.values()))], capture_output=True, text=True)
    served = {line.split("|")[0].strip() for line in found.stdout.splitlines() if "debian" in line}
    return {path for path, package in owners.items() if package in served}


def man_docs(root: Path = MAN, min_words: int = 8, only: set[str] | None = None) -> Iterator[Doc]:
    """Paragraphs of the English pages (man1-man8), titled `name(section) SECTION`; links and .so stubs skipped,
    and with `only`, every page not in it."""
    for path in sorted(root.glob("man[1-8]/*")):
        if path.is_symlink() or not path.is_file() or only is not None and str(path) not in only:
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                source = handle.read()
        except (OSError, EOFError):
            continue
        name = path.name.removesuffix(".gz")
        page, _, section = name.rpartition(".")
        for heading, paragraph in man_paragraphs(source):
            text = fold(paragraph)
            if heading not in {"SYNOPSIS", "NAME", "AUTHOR", "AUTHORS", "COPYRIGHT"} and _prose(text, min_words):
                yield Doc("man", f"{page}({section}) {heading}".strip(), text)


def info_docs(root: Path = INFO, min_words: int = 8) -> Iterator[Doc]:
    """Paragraphs of the installed info manuals, titled by manual and node."""
    for path in sorted(root.glob("*.info*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            body = handle.read()
        manual, node = path.name.split(".info")[0], ""
        for paragraph in re.split(r"\n\s*\n", body):
            found = re.search(r"Node: ([^,\n]+)", paragraph)
            if paragraph.startswith("\x1f") or found and paragraph.lstrip("\x1f\n").startswith("File:"):
                node = found.group(1).strip() if found else node
                continue
            if paragraph.lstrip().startswith("*"):
                continue  # menus
            text = fold(paragraph)
            if _prose(text, min_words):
                yield Doc("info", f"{manual}: {node}", text)


_MARKUP = re.compile(r"^(?:\.\.|=|:|\||\+[-=]|[-=~^*#`]{3,}\s*$)")


def _inline(text: str) -> str:
    """reST roles and POD formatting codes reduced to their text."""
    text = re.sub(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)
    text = re.sub(r"[A-Z]<+\s*([^<>]*?)\s*>+", r"\1", text)
    return text.replace("``", "").replace("**", "").replace("`_", "").replace("`", "")


def tree_docs(name: str, root: Path, pattern: str, min_words: int = 8) -> Iterator[Doc]:
    """Prose paragraphs of a documentation tree (reST or POD): directives, tables, literal blocks and headings
    dropped; titled `name: path`."""
    for path in sorted(root.glob(pattern)):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            body = handle.read()
        title = f"{name}: {str(path.relative_to(root)).split('.')[0]}"
        for paragraph in re.split(r"\n\s*\n", body):
            if not paragraph.strip() or paragraph[0].isspace() or _MARKUP.match(paragraph):
                continue  # literal blocks are indented; directives, POD commands and tables start with markup
            lines = [line for line in paragraph.splitlines() if not re.fullmatch(r"\s*[-=~^*#`]{3,}\s*", line)]
            text = fold(_inline(" ".join(lines)))
            if _prose(text, min_words):
                yield Doc(name, title, text)


# --- needles: BEIR collections embedded whole, with their judged test queries -----------------------------------


def read_needle(folder: Path) -> tuple[list[tuple[str, Doc]], dict[str, str], list[tuple[str, str, str]]]:
    name = folder.resolve().name
    docs = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append((f"{name}:{record['_id']}", Doc(name, record.get("title") or "", record.get("text") or "")))
    qrels = []
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            query, doc, score = line.rstrip("\n").split("\t")
            qrels.append((f"{name}:{query}", f"{name}:{doc}", score))
    judged = {query for query, _, _ in qrels}
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if f"{name}:{record['_id']}" in judged:
                queries[f"{name}:{record['_id']}"] = record["text"]
    return docs, queries, qrels


def package_version(package: str) -> str:
    try:
        found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return found.stdout.strip() or "not installed"


def haystack(sources: dict[str, Iterator[Doc]], min_words: int) -> dict[str, list[Doc]]:
    """Each source's documents, once per text across all sources."""
    seen: set[str] = set()
    kept: dict[str, list[Doc]] = {}
    for name, docs in sources.items():
        kept[name] = []
        for doc in docs:
            if len(doc.text.split()) >= min_words and doc.text not in seen:
                seen.add(doc.text)
                kept[name].append(doc)
    return kept


def build(
    out: Path,
    documents: int,
    needles: list[Path],
    sources: dict[str, Iterator[Doc]],
    min_words: int = 4,
    seed: int = 13,
) -> dict:
    """Write the corpus; returns the provenance record (also written as provenance.json)."""
    needle_docs, queries, qrels = [], {}, []
    for folder in needles:
        docs, found_queries, found_qrels = read_needle(folder)
        needle_docs += docs
        queries.update(found_queries)
        qrels += found_qrels
    pools = haystack(sources, min_words)
    pool = [(name, index) for name, docs in pools.items() for index in range(len(docs))]
    room = max(0, documents - len(needle_docs))
    chosen = sorted(random.Random(seed).sample(pool, min(room, len(pool))))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    counts: Counter[str] = Counter()
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, doc in needle_docs:
            counts[doc.source] += 1
            handle.write(json.dumps({"_id": doc_id, "title": doc.title, "text": doc.text, "source": doc.source}) + "\n")
        for name, index in chosen:
            doc = pools[name][index]
            counts[name] += 1
            record = {"_id": f"{name}:{index}", "title": doc.title, "text": doc.text, "source": name}
            handle.write(json.dumps(record) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{query}\t{doc}\t{score}\n" for query, doc, score in qrels)
    provenance = {
        "documents": sum(counts.values()),
        "queries": len(queries),
        "seed": seed,
        "min_words": min_words,
        "sources": {
            name: {
                "available": len(pools.get(name, [])),
                "documents": counts[name],
                "package": LICENCES[name][0],
                "version": package_version(LICENCES[name][0].split()[0]),
                "licence": LICENCES[name][1],
            }
            for name in sources
        },
        "needles": {
            folder.resolve().name: {"documents": counts[folder.resolve().name], "path": folder.name}
            for folder in needles
        },
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance


def default_sources(min_words: int) -> dict[str, Iterator[Doc]]:
    """Every installed source; a missing package says what to install."""
    missing = [
        p for p, path in (("dict-gcide", Path(f"{GCIDE}.index")), ("wordnet-base", WORDNET)) if not path.exists()
    ]
    if missing:
        sys.exit(f"realcorpus: {', '.join(missing)} not installed: run `apt-get install {' '.join(missing)}`")
    prose = max(min_words, 8)
    sources = {
        "gcide": gcide_docs(),
        "wordnet": wordnet_docs(),
        "man": man_docs(min_words=prose, only=debian_owned(MAN)),
        "info": info_docs(min_words=prose),
    }
    for name in ("foldoc", "jargon", "devil"):
        if Path(DICTD, f"{name}.index").exists():
            sources[name] = dictd_docs(name, DICTD / name)
    if FORTUNES.is_dir():
        sources["fortunes"] = fortune_docs()
    for name, package, _, root, pattern in DOC_TREES:
        if root.is_dir():
            sources[name] = tree_docs(name, root, pattern, prose)
        else:
            print(f"realcorpus: {root} absent, {name} left out (apt-get install {package})", file=sys.stderr)
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--documents", type=int, default=500_000, help="documents in all, needles included")
    parser.add_argument("--needle", type=Path, action="append", default=[], help="a BEIR folder to embed (repeat)")
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    for folder in args.needle:
        if not (folder / "corpus.jsonl").is_file():
            sys.exit(f"realcorpus: no BEIR collection at {folder} (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    provenance = build(
        args.out, args.documents, args.needle, default_sources(args.min_words), args.min_words, args.seed
    )
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    main()
