"""`tune`: pick the two-phase setting for an index from its own queries, and store it with the index.

Two-phase search matches the heavy query terms first and lets a `rescore` window add the light terms' exact
contribution; how heavy is heavy (`ratio` of the largest weight), how deep the window is, and how many query terms
are kept at all (`top_n`) decide both its speed and how often its top-k differs from exact search. The right
values depend on the corpus, its size and the model, so `tune` measures them: the exact top-k of each query first,
then each setting of a small grid (agreement with exact, request latency p50/p95, and nDCG@10 when judgements are
given), and keeps the fastest setting that meets the target: with judgements, what users feel (nDCG@10 within
`ndcg_loss` of exact search on the judged queries); without them, mean top-k agreement with exact search. The
choice goes into the index's `_meta` with the document count and date it was tuned at; `Searcher` uses it by
default.

Timing is noisy: the first requests of a run pay for cold caches, and a busy moment of the node or the machine
lands on whatever runs then. So every setting (exact search too) is run once untimed first, each timed pass runs
the settings in a new shuffled order (seeded: the same seed gives the same order), and a setting's spread is the
range of its per-pass p50s. A faster setting whose gain is within that spread is no faster as far as the
measurement can tell, and the safer one (higher agreement) is kept instead.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from splade_os.df import read_df
from splade_os.engines.base import PruningConfig
from splade_os.errors import ConfigError, EngineError
from splade_os.mappings import META_KEY
from splade_os.retrieval.two_phase import (
    DEFAULT_DF_RATIO,
    DEFAULT_MAX_RESCORE_WINDOW,
    TUNED_KEY,
    TwoPhaseSettings,
)
from splade_os.words import plural

if TYPE_CHECKING:
    from splade_os.evaluation.evaluate import OnProgress

NDCG_TOLERANCE = 0.005  # with judgements, a setting may lose at most this much nDCG@10 against exact search
DEFAULT_REPEAT = 3  # timed passes: fewer give too thin a spread to tell a real gain from noise
DEFAULT_WARMUP = 1
TITLE_QUERIES_CAVEAT = (
    "queries: titles of documents in the index, whose own document matches them far better than the rest; "
    "agreement on real queries is lower than on these: give --queries (queries your users send) to rely on it"
)
C = TypeVar("C", bound=Hashable)


@dataclass
class Trial:
    """One setting as measured: mean top-k agreement with exact search, latency of the search request."""

    settings: TwoPhaseSettings | None  # None: exact search
    agreement: float
    p50_ms: float  # over every timed request
    p95_ms: float
    ndcg: float | None = None
    pass_p50_ms: list[float] = field(default_factory=list)  # the p50 of each timed pass: its spread is the noise

    @property
    def label(self) -> str:
        return "exact" if self.settings is None else self.settings.describe()

    @property
    def spread_ms(self) -> tuple[float, float]:
        """The lowest and highest per-pass p50."""
        values = self.pass_p50_ms or [self.p50_ms]
        return min(values), max(values)


@dataclass
class TuneResult:
    index: str
    documents: int
    queries: int
    k: int
    target: float | None  # the agreement required; None: judged by nDCG@10 alone
    exact: Trial
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    reason: str = ""
    warmup: int = DEFAULT_WARMUP
    repeat: int = DEFAULT_REPEAT
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    ndcg_loss: float | None = None  # with judgements: the nDCG@10 a setting may lose against exact search

    @property
    def objective(self) -> str:
        """What a setting had to meet, in words."""
        parts = [f"nDCG@10 within {self.ndcg_loss:g} of exact search"] if self.ndcg_loss is not None else []
        if self.target is not None:
            parts.insert(0, f"top-{self.k} agreement of {self.target:g}")
        return " and ".join(parts)

    def passes(self, trial: Trial) -> bool:
        return meets(trial, self.exact, self.target, self.ndcg_loss)

    def to_json(self) -> dict[str, Any]:
        def trial(t: Trial) -> dict[str, Any]:
            return {
                "setting": asdict(t.settings) if t.settings else "exact",
                "agreement": t.agreement,
                "p50_ms": t.p50_ms,
                "p95_ms": t.p95_ms,
                "ndcg_at_10": t.ndcg,
                "p50_per_pass_ms": t.pass_p50_ms,
            }

        return {
            "index": self.index,
            "documents": self.documents,
            "queries": self.queries,
            "k": self.k,
            "target": self.target,
            "ndcg_loss": self.ndcg_loss,
            "warmup": self.warmup,
            "repeat": self.repeat,
            "seed": self.seed,
            "exact": trial(self.exact),
            "trials": [trial(t) for t in self.trials],
            "chosen": trial(self.chosen) if self.chosen else None,
            "reason": self.reason,
            "notes": self.notes,
        }


def default_grid(
    k: int,
    *,
    two_step: bool = False,
    df_rule: bool = False,
    engine_pruning: bool = False,
    pruned_ks: tuple[int, ...] = (),
) -> list[TwoPhaseSettings]:
    """Phase-one ratios x rescore windows x query pruning: small enough to run in a minute on a large index. On an
    index with the pruned first-phase field (`two_step`): the query terms phase one sends to it x rescore windows.
    Each phase-one choice is also tried with the cost rule (`df_rule`: the index has a df table) and with the
    engine's own pruning (`engine_pruning`: the engine has it). An index with candidate pruned fields (`pruned_ks`:
    the k of each of its pruned fields) has the two-step grid tried on each: that is how the pruned field's k is
    chosen."""
    if two_step:
        grid = [
            TwoPhaseSettings(first_terms=q, window=w * k, first_phase_k=field_k)
            for field_k in pruned_ks or (None,)
            for q in (8, 16, 32, 64)
            for w in (5, 10, 30, 100)
        ]
        # Phase one on the full field too: on real text it was exact and faster than any pruned field (docs/scale.md).
        grid += [TwoPhaseSettings(ratio=r, window=w * k, full_field=True) for r in (0.2, 0.4) for w in (5, 20)]
    else:
        grid = [TwoPhaseSettings(ratio=r, window=w * k) for r in (0.1, 0.2, 0.3, 0.4, 0.5) for w in (5, 20, 50, 100)]
        grid += [
            TwoPhaseSettings(ratio=r, window=w * k, top_n=n) for r in (0.2, 0.4) for w in (20, 100) for n in (16, 32)
        ]
    plain = list(grid)
    if df_rule:
        grid += [replace(s, df_ratio=DEFAULT_DF_RATIO) for s in plain]
    if engine_pruning:
        grid += [replace(s, engine_pruning=True) for s in plain]
    return grid


def pruned_ks(logic: Any) -> tuple[int, ...]:
    """The k of each pruned field of the searcher's index when it has candidate fields beside its own; () when it
    has one pruned field (the grid then leaves the field to the index)."""
    candidates = tuple(getattr(logic, "first_phase_candidates", ()))
    return (logic.first_phase_k, *candidates) if candidates else ()


def schedule(candidates: Sequence[C], passes: int, rng: random.Random) -> list[list[C]]:
    """`passes` orders of every candidate, each shuffled anew, so no setting always runs first or after another."""
    return [rng.sample(list(candidates), len(candidates)) for _ in range(passes)]


def measure(
    candidates: Sequence[C], run: Callable[[C], list[float]], *, repeat: int, warmup: int, seed: int
) -> dict[C, list[list[float]]]:
    """The latencies `run(candidate)` returns (one per request), per candidate and timed pass.

    `warmup` untimed passes over every candidate come first: the first requests pay for cold caches, and would
    otherwise count against whichever setting runs first. Every pass runs the candidates in a new shuffled order.
    """
    rng = random.Random(seed)
    for order in schedule(candidates, warmup, rng):
        for candidate in order:
            run(candidate)
    timed: dict[C, list[list[float]]] = {c: [] for c in candidates}
    for order in schedule(candidates, repeat, rng):
        for candidate in order:
            timed[candidate].append(run(candidate))
    return timed


def within_noise(fast: Trial, slow: Trial) -> bool:
    """Whether `fast` is no faster than `slow` as far as the passes tell: its slowest pass was no faster than
    `slow`'s fastest one (with one pass each, whether it was no faster at all)."""
    return fast.spread_ms[1] >= slow.spread_ms[0]


