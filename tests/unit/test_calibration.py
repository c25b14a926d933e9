"""Temperature scaling: the fit recovers a known temperature, apply keeps the top class, ECE by hand, records."""

from __future__ import annotations

import numpy as np
import pytest

from backend.calibration import (
    apply,
    calibrate,
    ece,
    fit,
    fit_temperature,
    fitted,
    measure,
    own_rows,
    own_rows_record,
    record_of,
    temperature_of,
    uncalibrated,
)
from backend.model.types import Prediction

pytestmark = pytest.mark.unit


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_that_generated_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 3.0, size=(40_000, 3))
    truth = softmax(logits / true_t)  # labels drawn from the calibrated distribution
    gold = (rng.random(len(truth))[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    assert fit_temperature(softmax(logits), gold) == pytest.approx(true_t, rel=0.05)


def test_apply_equals_softmax_of_scaled_logits_keeps_the_argmax_and_is_identity_at_one() -> None:
    logits = np.array([[2.0, -1.0], [0.3, 0.5], [-4.0, 4.0]])
    probs = softmax(logits)
    np.testing.assert_allclose(apply(probs, 2.0), softmax(logits / 2.0), rtol=1e-9)
    np.testing.assert_allclose(apply(probs, 0.5), softmax(logits / 0.5), rtol=1e-9)
    assert (apply(probs, 3.0).argmax(axis=1) == probs.argmax(axis=1)).all()
    assert apply(probs, 1.0) is not None and np.array_equal(apply(probs, 1.0), probs)
    with pytest.raises(ValueError, match="positive finite"):
        apply(probs, 0.0)


def test_calibrate_scales_score_and_probs_but_keeps_label_and_windows() -> None:
    pred = Prediction("POSITIVE", 0.9, {"NEGATIVE": 0.1, "POSITIVE": 0.9}, windows=3)
    [soft] = calibrate([pred], 2.0)
    expected = 0.9**0.5 / (0.9**0.5 + 0.1**0.5)
    assert soft == Prediction("POSITIVE", pytest.approx(expected), {"NEGATIVE": pytest.approx(1 - expected),
                                                                     "POSITIVE": pytest.approx(expected)}, 3)
    assert calibrate([pred], 1.0) == [pred]


def test_ece_on_hand_computed_cases() -> None:
    # bins of width 1/15: 0.95 and 0.99 share (14/15, 1]; 0.55 is alone in (8/15, 9/15]
    # (14/15, 1]: 2 rows, accuracy 1/2, mean confidence 0.97 → gap 0.47, weight 2/3
    # (8/15, 9/15]: 1 row, accuracy 1, confidence 0.55 → gap 0.45, weight 1/3
    assert ece([0.95, 0.99, 0.55], [True, False, True]) == pytest.approx(2 / 3 * 0.47 + 1 / 3 * 0.45)
    assert ece([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert ece([0.6] * 10, [True] * 6 + [False] * 4) == pytest.approx(0.0)
    # two equal-width bins: (0, 0.5] and (0.5, 1]; 0.5 sits in the first
    assert ece([0.5, 0.8], [False, False], bins=2) == pytest.approx((0.5 + 0.8) / 2)
    with pytest.raises(ValueError):
        ece([], [])


def test_fit_on_predictions_needs_enough_rows_and_known_labels() -> None:
    preds = [Prediction("POSITIVE", 0.9, {"NEGATIVE": 0.1, "POSITIVE": 0.9})] * 30
    overconfident = fit(preds, ["POSITIVE"] * 21 + ["NEGATIVE"] * 9)  # right 70 % of the time, 90 % sure
    assert overconfident > 1.0
    assert calibrate(preds[:1], overconfident)[0].score == pytest.approx(0.7, abs=1e-3)
    with pytest.raises(ValueError, match="at least 20"):
        fit(preds[:5], ["POSITIVE"] * 5)
    with pytest.raises(ValueError, match="not among the model labels"):
        fit(preds, ["NEUTRAL"] * 30)


def test_records_say_what_was_fitted_where_and_before_after() -> None:
    raw = [Prediction("POSITIVE", 0.9, {"NEGATIVE": 0.1, "POSITIVE": 0.9})] * 10
    gold = ["POSITIVE"] * 7 + ["NEGATIVE"] * 3
    record = fitted(1.9, "validation slice", 40, "project holdout", raw, gold)
    assert record["temperature"] == 1.9 and record["calibrated"] is True
    assert record["fitted_on"] == {"rows": 40, "description": "validation slice"}
    assert record["before"] == measure(raw, gold) and record["before"]["ece"] == pytest.approx(0.2)
    assert record["after"]["rows"] == 10 and record["after"]["ece"] < record["before"]["ece"]
    assert record["after"]["log_loss"] < record["before"]["log_loss"]
    assert record["measured_on"] == "project holdout"
    meta = {"calibration": uncalibrated(1.7, "no validation slice")}
    assert temperature_of(meta) == 1.7 and record_of(meta)["calibrated"] is False
    assert temperature_of({}) == 1.0 and record_of({})["calibrated"] is False


def test_own_rows_record_the_served_score_and_correctness_and_read_back() -> None:
    served = [Prediction(label="POSITIVE", score=0.9, probs={"POSITIVE": 0.9, "NEGATIVE": 0.1}),
              Prediction(label="NEGATIVE", score=0.7, probs={"POSITIVE": 0.3, "NEGATIVE": 0.7})]
    own = own_rows_record(served, ["POSITIVE", "POSITIVE"], "two rows")
    meta = {"calibration": fitted(1.5, "fit rows", 20, own_rows=own)}
    assert own_rows(meta) == ([(0.9, True), (0.7, False)], "two rows")
    assert own_rows({"calibration": uncalibrated(1.0, "none")}) is None
    assert own_rows({}) is None
    with pytest.raises(ValueError):
        own_rows_record(served, ["POSITIVE"], "mismatch")
