"""The pre-fill threshold: exact binomial boundaries, refusal on small holdouts, monotone answers."""

from __future__ import annotations

import math
import random

import pytest

from backend.prefill import (
    DEFAULT_THRESHOLDS,
    all_correct_rows_needed,
    choose_threshold,
    precision_lower_bound,
    prefill_decisions,
)

pytestmark = pytest.mark.unit

ONE = (0.5,)  # a single threshold: no correction at all


def test_the_bound_of_n_correct_of_n_is_alpha_to_the_one_over_n() -> None:
    for n in (1, 10, 76, 500):
        assert precision_lower_bound(n, n, 0.1) == pytest.approx(0.1 ** (1 / n), rel=1e-12)


def test_the_bound_matches_the_exact_binomial_tail() -> None:
    # the bound L for k of n solves P(Bin(n, L) >= k) = alpha
    k, n, alpha = 90, 100, 0.1
    low = precision_lower_bound(k, n, alpha)
    tail = sum(math.comb(n, i) * low**i * (1 - low) ** (n - i) for i in range(k, n + 1))
    assert tail == pytest.approx(alpha, rel=1e-9)
    assert 0.84 < low < 0.9 and precision_lower_bound(0, 5, alpha) == 0.0


def test_97_percent_at_90_percent_confidence_needs_76_correct_rows_on_one_threshold() -> None:
    assert math.ceil(math.log(0.1) / math.log(0.97)) == 76 == all_correct_rows_needed(0.97, 0.1)
    short = choose_threshold([(0.9, True)] * 75, target=0.97, confidence=0.9, grid=ONE)
    assert short.threshold is None and short.rows_needed == 1 and short.lower_bound is None
    enough = choose_threshold([(0.9, True)] * 76, target=0.97, confidence=0.9, grid=ONE)
    assert enough.threshold == 0.5 and enough.coverage == 1.0 and enough.precision == 1.0
    assert enough.lower_bound == pytest.approx(0.1 ** (1 / 76)) and enough.lower_bound >= 0.97


def test_the_default_grid_tests_each_threshold_at_a_tenth_of_delta_first() -> None:
    needed = all_correct_rows_needed(0.97, 0.01)
    assert needed == math.ceil(math.log(0.01) / math.log(0.97)) == 152
    top = max(DEFAULT_THRESHOLDS)
    assert choose_threshold([(top, True)] * 151, target=0.97, confidence=0.9).threshold is None
    passed = choose_threshold([(top, True)] * 152, target=0.97, confidence=0.9)
    # the top threshold passes at 0.01 and hands its level down, so the lowest is tested at the full 0.1
    assert passed.threshold == min(DEFAULT_THRESHOLDS) and passed.level == pytest.approx(0.1)


def test_an_empty_or_small_holdout_gets_no_threshold_and_says_how_many_rows_are_missing() -> None:
    empty = choose_threshold([], target=0.97, confidence=0.9)
    assert empty.threshold is None and empty.rows == 0 and empty.rows_needed == 152
    assert "at least 152 more correct labelled rows" in empty.reason
    small = choose_threshold([(0.99, True)] * 40 + [(0.7, False)] * 3, target=0.97, confidence=0.9)
    assert small.threshold is None and small.coverage == 0.0 and small.rows_needed == 152 - 40
    assert prefill_decisions([0.99, 1.0], small.threshold) == [False, False]


def test_rows_needed_matches_a_brute_force_search() -> None:
    rng = random.Random(7)
    top = max(DEFAULT_THRESHOLDS)
    for _ in range(12):
        rows = [(rng.uniform(0.5, 1.0), rng.random() < 0.93) for _ in range(rng.randrange(0, 120))]
        report = choose_threshold(rows, target=0.95, confidence=0.9)
        if report.threshold is not None:
            continue
        extra = next(x for x in range(1, 2000) if _qualifies(rows + [(top, True)] * x))
        assert report.rows_needed == extra
        assert report.rows_needed is not None and not _qualifies(rows + [(top, True)] * (extra - 1))


def _qualifies(rows: list[tuple[float, bool]]) -> bool:
    return choose_threshold(rows, target=0.95, confidence=0.9).threshold is not None


def test_a_stricter_target_or_confidence_never_gives_a_lower_threshold() -> None:
    rng = random.Random(11)
    for _ in range(15):
        rows = [(s, rng.random() < 0.6 + 0.4 * s) for s in (rng.uniform(0.5, 1.0) for _ in range(1500))]
        answers = [choose_threshold(rows, target=p, confidence=0.9).threshold for p in (0.8, 0.85, 0.9, 0.95)]
        answers += [choose_threshold(rows, target=0.95, confidence=c).threshold for c in (0.95, 0.99)]
        ranks = [math.inf if t is None else t for t in answers]  # None ranks above every threshold
        assert ranks == sorted(ranks)


def _separated(copies: int) -> list[tuple[float, bool]]:
    """Confident rows (0.9 and up) all correct; a band at 0.6-0.7 right half the time."""
    confident = [(0.9 + 0.1 * i / 300, True) for i in range(300)]
    unsure = [(0.6 + 0.1 * i / 100, i % 2 == 0) for i in range(100)]
    return (confident + unsure) * copies


def test_a_well_separated_holdout_gets_the_gap_and_more_rows_never_raise_it() -> None:
    report = choose_threshold(_separated(1), target=0.97, confidence=0.9)
    # 0.95 holds 150 correct rows (not quite 152), so the fallback passes at 0.9 first and carries to 0.7
    assert report.threshold == 0.7 and report.rows_at_threshold == 300 and report.coverage == 0.75
    assert report.precision == 1.0 and report.lower_bound is not None and report.lower_bound >= 0.97
    thresholds = [choose_threshold(_separated(c), target=0.97, confidence=0.9).threshold for c in (1, 2, 4, 8)]
    assert thresholds == [0.7, 0.7, 0.7, 0.7]
    thin = choose_threshold(_separated(1)[::3], target=0.97, confidence=0.9)  # 100 confident rows: too few
    assert thin.threshold is None and thin.rows_needed == 52


def test_prefill_decisions_compare_each_score_with_the_threshold() -> None:
    assert prefill_decisions([0.69, 0.7, 0.99], 0.7) == [False, True, True]
    assert prefill_decisions([0.99], None) == [False]


def test_to_dict_is_plain_and_complete() -> None:
    out = choose_threshold([(0.9, True)] * 76, target=0.97, confidence=0.9, grid=ONE).to_dict()
    assert out["threshold"] == 0.5 and out["grid"] == [0.5] and out["rows_needed"] is None
    assert out["target"] == 0.97 and out["confidence"] == 0.9 and "fallback" in str(out["method"])


@pytest.mark.parametrize("target, confidence", [(1.0, 0.9), (0.97, 1.0), (0.0, 0.9)])
def test_a_target_or_confidence_outside_zero_one_is_refused(target: float, confidence: float) -> None:
    with pytest.raises(ValueError):
        choose_threshold([], target=target, confidence=confidence)