def meets(trial: Trial, exact: Trial, target: float | None, ndcg_loss: float | None = NDCG_TOLERANCE) -> bool:
    """Whether `trial` reaches the agreement `target` (None: none required) and, where both were judged, keeps
    nDCG@10 within `ndcg_loss` (None: not asked) of exact search."""
    if target is not None and trial.agreement < target:
        return False
    if ndcg_loss is None or trial.ndcg is None or exact.ndcg is None:
        return True
    return trial.ndcg >= exact.ndcg - ndcg_loss


def choose(
    trials: Sequence[Trial], exact: Trial, target: float | None, ndcg_loss: float | None = NDCG_TOLERANCE
) -> Trial | None:
    """The setting to store: among those that meet the target (`meets`), the fastest, unless slower ones are within
    the noise of it, when the safest of those (highest agreement, then nDCG@10) wins."""
    passing = [t for t in trials if meets(t, exact, target, ndcg_loss)]
    if not passing:
        return None
    fastest = min(passing, key=lambda t: (t.p50_ms, t.p95_ms))
    alike = [t for t in passing if within_noise(fastest, t)]
    return max(alike, key=lambda t: (t.agreement, -1.0 if t.ndcg is None else t.ndcg, -t.p50_ms, -t.p95_ms))


def _agreement(found: Sequence[str], exact: Sequence[str]) -> float | None:
    return len(set(found) & set(exact)) / len(exact) if exact else None


