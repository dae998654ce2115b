"""`tune`: pick the two-phase setting for an index from its own queries, and store it with the index.

Two-phase search matches the heavy query terms first and lets a `rescore` window add the light terms' exact
contribution; how heavy is heavy (`ratio` of the largest weight), how deep the window is, and how many query terms
are kept at all (`top_n`) decide both its speed and how often its top-k differs from exact search. The right
values depend on the corpus, its size and the model, so `tune` measures them: the exact top-k of each query first,
then each setting of a small grid (agreement with exact, request latency p50/p95, and nDCG@10 when judgements are
given), and keeps the fastest setting whose mean agreement reaches the target. The choice goes into the index's
`_meta` with the document count and date it was tuned at; `Searcher` uses it by default.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from splade_os.errors import ConfigError, EngineError
from splade_os.mappings import META_KEY
from splade_os.retrieval.two_phase import TUNED_KEY, TwoPhaseSettings

NDCG_TOLERANCE = 0.005  # with judgements, a setting may lose at most this much nDCG@10 against exact search


@dataclass
class Trial:
    """One setting as measured: mean top-k agreement with exact search, latency of the search request."""

    settings: TwoPhaseSettings | None  # None: exact search
    agreement: float
    p50_ms: float
    p95_ms: float
    ndcg: float | None = None

    @property
    def label(self) -> str:
        return "exact" if self.settings is None else self.settings.describe()


@dataclass
class TuneResult:
    index: str
    documents: int
    queries: int
    k: int
    target: float
    exact: Trial
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        def trial(t: Trial) -> dict[str, Any]:
            return {"setting": asdict(t.settings) if t.settings else "exact", "agreement": t.agreement,
                    "p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "ndcg_at_10": t.ndcg}  # fmt: skip

        return {
            "index": self.index, "documents": self.documents, "queries": self.queries, "k": self.k,
            "target": self.target, "exact": trial(self.exact), "trials": [trial(t) for t in self.trials],
            "chosen": trial(self.chosen) if self.chosen else None, "reason": self.reason,
        }  # fmt: skip


def default_grid(k: int) -> list[TwoPhaseSettings]:
    """Phase-one ratios x rescore windows x query pruning: small enough to run in a minute on a large index."""
    grid = [TwoPhaseSettings(ratio=r, window=w * k) for r in (0.1, 0.2, 0.3, 0.4, 0.5) for w in (5, 20, 50, 100)]
    grid += [TwoPhaseSettings(ratio=r, window=w * k, top_n=n) for r in (0.2, 0.4) for w in (20, 100) for n in (16, 32)]
    return grid


def _agreement(found: Sequence[str], exact: Sequence[str]) -> float | None:
    return len(set(found) & set(exact)) / len(exact) if exact else None


def tune(
    searcher: Any,
    queries: Mapping[str, str],
    *,
    k: int = 10,
    target: float = 0.99,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    grid: Sequence[TwoPhaseSettings] | None = None,
    repeat: int = 2,
) -> TuneResult:
    """Measure exact search and every setting of `grid` on `queries` (id -> text) through `searcher` (a `Searcher`
    on the index), and choose the fastest setting whose mean top-k agreement is at least `target` (and, with
    `qrels`, whose nDCG@10 is within 0.005 of exact search). Nothing is stored: see `store`."""
    if not 0 < target <= 1:
        raise ConfigError(f"--target must be in (0, 1], got {target}")
    if not queries:
        raise ConfigError("no queries to tune with: give --queries FILE, or an index with documents to sample")
    client, logic = searcher.client, searcher.logic
    prepared = {qid: logic.encoder.encode_queries([text])[0] for qid, text in queries.items()}
    depth = max(k, 10)

    def ndcg(scored: dict[str, dict[str, float]]) -> float | None:
        if not qrels:
            return None
        from splade_os.evaluation.evaluate import compute_metrics

        judged = {q: dict(r) for q, r in qrels.items() if q in scored}
        run = {q: s for q, s in scored.items() if q in judged}
        return compute_metrics(judged, run, ("nDCG@10",))["nDCG@10"] if judged else None

    # Every setting is timed in each pass, one after the other, so that a busy moment of the cluster or the machine
    # falls on all of them alike instead of on whichever setting happened to run then.
    candidates: list[TwoPhaseSettings | None] = [None, *dict.fromkeys(grid or default_grid(k))]
    requests = {c: {qid: logic.request_for(v, depth, c) for qid, v in prepared.items()} for c in candidates}
    times: dict[TwoPhaseSettings | None, list[float]] = {c: [] for c in candidates}
    scored: dict[TwoPhaseSettings | None, dict[str, dict[str, float]]] = {c: {} for c in candidates}
    for _ in range(repeat):
        for candidate in candidates:
            for qid, body in requests[candidate].items():
                start = time.perf_counter()
                response = client.search(index=logic.index, body=body)
                times[candidate].append((time.perf_counter() - start) * 1000)
                scored[candidate][qid] = {h["_id"]: float(h["_score"]) for h in response["hits"]["hits"]}

    def ranked(candidate: TwoPhaseSettings | None, qid: str) -> list[str]:
        return list(scored[candidate][qid])[:k]  # hits come back best first; dicts keep that order

    def trial(candidate: TwoPhaseSettings | None, agreement: float) -> Trial:
        values = times[candidate]
        return Trial(candidate, agreement, statistics.median(values), float(np.percentile(values, 95)),
                     ndcg(scored[candidate]))  # fmt: skip

    documents = int(client.count(index=logic.index)["count"])
    result = TuneResult(logic.index, documents, len(queries), k, target, trial(None, 1.0))
    for candidate in candidates[1:]:
        values = [a for qid in prepared if (a := _agreement(ranked(candidate, qid), ranked(None, qid))) is not None]
        result.trials.append(trial(candidate, float(np.mean(values)) if values else 1.0))
    passing = [t for t in result.trials if t.agreement >= target and _keeps_ndcg(t, result.exact)]
    if passing:
        result.chosen = min(passing, key=lambda t: (t.p50_ms, t.p95_ms))
    else:
        best = max(result.trials, key=lambda t: t.agreement)
        result.reason = (
            f"no setting reached a top-{k} agreement of {target:g}"
            + (f" within {NDCG_TOLERANCE} nDCG@10 of exact search" if qrels else "")
            + f" (the best: {best.agreement:.3f} with {best.label}): exact search stays the default for two-phase. "
            "Lower --target, or give more queries"
        )
    return result


def _keeps_ndcg(trial: Trial, exact: Trial) -> bool:
    return trial.ndcg is None or exact.ndcg is None or trial.ndcg >= exact.ndcg - NDCG_TOLERANCE


def store(client: Any, index: str, result: TuneResult) -> dict[str, Any]:
    """Write the chosen setting into the `_meta` of every index behind `index` (the rest of `_meta` is kept)."""
    if result.chosen is None or result.chosen.settings is None:
        raise ConfigError(result.reason or "nothing was chosen to store")
    record = {
        **asdict(result.chosen.settings), "documents": result.documents, "k": result.k,
        "agreement": round(result.chosen.agreement, 4), "target": result.target,
        "tuned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    mappings = client.indices.get_mapping(index=index)
    for concrete, body in mappings.items():
        meta = dict(body.get("mappings", {}).get("_meta", {}))
        meta[META_KEY] = {**meta.get(META_KEY, {}), TUNED_KEY: record}
        try:
            client.indices.put_mapping(index=concrete, body={"_meta": meta})
        except Exception as err:
            raise EngineError(f"cannot store the tuned settings in the _meta of {concrete!r}: {err}") from None
    return record


def format_result(result: TuneResult) -> str:
    lines = [
        f"{result.index}: {result.documents:,} documents, {result.queries} queries, top-{result.k}, "
        f"target agreement {result.target:g}",
        f"{'setting':<42} {'agreement':>9} {'nDCG@10':>8} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for trial in [result.exact, *result.trials]:
        mark = "*" if trial is result.chosen else " "
        ndcg = f"{trial.ndcg:.4f}" if trial.ndcg is not None else "-"
        lines.append(f"{mark}{trial.label:<41} {trial.agreement:>9.3f} {ndcg:>8} {trial.p50_ms:>8.2f} "
                     f"{trial.p95_ms:>8.2f}")  # fmt: skip
    if result.chosen is not None:
        lines.append(f"chosen (*): {result.chosen.label}: p50 {result.chosen.p50_ms / result.exact.p50_ms:.2f}x exact")
    else:
        lines.append(result.reason)
    return "\n".join(lines)


def plot(result: TuneResult, path: str) -> None:
    """The frontier as a PNG: latency p50 against agreement for every setting, exact and the choice marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from splade_os.errors import MissingDependencyError

        raise MissingDependencyError("--plot needs matplotlib: pip install 'splade-os[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.p50_ms for t in result.trials], [t.agreement for t in result.trials], label="two-phase settings")
    ax.scatter([result.exact.p50_ms], [1.0], marker="s", color="black", label="exact")
    if result.chosen is not None:
        ax.scatter([result.chosen.p50_ms], [result.chosen.agreement], marker="*", s=200, color="red",
                   label=f"chosen: {result.chosen.label}")  # fmt: skip
    ax.axhline(result.target, linestyle="--", color="grey", label=f"target {result.target:g}")
    ax.set_xlabel("search request p50 (ms)")
    ax.set_ylabel(f"mean top-{result.k} agreement with exact")
    ax.set_title(f"{result.index}: {result.documents:,} documents, {result.queries} queries")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
