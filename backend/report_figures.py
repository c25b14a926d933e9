"""The figures of the evaluation report (backend.report), drawn with matplotlib's object API into PNG bytes.

matplotlib is imported inside `_figure` only, so importing this module (and backend.report) costs nothing and
the API, which only serves stored pages, never loads it. Figures are built with `matplotlib.figure.Figure` and
an explicit Agg canvas rather than pyplot: no process-wide current figure, no GUI backend picked from the
environment, safe in a worker thread; `matplotlib.use("Agg")` is still called so that a later pyplot import in
the same process cannot pick a GUI backend either. Every text drawn from data goes through `_plain`, since
matplotlib reads `$...$` as mathtext.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RELIABILITY_BINS = 10
HIST_BINS = 20
DPI = 100


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """The confusion matrix, rows the annotators' labels and columns the model's, counts written in the cells."""
    fig, ax = _figure(4.8, 4.0)
    values = np.asarray(matrix, dtype=np.float64)
    image = ax.imshow(values, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(list(ticks), [_plain(x) for x in labels])
    ax.set_yticks(list(ticks), [_plain(x) for x in labels])
    ax.set_xlabel("model's label")
    ax.set_ylabel("annotator's label")
    top = values.max() if values.size else 0
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    return _png(fig)


def reliability(curves: Mapping[str, tuple[Sequence[float], Sequence[bool]]]) -> bytes:
    """Accuracy against mean confidence per equal-width bin, one line per named curve (before/after scaling)."""
    fig, ax = _figure(5.2, 4.4)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for name, (confidences, correct) in curves.items():
        mean_conf, accuracy = reliability_bins(confidences, correct)
        ax.plot(mean_conf, accuracy, marker="o", label=_plain(name))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (score of the model's label)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[list[float], list[float]]:
    """Per non-empty bin (k/b, (k+1)/b] of RELIABILITY_BINS: (mean confidence, accuracy), low to high."""
    c = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.ceil(c * RELIABILITY_BINS).astype(np.int64) - 1, 0, RELIABILITY_BINS - 1)
    means, accuracies = [], []
    for k in range(RELIABILITY_BINS):
        members = index == k
        if members.any():
            means.append(float(c[members].mean()))
            accuracies.append(float(ok[members].mean()))
    return means, accuracies


def coverage_precision(
    curve: Sequence[tuple[float, float, float]], marked: tuple[float, float, float] | None, target: float | None
) -> bytes:
    """Precision against coverage over thresholds (`curve`: (threshold, coverage, precision)), the chosen
    threshold `marked` and the target precision as a dashed line."""
    fig, ax = _figure(5.2, 4.4)
    ax.plot([c for _, c, _ in curve], [p for _, _, p in curve], drawstyle="steps-post", label="all thresholds")
    if target is not None:
        ax.axhline(target, linestyle="--", color="grey", linewidth=1, label=f"target precision {target:g}")
    if marked is not None:
        t, coverage, precision = marked
        ax.plot([coverage], [precision], marker="o", markersize=9, color="crimson", linestyle="none",
                label=f"t = {t:g}")
        ax.annotate(f"t = {t:g}", (coverage, precision), textcoords="offset points", xytext=(8, -14))
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of rows pre-filled)")
    ax.set_ylabel("precision among pre-filled rows")
    ax.legend(loc="lower left", fontsize="small")
    return _png(fig)


def score_histograms(groups: Mapping[str, tuple[Sequence[float], Sequence[bool]]], threshold: float | None) -> bytes:
    """One panel per model label: the scores of the rows it predicted, stacked right and wrong, t marked."""
    names = list(groups) or ["(no rows)"]
    fig, axes = _figure(4.2 * len(names), 3.6, columns=len(names))
    bins = np.linspace(0.0, 1.0, HIST_BINS + 1)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        scores, correct = groups.get(name, ((), ()))
        right = [s for s, ok in zip(scores, correct, strict=True) if ok]
        wrong = [s for s, ok in zip(scores, correct, strict=True) if not ok]
        ax.hist([right, wrong], bins=bins, stacked=True, color=["seagreen", "indianred"],
                label=["annotator agreed", "annotator disagreed"])
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"t = {threshold:g}")
        ax.set_title(f"predicted {_plain(name)}")
        ax.set_xlabel("score")
        ax.set_ylabel("rows")
        ax.legend(loc="upper left", fontsize="x-small")
    return _png(fig)


def acceptance(rows: Sequence[tuple[str, int, int]]) -> bytes:
    """Kept and corrected pre-fills per version (rows: (version, kept, corrected)) as stacked horizontal bars."""
    fig, ax = _figure(7.0, 0.6 + 0.45 * max(len(rows), 1))
    names = [_plain(v) for v, _, _ in rows]
    kept = [k for _, k, _ in rows]
    corrected = [c for _, _, c in rows]
    ax.barh(names, kept, color="seagreen", label="kept")
    ax.barh(names, corrected, left=kept, color="indianred", label="corrected")
    ax.set_xlabel("pre-filled annotations submitted")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def line_accuracy(points: Sequence[tuple[str, float, bool]], highlighted: str) -> bytes:
    """Holdout accuracy per version of the line, oldest first (points: (version, accuracy, promoted)); the
    reported version drawn larger."""
    fig, ax = _figure(7.0, 4.0)
    xs = list(range(len(points)))
    ax.plot(xs, [a for _, a, _ in points], color="steelblue", linewidth=1)
    for x, (version, accuracy, promoted) in zip(xs, points, strict=True):
        ax.plot([x], [accuracy], marker="o", linestyle="none", markersize=10 if version == highlighted else 6,
                color="steelblue" if promoted else "darkorange")
    ax.set_xticks(xs, [_plain(v) for v, _, _ in points], rotation=30, ha="right", fontsize="x-small")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("holdout accuracy")
    ax.set_title("blue: promoted, orange: not promoted", fontsize="small")
    return _png(fig)


def _figure(width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, columns)
    return fig, axes


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Data text as matplotlib draws it literally (a `$` would start mathtext)."""
    return str(text).replace("$", r"\$")