def tune(
    searcher: Any,
    queries: Mapping[str, str],
    *,
    k: int = 10,
    target: float | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    ndcg_loss: float = NDCG_TOLERANCE,
    grid: Sequence[TwoPhaseSettings] | None = None,
    repeat: int = DEFAULT_REPEAT,
    warmup: int = DEFAULT_WARMUP,
    seed: int = 0,
    on_progress: OnProgress | None = None,
) -> TuneResult:
    """Measure exact search and every setting of `grid` on `queries` (id -> text) through `searcher` (a `Searcher`
    on the index), and choose the fastest setting that meets the target, or a safer one within the noise of it
    (see `choose`). With `qrels` the target is what users feel: nDCG@10 on the judged queries within `ndcg_loss`
    of exact search's (and a top-k agreement of `target` only when one is given); without, a mean top-k
    agreement of `target` (default 0.99). `warmup` untimed passes, then `repeat` timed passes in an order
    shuffled with `seed`. Nothing is stored: see `store`. `on_progress(step, done, total)` follows the work:
    `queries` encoded, then `settings` run over every query (each setting, exact search included, once per
    warm-up and timed pass)."""
    if target is None and not qrels:
        target = 0.99
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"--target must be in (0, 1], got {target}")
    if not 0 <= ndcg_loss < 1:
        raise ConfigError(f"--ndcg-loss must be in [0, 1), got {ndcg_loss}")
    if repeat < 1 or warmup < 0:
        raise ConfigError(f"--repeat must be at least 1 and --warmup at least 0, got {repeat} and {warmup}")
    if not queries:
        raise ConfigError("no queries to tune with: give --queries FILE, or an index with documents to sample")
    client, logic = searcher.client, searcher.logic
    prepared = {}
    for qid, text in queries.items():
        prepared[qid] = logic.encoder.encode_queries([text])[0]
        if on_progress:
            on_progress("queries", len(prepared), len(queries))
    depth = max(k, 10)

    def ndcg(scored: dict[str, dict[str, float]]) -> float | None:
        if not qrels:
            return None
        from splade_os.evaluation.evaluate import compute_metrics

        judged = {q: dict(r) for q, r in qrels.items() if q in scored}
        run = {q: s for q, s in scored.items() if q in judged}
        return compute_metrics(judged, run, ("nDCG@10",))["nDCG@10"] if judged else None

    two_step = bool(getattr(logic, "first_phase_k", None))
    notes: list[str] = []
    if grid is None:
        if logic.df is None:
            try:
                logic.df = read_df(client, logic.index)
            except ConfigError:
                pass  # an alias over several indices: no one table
        if logic.df is None:
            notes.append(f"the cost rule was not tried: {logic.index} has no df table (`splade-os df {logic.index}`)")
        try:
            logic.engine.pruning_options(PruningConfig())
            pruning = True
        except ConfigError:
            pruning = False  # the engine prunes no query tokens itself
        grid = default_grid(
            k,
            two_step=two_step,
            df_rule=logic.df is not None,
            engine_pruning=pruning,
            pruned_ks=pruned_ks(logic) if two_step else (),
        )
    cap = getattr(logic, "max_rescore_window", DEFAULT_MAX_RESCORE_WINDOW)
    over = [s for s in grid if s.window_for(depth, two_step=two_step) > cap]
    if over:
        notes.append(
            f"skipped {plural(len(over), 'setting')} whose rescore window is over {logic.index}'s "
            f"index.max_rescore_window ({cap:,})"
        )
    candidates: list[TwoPhaseSettings | None] = [None, *dict.fromkeys(s for s in grid if s not in over)]
    requests = {c: {qid: logic.request_for(v, depth, c) for qid, v in prepared.items()} for c in candidates}
    scored: dict[TwoPhaseSettings | None, dict[str, dict[str, float]]] = {c: {} for c in candidates}
    runs = [0, len(candidates) * (warmup + repeat)]  # settings run so far, of all passes

    def run(candidate: TwoPhaseSettings | None) -> list[float]:
        elapsed = []
        for qid, body in requests[candidate].items():
            start = time.perf_counter()
            response = client.search(index=logic.index, body=body)
            elapsed.append((time.perf_counter() - start) * 1000)
            scored[candidate][qid] = {h["_id"]: float(h["_score"]) for h in response["hits"]["hits"]}
        runs[0] += 1
        if on_progress:
            on_progress("settings", *runs)
        return elapsed

    times = measure(candidates, run, repeat=repeat, warmup=warmup, seed=seed)

    def ranked(candidate: TwoPhaseSettings | None, qid: str) -> list[str]:
        return list(scored[candidate][qid])[:k]  # hits come back best first; dicts keep that order

    def trial(candidate: TwoPhaseSettings | None, agreement: float) -> Trial:
        values = [ms for one_pass in times[candidate] for ms in one_pass]
        return Trial(
            candidate,
            agreement,
            statistics.median(values),
            float(np.percentile(values, 95)),
            ndcg(scored[candidate]),
            [statistics.median(p) for p in times[candidate]],
        )

    documents = int(client.count(index=logic.index)["count"])
    result = TuneResult(
        logic.index,
        documents,
        len(queries),
        k,
        target,
        trial(None, 1.0),
        warmup=warmup,
        repeat=repeat,
        seed=seed,
        notes=notes,
        ndcg_loss=ndcg_loss if qrels else None,
    )
    for candidate in candidates[1:]:
        values = [a for qid in prepared if (a := _agreement(ranked(candidate, qid), ranked(None, qid))) is not None]
        result.trials.append(trial(candidate, float(np.mean(values)) if values else 1.0))
    result.chosen = choose(result.trials, result.exact, result.target, result.ndcg_loss)
    if result.chosen is not None:
        result.notes += _noise_notes(result, result.chosen)
    elif result.target is None:
        best = max(result.trials, key=lambda t: -1.0 if t.ndcg is None else t.ndcg)
        result.reason = (
            f"no setting reached {result.objective} (the best: nDCG@10 {best.ndcg or 0:.4f} against exact "
            f"{result.exact.ndcg or 0:.4f}, with {best.label}): exact search stays the default for two-phase. "
            "Raise --ndcg-loss, or give more judged queries"
        )
    else:
        best = max(result.trials, key=lambda t: t.agreement)
        result.reason = (
            f"no setting reached a top-{k} agreement of {result.target:g}"
            + (f" within {ndcg_loss:g} nDCG@10 of exact search" if qrels else "")
            + f" (the best: {best.agreement:.3f} with {best.label}): exact search stays the default for two-phase. "
            "Lower --target, or give more queries"
        )
    return result


