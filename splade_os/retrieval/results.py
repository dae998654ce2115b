"""A `SearchResult` as JSON: what `splade-os search --json` prints and `splade-os serve` answers to `/search`."""

from __future__ import annotations

from typing import Any

from splade_os.retrieval.search import Hit, SearchResult


def result_to_json(result: SearchResult, explain: bool) -> dict[str, Any]:
    def hit_json(hit: Hit) -> dict[str, Any]:
        out: dict[str, Any] = {"id": hit.id, "score": hit.score, "title": hit.title}
        if explain:
            out["explanation"] = [{"token": t, "contribution": c} for t, c in hit.explanation or []]
        return out

    return {
        "mode": result.mode,
        "took_ms": round(result.took_ms, 2),
        "notes": list(result.notes),
        "query_terms": dict(result.query_vector.sorted_items()),
        "expansion_terms": sorted(result.expansions),
        "hits": [hit_json(hit) for hit in result.hits],
    }
