"""Bulk indexing that loses nothing: stream records, encode, send, and account for every single one.

The main thread reads and encodes batch N+1 while a sender thread bulk-sends batch N (onnxruntime releases the GIL).
Every record read ends as exactly one of indexed, failed (written to the dead-letter file with the reason) or
skipped, and the index's document count is checked against that at the end.

Resume: after each acknowledged batch the sender writes a checkpoint with the input's byte offset, a digest of the
bytes before it and the counters. Before sending a batch it records the batch's ids as `pending`, so after a crash
between send and acknowledgement the ids that did land are found with one `mget` and are not encoded again. The
corpus id is the `_id`, so sending a document twice can never duplicate it.

`index_corpus_on_ray` (needs the ray extra) spreads the same load over a pool of Ray workers, block by block.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use: `splade-os encode` reads splade_os.indexing.encode_file and needs neither the loader nor the
# Ray glue nor the engine clients these pull in. Type checkers read the same names below.
_LAZY = {
    "SpladeRecipe": "block_worker",
    "RayWorkers": "distributed",
    "index_corpus_on_ray": "distributed",
    "Counters": "ledger",
    "default_checkpoint": "ledger",
    "default_dead_letter": "ledger",
    "IndexSummary": "load",
    "index_corpus": "load",
    "reencode_index": "load",
    "BulkOptions": "options",
    "LoadOptions": "options",
    "DocumentEncoder": "pipeline",
    "IndexingInterrupted": "pipeline",
    "IndexingRefused": "pipeline",
    "Progress": "pipeline",
    "IndexSource": "sources",
}

if TYPE_CHECKING:
    from splade_os.indexing.block_worker import SpladeRecipe
    from splade_os.indexing.distributed import RayWorkers, index_corpus_on_ray
    from splade_os.indexing.ledger import Counters, default_checkpoint, default_dead_letter
    from splade_os.indexing.load import IndexSummary, index_corpus, reencode_index
    from splade_os.indexing.options import BulkOptions, LoadOptions
    from splade_os.indexing.pipeline import DocumentEncoder, IndexingInterrupted, IndexingRefused, Progress
    from splade_os.indexing.sources import IndexSource

__all__ = [
    "BulkOptions",
    "Counters",
    "DocumentEncoder",
    "IndexSource",
    "IndexSummary",
    "IndexingInterrupted",
    "IndexingRefused",
    "LoadOptions",
    "Progress",
    "RayWorkers",
    "SpladeRecipe",
    "default_checkpoint",
    "default_dead_letter",
    "index_corpus",
    "index_corpus_on_ray",
    "reencode_index",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