def _noise_notes(result: TuneResult, chosen: Trial) -> list[str]:
    notes = []
    if result.repeat < 2:
        notes.append("one timed pass: no spread to tell a real gain from noise by; --repeat 3 or more")
    passing = [t for t in result.trials if result.passes(t)]
    fastest = min(passing, key=lambda t: (t.p50_ms, t.p95_ms))
    if fastest is not chosen:
        notes.append(
            f"{fastest.label} had the lowest p50 ({fastest.p50_ms:.2f} ms) but within the noise of the passes; "
            f"kept the safer {chosen.label} (agreement {chosen.agreement:.3f} against {fastest.agreement:.3f})"
        )
    if within_noise(chosen, result.exact):
        notes.append(
            "exact search was as fast within the noise of the passes: two-phase gains nothing measurable on this "
            "index, and `search --mode splade` gives the exact top-k at the same cost"
        )
    return notes


def store(client: Any, index: str, result: TuneResult) -> dict[str, Any]:
    """Write the chosen setting into the `_meta` of every index behind `index` (the rest of `_meta` is kept)."""
    if result.chosen is None or result.chosen.settings is None:
        raise ConfigError(result.reason or "nothing was chosen to store")
    record = {
        **asdict(result.chosen.settings),
        "documents": result.documents,
        "k": result.k,
        "agreement": round(result.chosen.agreement, 4),
        "target": result.target,
        "ndcg_loss": result.ndcg_loss,
        "ndcg": None if result.chosen.ndcg is None else round(result.chosen.ndcg, 4),
        "tuned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
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
        f"{result.index}: {plural(result.documents, 'document')}, {plural(result.queries, 'query', 'queries')}, "
        f"top-{result.k}, target: {result.objective}",
        f"timing: {result.warmup} untimed warm-up pass(es), then {result.repeat} timed pass(es), the settings in a "
        f"shuffled order each pass (--seed {result.seed}); p50 range: lowest and highest per-pass p50",
    ]
    trials = [result.exact, *result.trials]
    width = max(41, *(len(t.label) for t in trials))  # the longest label sets the column: the numbers stay aligned
    lines.append(
        f"{'setting':<{width + 1}} {'agreement':>9} {'nDCG@10':>8} {'p50 ms':>8} {'p50 range':>13} {'p95 ms':>8}"
    )
    for trial in trials:
        mark = "*" if trial is result.chosen else " "
        ndcg = f"{trial.ndcg:.4f}" if trial.ndcg is not None else "-"
        low, high = trial.spread_ms
        lines.append(
            f"{mark}{trial.label:<{width}} {trial.agreement:>9.3f} {ndcg:>8} {trial.p50_ms:>8.2f} "
            f"{f'{low:.2f}-{high:.2f}':>13} {trial.p95_ms:>8.2f}"
        )
    if result.chosen is not None:
        lines.append(f"chosen (*): {result.chosen.label}: p50 {result.chosen.p50_ms / result.exact.p50_ms:.2f}x exact")
    else:
        lines.append(result.reason)
    lines += [f"note: {note}" for note in result.notes]
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
    judged = result.ndcg_loss is not None and result.exact.ndcg is not None

    def quality(t: Trial) -> float:
        return (t.ndcg or 0.0) if judged else t.agreement

    fig, ax = plt.subplots(figsize=(7, 4.5))
    spread = np.array([[t.p50_ms - t.spread_ms[0], t.spread_ms[1] - t.p50_ms] for t in result.trials]).T
    ax.errorbar(
        [t.p50_ms for t in result.trials],
        [quality(t) for t in result.trials],
        xerr=spread,
        fmt="o",
        label="two-phase settings (p50, per-pass range)",
    )
    ax.scatter([result.exact.p50_ms], [quality(result.exact)], marker="s", color="black", label="exact")
    if result.chosen is not None:
        ax.scatter(
            [result.chosen.p50_ms],
            [quality(result.chosen)],
            marker="*",
            s=200,
            color="red",
            label=f"chosen: {result.chosen.label}",
        )
    if judged:
        floor = quality(result.exact) - (result.ndcg_loss or 0.0)
        ax.axhline(floor, linestyle="--", color="grey", label=f"exact nDCG@10 - {result.ndcg_loss:g}")
        ax.set_ylabel("nDCG@10 on the judged queries")
    else:
        ax.axhline(result.target or 0.0, linestyle="--", color="grey", label=f"target {result.target:g}")
        ax.set_ylabel(f"mean top-{result.k} agreement with exact")
    ax.set_xlabel("search request p50 (ms)")
    ax.set_title(f"{result.index}: {result.documents:,} documents, {result.queries} queries")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
