"""How counts read in what splade-os prints: "1 document", "2 documents", "1 query", "2 queries"."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 record`, `2 records`, `1,024 records`; `many` for a noun that does not take an s (`query`, `queries`)."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"
