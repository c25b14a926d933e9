"""Temperature scaling: one temperature T > 0 per published version, fitted on labelled rows it was not trained on.

Scaling class probabilities as p_i^(1/T), renormalised, equals softmax(logits / T) for a one-window text, and
needs no engine: it is applied to the probabilities a classifier already produced (for a windowed text, to the
windows' weighted mean, which is also what the fit saw). The top class never changes; only how sure it is.

The fit minimises the negative log-likelihood over β = 1/T. NLL(β) = mean(logsumexp(β·z) − β·z_y) is convex in β,
so a golden-section search on log β finds its minimum (scipy is not a dependency, and one bounded 1-D search needs
no more). A version's record lives in its meta.json under `calibration` (see `fitted` and `uncalibrated`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backend.model.types import Prediction

ECE_BINS = 15
MIN_FIT_ROWS = 20  # fewer labelled rows than this say too little about confidence to fit anything
T_MIN, T_MAX = 0.05, 20.0
_EPS = 1e-12
_GOLDEN = (math.sqrt(5) - 1) / 2


def apply(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities (last axis) scaled by 1/temperature in log space and renormalised; T=1 is the identity."""
    check_temperature(temperature)
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return p
    scaled = np.log(np.clip(p, _EPS, 1.0)) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    e = np.exp(scaled)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def calibrate(predictions: Sequence[Prediction], temperature: float) -> list[Prediction]:
    """The same predictions with every class probability and the score scaled by `temperature`; labels kept."""
    if temperature == 1.0:
        return list(predictions)
    out = []
    for pred in predictions:
        labels = list(pred.probs)
        scaled = apply(np.array([pred.probs[k] for k in labels]), temperature)
        probs = {k: float(p) for k, p in zip(labels, scaled, strict=True)}
        out.append(Prediction(label=pred.label, score=probs[pred.label], probs=probs, windows=pred.windows))
    return out


def fit_temperature(probs: np.ndarray, gold: Sequence[int], *, tol: float = 1e-6) -> float:
    """The T in [T_MIN, T_MAX] minimising the mean negative log-likelihood of the gold class indexes under apply()."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))
    target = logits[np.arange(len(gold)), np.asarray(gold, dtype=np.int64)]

    def nll(log_beta: float) -> float:
        z = logits * math.exp(log_beta)
        top = z.max(axis=1)
        lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        return float(np.mean(lse - target * math.exp(log_beta)))

    lo, hi = math.log(1 / T_MAX), math.log(1 / T_MIN)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    return float(1 / math.exp((lo + hi) / 2))


def fit(predictions: Sequence[Prediction], gold: Sequence[str]) -> float:
    """fit_temperature on predictions made at T=1 and their gold label names; raises ValueError on too few rows."""
    if len(predictions) != len(gold) or len(gold) < MIN_FIT_ROWS:
        raise ValueError(f"fitting a temperature needs at least {MIN_FIT_ROWS} labelled rows and as many "
                         f"predictions, got {len(gold)} and {len(predictions)}")
    labels = list(predictions[0].probs)
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise ValueError(f"gold labels {unknown} are not among the model labels {labels}")
    probs = np.array([[p.probs[k] for k in labels] for p in predictions])
    return fit_temperature(probs, [labels.index(g) for g in gold])


def ece(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Σ_bins |accuracy − mean confidence| × share of rows, a confidence c going to the equal-width bin (k/b, (k+1)/b]
    (0 goes to the first)."""
    c = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if c.size == 0 or c.size != ok.size:
        raise ValueError(f"need as many confidences as correctness flags (>0), got {c.size} and {ok.size}")
    index = np.clip(np.ceil(c * bins).astype(np.int64) - 1, 0, bins - 1)
    gaps = np.abs(np.bincount(index, weights=ok, minlength=bins) - np.bincount(index, weights=c, minlength=bins))
    return float(gaps.sum() / c.size)  # per bin: n_b × |acc_b − conf_b|


def log_loss(predictions: Sequence[Prediction], gold: Sequence[str]) -> float:
    """Mean −log p(gold label), p floored at 1e-12."""
    return float(np.mean([-math.log(max(p.probs.get(t, 0.0), _EPS)) for p, t in zip(predictions, gold, strict=True)]))


def measure(predictions: Sequence[Prediction], gold: Sequence[str]) -> dict[str, Any]:
    """{"ece", "log_loss", "rows"} of predictions against gold label names."""
    correct = [p.label == t for p, t in zip(predictions, gold, strict=True)]
    return {"ece": round(ece([p.score for p in predictions], correct), 6),
            "log_loss": round(log_loss(predictions, gold), 6), "rows": len(gold)}


def fitted(
    temperature: float, fitted_on: str, fit_rows: int, measured_on: str | None = None,
    raw: Sequence[Prediction] = (), gold: Sequence[str] = (), own_rows: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A calibrated version's record; with evaluation rows (`raw`: predictions at T=1), ECE and log-loss before
    and after scaling by temperature on them; with `own_rows` (see own_rows_record), the labelled rows a project
    without annotations takes its pre-fill threshold from."""
    record: dict[str, Any] = {"temperature": round(temperature, 6), "calibrated": True,
                              "fitted_on": {"rows": fit_rows, "description": fitted_on}}
    if raw:
        record["measured_on"] = measured_on
        record["before"] = measure(raw, gold)
        record["after"] = measure(calibrate(raw, temperature), gold)
    if own_rows is not None:
        record["own_rows"] = own_rows
    return record


def own_rows_record(served: Sequence[Prediction], gold: Sequence[str], description: str) -> dict[str, Any]:
    """A version's own labelled rows as it serves them (`served`: calibrated predictions): each row's score and
    whether its label is right. A project with no accepted annotation yet takes its pre-fill threshold from these
    (backend.quality), so the guarantee then holds for data like these rows only."""
    if len(served) != len(gold):
        raise ValueError(f"need as many predictions as gold labels, got {len(served)} and {len(gold)}")
    return {"description": description, "scores": [p.score for p in served],
            "correct": [int(p.label == g) for p, g in zip(served, gold, strict=True)]}


def own_rows(meta: Mapping[str, Any]) -> tuple[list[tuple[float, bool]], str] | None:
    """A version's own scored rows as (score, correct) pairs and their description; None when it recorded none."""
    record = record_of(meta).get("own_rows")
    if not isinstance(record, dict):
        return None
    scores, correct = record.get("scores") or [], record.get("correct") or []
    if not scores or len(scores) != len(correct):
        return None
    return [(float(s), bool(c)) for s, c in zip(scores, correct, strict=True)], str(record.get("description", ""))


def uncalibrated(temperature: float, reason: str) -> dict[str, Any]:
    """The record of a version with nothing to fit on: it keeps `temperature` (its parent's, or 1.0)."""
    return {"temperature": round(temperature, 6), "calibrated": False, "reason": reason}


def record_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A version's calibration record; versions published before calibration existed serve at T=1."""
    record = meta.get("calibration")
    if isinstance(record, dict) and "temperature" in record:
        return dict(record)
    return uncalibrated(1.0, "published before calibration was recorded")


def temperature_of(meta: Mapping[str, Any]) -> float:
    """The temperature a version serves at (1.0 when its meta records none)."""
    return check_temperature(float(record_of(meta)["temperature"]))


def check_temperature(temperature: float) -> float:
    """The temperature as a float; raises ValueError unless it is positive and finite."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"a temperature must be a positive finite number, got {temperature}")
    return float(temperature)
