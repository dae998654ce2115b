"""How `tune` times its settings and chooses between them, on given measurements (no node needed)."""

from __future__ import annotations

import random
import statistics

from splade_os.evaluation.tuning import (
    Trial,
    TuneResult,
    TwoPhaseSettings,
    choose,
    default_grid,
    format_result,
    measure,
    meets,
    schedule,
)

CANDIDATES: list[TwoPhaseSettings | None] = [None, *default_grid(10)]  # None: exact search


def test_every_pass_runs_every_setting_in_its_own_shuffled_order() -> None:
    orders = schedule(CANDIDATES, 5, random.Random(0))
    assert len(orders) == 5
    for order in orders:
        assert len(order) == len(CANDIDATES) and set(order) == set(CANDIDATES)
    assert len({tuple(map(str, order)) for order in orders}) == 5  # a new order each pass
    assert any(order[0] is not None for order in orders)  # exact search is not always first
    assert schedule(CANDIDATES, 5, random.Random(0)) == orders  # seeded: a run can be repeated
    assert schedule(CANDIDATES, 5, random.Random(1)) != orders


def test_warm_up_runs_every_setting_before_anything_is_timed() -> None:
    calls: list[TwoPhaseSettings | None] = []

    def run(candidate: TwoPhaseSettings | None) -> list[float]:
        calls.append(candidate)
        return [float(len(calls))]  # the call's number stands for its latency

    timed = measure(CANDIDATES, run, repeat=3, warmup=1, seed=0)
    n = len(CANDIDATES)
    assert len(calls) == 4 * n
    assert set(calls[:n]) == set(CANDIDATES)  # the warm-up pass covers every setting once
    for candidate, passes in timed.items():
        assert len(passes) == 3
        assert all(value > n for one_pass in passes for value in one_pass), candidate  # no warm-up call is timed
    for start in range(n, 4 * n, n):
        assert set(calls[start : start + n]) == set(CANDIDATES)  # each timed pass covers every setting
    assert [calls[n : 2 * n], calls[2 * n : 3 * n]] != [CANDIDATES, CANDIDATES]

    calls.clear()
    assert measure(CANDIDATES, run, repeat=1, warmup=0, seed=0)[calls[0]] == [[1.0]]  # no warm-up: timed at once


def _trial(ratio: float | None, agreement: float, passes: list[float], ndcg: float | None = None) -> Trial:
    settings = None if ratio is None else TwoPhaseSettings(ratio=ratio)
    return Trial(settings, agreement, statistics.median(passes), max(passes) + 1.0, ndcg, passes)


EXACT = _trial(None, 1.0, [9.0, 9.5, 10.0])


def test_a_gain_within_the_noise_goes_to_the_safer_setting() -> None:
    fast = _trial(0.5, 0.991, [1.9, 2.0, 2.3])
    safer = _trial(0.4, 0.999, [2.0, 2.1, 2.2])  # slower p50, but its passes overlap the fast one's
    far_safer = _trial(0.1, 1.0, [2.9, 3.0, 3.1])  # clearly slower: the gain over it is real
    failing = _trial(0.9, 0.95, [1.0, 1.0, 1.0])  # fastest of all, but below the target
    assert choose([fast, safer, far_safer, failing], EXACT, 0.99) is safer
    assert choose([fast, far_safer, failing], EXACT, 0.99) is fast
    assert choose([failing], EXACT, 0.99) is None


def test_without_a_spread_the_fastest_setting_wins() -> None:
    fast, safer = _trial(0.5, 0.991, [2.0]), _trial(0.4, 0.999, [2.1])  # one pass each: no noise to go by
    assert choose([safer, fast], EXACT, 0.99) is fast


def test_equal_agreement_within_the_noise_goes_to_the_better_ndcg_then_the_faster() -> None:
    exact = _trial(None, 1.0, [9.0, 10.0], ndcg=0.65)
    a = _trial(0.5, 1.0, [2.0, 2.4], ndcg=0.647)
    b = _trial(0.4, 1.0, [2.1, 2.3], ndcg=0.650)
    c = _trial(0.3, 1.0, [2.0, 2.3], ndcg=0.650)
    assert choose([a, b], exact, 0.99) is b
    assert choose([a, b, c], exact, 0.99) is c  # b and c equally safe: the lower p50
    assert choose([_trial(0.2, 1.0, [2.0], ndcg=0.60)], exact, 0.99) is None  # loses more than 0.005 nDCG@10


def test_with_judgements_the_target_is_the_ndcg_loss_not_agreement() -> None:
    exact = _trial(None, 1.0, [9.0], ndcg=0.650)
    disagrees_but_keeps_quality = _trial(0.5, 0.90, [2.0], ndcg=0.648)
    agrees_but_slower = _trial(0.2, 1.0, [4.0], ndcg=0.650)
    loses_quality = _trial(0.9, 0.95, [1.0], ndcg=0.640)
    trials = [disagrees_but_keeps_quality, agrees_but_slower, loses_quality]
    assert choose(trials, exact, None, 0.005) is disagrees_but_keeps_quality
    assert choose(trials, exact, None, 0.02) is loses_quality  # a looser loss lets the fastest through
    assert choose(trials, exact, 0.99, 0.005) is agrees_but_slower  # an agreement target given as well still binds
    assert choose(trials, exact, None, 0.0) is agrees_but_slower
    assert not meets(loses_quality, exact, None, 0.005) and meets(loses_quality, exact, None, None)


def test_the_text_table_stays_aligned_whatever_the_labels() -> None:
    long = TwoPhaseSettings(first_terms=32, window=300, first_phase_k=256, df_ratio=1.0, top_n=16)
    trials = [_trial(0.5, 0.991, [1.9, 2.0]), Trial(long, 0.995, 2.5, 3.0, None, [2.4, 2.6])]
    result = TuneResult("docs", 1, 2, 10, 0.99, EXACT, trials, chosen=trials[1])
    assert format_result(result).startswith("docs: 1 document, 2 queries, top-10, ")
    header, *rows = format_result(result).splitlines()[2:6]
    assert len(long.describe()) > 42  # longer than the column used to be
    for column in ("agreement", "p50 ms", "p95 ms"):  # each right-aligned number ends where its heading ends
        end = header.index(column) + len(column)
        assert all(row[end - 1] != " " and row[end : end + 1] in (" ", "") for row in rows), (column, rows)
    assert rows[0].startswith(" exact ") and rows[2].startswith(f"*{long.describe()} ")
