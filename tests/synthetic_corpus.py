"""A BEIR-style collection generated from the demo corpus, so engine tests need nothing outside the repository.

Documents: the 42 demo documents, then documents that each recombine 2 to 4 demo sentences (drawn with a fixed
seed, every sentence set used once) under the title of the first sentence's source. Queries: each demo title, and
two word windows from each demo sentence. Judgements: 2 for a document holding the sentence a window came from
(or, for a title, the demo document itself), 1 for a document holding another sentence of the same source.
The same arguments always give the same files.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "examples" / "demo-corpus.jsonl"


@dataclass(frozen=True)
class Sentence:
    source: str  # the demo document's id
    text: str


def demo_documents() -> list[dict[str, str]]:
    return [json.loads(line) for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def demo_sentences(docs: list[dict[str, str]]) -> list[Sentence]:
    return [Sentence(d["_id"], s) for d in docs for s in re.split(r"(?<=[.!?])\s+", d["text"].strip()) if s]


def write_collection(root: Path, *, documents: int = 600, seed: int = 20240611) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under `root`; return `root`."""
    rng = random.Random(seed)
    demo = demo_documents()
    titles = {d["_id"]: d["title"] for d in demo}
    sentences = demo_sentences(demo)
    corpus: list[dict[str, str]] = [dict(d) for d in demo]
    holds: dict[str, set[int]] = {d["_id"]: {i for i, s in enumerate(sentences) if s.source == d["_id"]} for d in demo}
    seen: set[frozenset[int]] = set()
    while len(corpus) < documents:
        picked = rng.sample(range(len(sentences)), rng.randint(2, 4))
        if frozenset(picked) in seen:
            continue
        seen.add(frozenset(picked))
        doc_id = f"mix-{len(corpus) - len(demo):04d}"
        text = " ".join(sentences[i].text for i in picked)
        corpus.append({"_id": doc_id, "title": titles[sentences[picked[0]].source], "text": text})
        holds[doc_id] = set(picked)

    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_source: dict[str, set[int]] = {}
    for i, sentence in enumerate(sentences):
        by_source.setdefault(sentence.source, set()).add(i)
    for d in demo:
        query_id = f"title-{d['_id']}"
        queries[query_id] = d["title"]
        qrels[query_id] = {doc: 1 for doc, held in holds.items() if held & by_source[d["_id"]]}
        qrels[query_id][d["_id"]] = 2
    for i, sentence in enumerate(sentences):
        words = sentence.text.rstrip(".!?").split()
        for window in range(2):
            size = min(len(words), rng.randint(3, 6))
            start = rng.randint(0, len(words) - size)
            query_id = f"window-{i:03d}-{window}"
            queries[query_id] = " ".join(words[start : start + size])
            qrels[query_id] = {
                doc: 2 if i in held else 1 for doc, held in holds.items() if held & by_source[sentence.source]
            }

    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in corpus:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, judged in qrels.items():
            for doc_id, grade in sorted(judged.items()):
                out.write(f"{query_id}\t{doc_id}\t{grade}\n")
    return root
