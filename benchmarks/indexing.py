"""End-to-end indexing speed against encoding alone, in one run, with the same encoder and threads.

    python benchmarks/indexing.py --model models/splade-tiny --corpus ../shared/data/scifact

Encoder-only: every document of the corpus (title + text, as indexing encodes it) through `encode_documents` in
batches of --batch-size. End-to-end: `index_corpus` on the same corpus into a fresh index (read, encode, bulk,
refresh, verify). The ratio end-to-end / encoder-only says how much of the encoder's speed the pipeline keeps; the
target is at least 0.9, which needs encoding and bulk sending to overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from splade_os.corpus import CorpusReader, Record
from splade_os.engines.clients import connect
from splade_os.indexing import BulkOptions, LoadOptions, index_corpus
from splade_os.model.encoder import SpladeEncoder

REPO = Path(__file__).resolve().parents[1]


def encoder_only(encoder: SpladeEncoder, corpus: Path, batch_size: int) -> tuple[int, float]:
    reader = CorpusReader(corpus)
    texts = [f"{r.title} {r.text}".strip() for r in reader if isinstance(r, Record)]
    reader.close()
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        encoder.encode_documents(texts[i : i + batch_size])
    return len(texts), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "splade-tiny")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--index", default="bench-indexing")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark index afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--limit", type=int, help="only the first N documents (a quick check, not the figure)")
    args = parser.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    if args.limit:
        source = CorpusReader(args.corpus).path or args.corpus
        sample = workdir / f"{args.index}-sample.jsonl"
        with open(source, "rb") as full, open(sample, "wb") as out:
            out.writelines(line for _, line in zip(range(args.limit), full, strict=False))
        args.corpus = sample

    encoder = SpladeEncoder(args.model, threads=args.threads)
    encoder.encode_documents(["warm up the session"])
    docs, seconds = encoder_only(encoder, args.corpus, args.batch_size)
    encode_rate = docs / seconds

    client = connect()
    start = time.perf_counter()
    summary = index_corpus(
        client,
        args.corpus,
        index=args.index,
        encoder=encoder,
        load=LoadOptions(
            recreate=True,
            replicas=0,
            checkpoint=workdir / f"{args.index}.checkpoint.json",
            dead_letter=workdir / f"{args.index}.dead-letter.jsonl",
            bulk=BulkOptions(batch_size=args.batch_size),
        ),
    )
    wall = time.perf_counter() - start
    end_to_end = summary.counters.indexed / wall
    figures = {
        "corpus": str(args.corpus),
        "documents": docs,
        "indexed": summary.counters.indexed,
        "verified": summary.verified,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "encoder_only_docs_per_s": round(encode_rate, 1),
        "end_to_end_docs_per_s": round(end_to_end, 1),
        "ratio": round(end_to_end / encode_rate, 3),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    print(f"corpus       : {args.corpus}")
    print(f"encoder only : {docs} documents in {seconds:.1f} s = {encode_rate:,.1f} docs/s ({args.threads} threads)")
    print(f"end to end   : {summary.counters.indexed} documents in {wall:.1f} s = {end_to_end:,.1f} docs/s")
    print(f"ratio        : {figures['ratio']:.3f} (target >= 0.9); {summary.verification}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.keep:
        for name in client.indices.get_alias(name=args.index):
            client.indices.delete(index=name)
    return 0 if summary.verified and not summary.counters.failed else 1


if __name__ == "__main__":
    sys.exit(main())
