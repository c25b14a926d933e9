"""The pre-fill threshold of a project line, chosen on its frozen holdout with a precision guarantee.

Rows are the line's labelled holdout rows (never trained on): the model's score and whether its label matched
the annotator's. The answer is the lowest threshold `t` of a fixed grid such that, with probability at least
`confidence` over the draw of the holdout, precision among rows scoring at least `t` is at least `target`, as
in Selection with Guaranteed Risk (Geifman & El-Yaniv, 2017), with precision for risk.

Each threshold is one hypothesis, H_t: precision(t) < target. It is rejected at level a when the one-sided
Clopper-Pearson lower bound (Clopper & Pearson, 1934) on the precision of its rows, the a-quantile of
Beta(k, n - k + 1) for k correct of n, reaches the target; that is the exact binomial test of H_t.

Trying several thresholds needs a family-wise correction. The grid is fixed before the data are seen (the
default is ten scores from 0.999 down to 0.5), and the thresholds are tested from high to low with the fallback
procedure (Wiens, 2003; a graphical procedure in the sense of Bretz et al., 2009, which Learn then Test,
Angelopoulos et al., 2021, allows): each threshold owns delta / K of the error budget delta = 1 - confidence,
and a rejected threshold passes its whole level on to the next one down. It controls the family-wise error at
delta under any dependence, so every rejected threshold holds at once and taking the lowest is safe.
Why not the other two: Bonferroni (every threshold at delta / K) is never more powerful than the fallback, and
plain fixed-sequence testing (all of delta on the top threshold, stop at the first failure) stops at once
when only a few rows score above the top of the grid, which is the usual case; the fallback keeps going and,
once a threshold passes, gets fixed-sequence's full level for the ones below it.

When nothing qualifies there is no threshold (never an invented one), and the report says how many more
correct labelled rows are needed at the least: the fewest all-correct rows scoring above the whole grid which,
added to the holdout, would make some threshold qualify. With no errors, a threshold tested at level a needs
n rows with a ** (1 / n) >= target: 76 rows for 97% at 90% on one threshold, 152 at delta / 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
METHOD = "clopper-pearson lower bound; fallback procedure over a fixed threshold grid, high to low"


@dataclass(frozen=True)
class PrefillThreshold:
    """The chosen threshold (None when none qualifies) and the evidence behind it; JSON-able via to_dict()."""

    threshold: float | None
    coverage: float  # share of the rows scoring at least threshold; 0.0 without one
    rows: int  # labelled holdout rows given
    rows_at_threshold: int
    precision: float | None  # observed among rows_at_threshold
    lower_bound: float | None  # the Clopper-Pearson bound threshold passed, at level `level`
    level: float | None  # the error level the procedure tested threshold at (at least delta / K)
    target: float
    confidence: float
    method: str
    grid: tuple[float, ...]
    rows_needed: int | None  # without a threshold: at least this many more correct labelled rows
    reason: str

    def to_dict(self) -> dict[str, object]:
        """Plain values for storage; the grid as a list."""
        out = asdict(self)
        out["grid"] = list(self.grid)
        return out


def precision_lower_bound(correct: int, n: int, alpha: float) -> float:
    """The one-sided Clopper-Pearson lower bound on precision at error level alpha; 0.0 when nothing is correct."""
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be between 0 and n, got {correct} of {n}")
    if correct == 0:
        return 0.0
    from scipy.special import betaincinv  # scipy costs the API a quarter second at start-up: loaded on first use

    return float(betaincinv(correct, n - correct + 1, alpha))


def all_correct_rows_needed(target: float, alpha: float) -> int:
    """The fewest all-correct rows whose Clopper-Pearson bound at level alpha reaches target (alpha ** (1/n))."""
    n = max(1, math.ceil(math.log(alpha) / math.log(target)))
    while n > 1 and precision_lower_bound(n - 1, n - 1, alpha) >= target:
        n -= 1
    while precision_lower_bound(n, n, alpha) < target:
        n += 1
    return n


def prefill_decisions(scores: Sequence[float], threshold: float | None) -> list[bool]:
    """Per score, whether to pre-fill the model's label: score >= threshold; nothing without a threshold."""
    if threshold is None:
        return [False] * len(scores)
    return [score >= threshold for score in scores]


def choose_threshold(
    rows: Sequence[tuple[float, bool]],
    *,
    target: float,
    confidence: float,
    grid: Sequence[float] = DEFAULT_THRESHOLDS,
) -> PrefillThreshold:
    """The lowest grid threshold whose precision is at least target with the given confidence, or None and why."""
    thresholds = _check(target, confidence, grid)
    delta = 1.0 - confidence
    counts = _counts(rows, thresholds)
    passed = _fallback(counts, target, delta)
    if passed:
        t, level = passed[-1]
        n, k = counts[t]
        return PrefillThreshold(
            threshold=t, coverage=n / len(rows), rows=len(rows), rows_at_threshold=n, precision=k / n,
            lower_bound=precision_lower_bound(k, n, level), level=level, target=target, confidence=confidence,
            method=METHOD, grid=thresholds, rows_needed=None,
            reason=f"precision among the {n} rows scoring at least {t} is {k / n:.3f}, "
            f"at least {target} with confidence {confidence}",
        )
    more = _rows_needed(counts, target, delta)
    return PrefillThreshold(
        threshold=None, coverage=0.0, rows=len(rows), rows_at_threshold=0, precision=None, lower_bound=None,
        level=None, target=target, confidence=confidence, method=METHOD, grid=thresholds, rows_needed=more,
        reason=f"no threshold reaches precision {target} with confidence {confidence} on {len(rows)} holdout "
        f"rows; at least {more} more correct labelled {'row is' if more == 1 else 'rows are'} needed "
        "(more if some are wrong)",
    )


def _check(target: float, confidence: float, grid: Sequence[float]) -> tuple[float, ...]:
    if not 0.0 < target < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"target and confidence must lie strictly between 0 and 1, got {target}, {confidence}")
    thresholds = tuple(sorted(set(grid), reverse=True))
    if not thresholds:
        raise ValueError("the threshold grid is empty")
    return thresholds


def _counts(rows: Sequence[tuple[float, bool]], thresholds: tuple[float, ...]) -> dict[float, tuple[int, int]]:
    """Per threshold, (rows scoring at least it, correct ones among them)."""
    return {t: (sum(s >= t for s, _ in rows), sum(s >= t and ok for s, ok in rows)) for t in thresholds}


def _fallback(counts: dict[float, tuple[int, int]], target: float, delta: float) -> list[tuple[float, float]]:
    """The rejected thresholds, high to low, each with the level it was rejected at (Wiens's fallback)."""
    passed: list[tuple[float, float]] = []
    shares = 0  # counted in whole shares of delta / K so that a full carry is exactly delta
    for t, (n, k) in counts.items():  # insertion order: high to low
        shares += 1
        level = delta * shares / len(counts)
        if precision_lower_bound(k, n, level) >= target:
            passed.append((t, level))
        else:
            shares = 0
    return passed


def _rows_needed(counts: dict[float, tuple[int, int]], target: float, delta: float) -> int:
    """The fewest correct rows scoring above the whole grid that would make some threshold qualify."""

    def enough(extra: int) -> bool:
        grown = {t: (n + extra, k + extra) for t, (n, k) in counts.items()}
        return bool(_fallback(grown, target, delta))

    high = all_correct_rows_needed(target, delta / len(counts))
    while not enough(high):
        high *= 2
    low = 0  # not enough(low): nothing qualifies now
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
