"""quality: which rows assess a project's served version, what is stored, and what a reader gets back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from backend import quality
from backend.label_errors import AnnotatedText
from backend.model.types import Prediction

pytestmark = pytest.mark.unit

POLICY = quality.Policy(target_precision=0.9, confidence=0.9, label_error_max_p=0.1)


class Oracle:
    """Predicts the label a text names ("good ..." → POSITIVE) with probability p; records what it was asked."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self, p: float = 0.97) -> None:
        self.p = p
        self.asked: list[str] = []

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        self.asked.extend(texts)
        out = []
        for text in texts:
            label = "POSITIVE" if text.startswith("good") else "NEGATIVE"
            other = "NEGATIVE" if label == "POSITIVE" else "POSITIVE"
            out.append(Prediction(label=label, score=self.p, probs={label: self.p, other: 1 - self.p}))
        return out


def _rows(n: int, *, flipped: Sequence[int] = ()) -> list[AnnotatedText]:
    rows = []
    for i in range(1, n + 1):
        positive = i % 2 == 0
        label = "POSITIVE" if positive else "NEGATIVE"
        if i in flipped:
            label = "NEGATIVE" if positive else "POSITIVE"
        rows.append(AnnotatedText(task_id=i, annotation_id=1000 + i, text=f"{'good' if positive else 'bad'} {i}",
                                  label=label))
    return rows


def test_a_project_on_the_default_line_is_assessed_on_every_accepted_annotation() -> None:
    served = Oracle()
    record = quality.assess(7, "v1", _rows(120, flipped=[5, 8]), trained=set(), classifier_of=lambda v: served,
                            parent=None, policy=POLICY)
    assert len(served.asked) == 120 and "every accepted annotation" in record["rows_source"]
    prefill = record["prefill"]
    assert prefill["rows"] == 120 and prefill["threshold"] is not None and prefill["coverage"] == 1.0
    errors = record["label_errors"]
    assert errors["found"] == 2 and [r["task_id"] for r in errors["rows"]] == [5, 8]
    assert errors["rows"][0]["p_label"] == pytest.approx(0.03) and errors["rows"][0]["side"] == "holdout"


def test_a_project_on_its_own_line_uses_rows_it_never_trained_on_and_the_parent_for_the_others() -> None:
    served, parent = Oracle(), Oracle(0.99)
    rows = _rows(100, flipped=[3, 60])
    trained = {r.task_id for r in rows if r.task_id <= 80}
    record = quality.assess(7, "v2", rows, trained=trained, classifier_of={"v2": served, "v1": parent}.get,
                            parent="v1", policy=POLICY)
    assert len(served.asked) == 20 and len(parent.asked) == 80  # each row scored by a model that never saw it
    assert record["prefill"]["rows"] == 20 and record["prefill"]["threshold"] is None  # 20 rows earn no guarantee
    assert record["prefill"]["rows_needed"] > 0 and "more" in record["prefill"]["reason"]
    found = {r["task_id"]: r for r in record["label_errors"]["rows"]}
    assert set(found) == {3, 60} and found[3]["version"] == "v1" and found[3]["side"] == "train"
    assert record["label_errors"]["parent"] == "v1"


def test_stored_records_apply_to_their_version_only(tmp_path: Path) -> None:
    assert quality.threshold_for(tmp_path, 7, "v1") is None and not quality.report(tmp_path, 7)["assessed"]
    record = quality.assess(7, "v1", _rows(120, flipped=[5]), trained=set(), classifier_of=lambda v: Oracle(),
                            parent=None, policy=POLICY)
    quality.save(tmp_path, 7, record)
    assert quality.threshold_for(tmp_path, 7, "v1") == record["prefill"]["threshold"] is not None
    assert quality.threshold_for(tmp_path, 7, "v2") is None  # the project is served another version now
    assert quality.threshold_for(tmp_path, None, "v1") is None and quality.threshold_for(tmp_path, 8, "v1") is None
    shown = quality.report(tmp_path, 7)
    assert shown["assessed"] and shown["found"] == 1 and shown["rows"][0]["annotation_id"] == 1005
    assert "text" not in shown["rows"][0]  # texts never leave Label Studio through this record


def test_before_any_annotation_the_threshold_comes_from_the_versions_own_rows() -> None:
    served = Oracle()
    own = ([(0.99, True)] * 200 + [(0.6, False)] * 20, "200 rows of its calibration file")
    record = quality.assess(7, "v1", [], trained=set(), classifier_of=lambda v: served, parent=None,
                            policy=POLICY, own_rows=own)
    assert served.asked == []  # nothing to score: the version's rows were scored when it was published
    prefill = record["prefill"]
    assert prefill["rows"] == 220 and prefill["threshold"] is not None and prefill["threshold"] > 0.6
    assert prefill["coverage"] == pytest.approx(200 / 220)
    assert "no accepted annotation yet" in record["rows_source"]
    assert "200 rows of its calibration file" in record["rows_source"] and "for data like those rows only" in (
        record["rows_source"])
    assert record["label_errors"]["found"] == 0


def test_once_a_project_has_annotations_they_replace_the_versions_own_rows() -> None:
    own = ([(0.99, True)] * 200, "calibration rows")
    record = quality.assess(7, "v1", _rows(10), trained=set(), classifier_of=lambda v: Oracle(), parent=None,
                            policy=POLICY, own_rows=own)
    assert record["prefill"]["rows"] == 10 and record["prefill"]["threshold"] is None
    assert "every accepted annotation" in record["rows_source"]


def test_thresholds_are_read_at_most_once_per_interval_and_at_once_for_another_version(tmp_path: Path) -> None:
    now = [0.0]
    thresholds = quality.Thresholds(tmp_path, interval_s=1.0, clock=lambda: now[0])
    assert thresholds.lookup(7, "v1") == (False, None)
    assert thresholds.read(7, "v1") is None and thresholds.lookup(7, "v1") == (True, None)
    record = quality.assess(7, "v1", _rows(120, flipped=[5]), trained=set(), classifier_of=lambda v: Oracle(),
                            parent=None, policy=POLICY)
    quality.save(tmp_path, 7, record)  # the worker's assessment lands
    now[0] = 0.9
    assert thresholds.lookup(7, "v1") == (True, None)  # within the interval: the remembered answer
    now[0] = 1.0
    assert thresholds.lookup(7, "v1") == (False, None)
    assert thresholds.read(7, "v1") == record["prefill"]["threshold"] is not None
    assert thresholds.lookup(7, "v2") == (False, None)  # another version: read again at once
