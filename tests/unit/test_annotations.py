"""Which exported annotations retraining learns from, and the acceptance of each model version's pre-fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.annotations import accepted_annotations
from backend.labeling.spec import parse_spec
from tests.jobs.fakes import CONFIG, exported_task

pytestmark = pytest.mark.unit

LABELS = ("NEGATIVE", "POSITIVE")
SPEC = parse_spec(CONFIG, LABELS)
THREE_WAY = Path(__file__).resolve().parents[2] / "labeling_config" / "sentiment_neutral.xml"


def test_one_row_per_task_mapped_to_the_model_label() -> None:
    found = accepted_annotations([exported_task(1, "fine", "Positive"), exported_task(2, "poor", "Negative")], SPEC)
    assert [(r.task_id, r.label, r.choice, r.text) for r in found.rows] == [
        (1, "POSITIVE", "Positive", "fine"), (2, "NEGATIVE", "Negative", "poor")]
    assert found.rows[0].example().label == "POSITIVE"


def test_cancelled_empty_unknown_and_textless_annotations_are_left_out_and_counted() -> None:
    tasks = [
        exported_task(1, "a", "Positive", was_cancelled=True),
        exported_task(2, "b", None),
        exported_task(3, "c", "Maybe"),
        exported_task(4, "", "Positive"),
        {"id": 5, "data": {"text": "never annotated"}, "annotations": []},
        exported_task(6, "ok", "Negative"),
    ]
    found = accepted_annotations(tasks, SPEC)
    assert [r.task_id for r in found.rows] == [6]
    assert dict(found.skipped) == {"cancelled": 1, "no_single_choice": 1, "unknown_choice": 1, "no_text": 1}


def test_the_latest_annotation_wins_and_ground_truth_wins_over_it() -> None:
    task = exported_task(1, "t", "Positive", updated_at="2026-01-01T00:00:00Z")
    later = exported_task(1, "t", "Negative", updated_at="2026-02-01T00:00:00Z")["annotations"][0]
    task["annotations"].append(later)
    assert accepted_annotations([task], SPEC).rows[0].label == "NEGATIVE"
    task["annotations"][0]["ground_truth"] = True
    row = accepted_annotations([task], SPEC).rows[0]
    assert row.label == "POSITIVE" and row.ground_truth


def test_a_choice_the_model_cannot_predict_is_not_trained_on() -> None:
    spec = parse_spec(THREE_WAY.read_text(), LABELS)
    neutral = exported_task(1, "meh", "Neutral")
    assert accepted_annotations([neutral], spec).skipped == {"choice_not_predictable": 1}


def test_acceptance_per_version_comes_from_origin_and_the_parent_prediction() -> None:
    preds = [{"id": 77, "model_version": "v1"}]
    kept = exported_task(1, "a", "Positive", parent_prediction=77, item={"origin": "prediction"}, _preds=preds)
    fixed = exported_task(2, "b", "Negative", parent_prediction=77, item={"origin": "prediction-changed"},
                          _preds=preds)
    manual = exported_task(3, "c", "Negative")
    found = accepted_annotations([kept, fixed, manual], SPEC)
    assert [r.origin for r in found.rows] == ["prediction", "prediction-changed", None]
    assert found.acceptance() == {"v1": {"kept": 1, "corrected": 1, "acceptance_rate": 0.5}}


def test_the_data_hash_ignores_order_and_sees_label_changes() -> None:
    a, b = exported_task(1, "x", "Positive"), exported_task(2, "y", "Negative")
    assert accepted_annotations([a, b], SPEC).data_hash() == accepted_annotations([b, a], SPEC).data_hash()
    flipped = exported_task(2, "y", "Positive")
    assert accepted_annotations([a, b], SPEC).data_hash() != accepted_annotations([a, flipped], SPEC).data_hash()


COPY = {"parent_prediction": 41, "lead_time": None, "updated_by": None, "completed_by": 1}  # LS's bulk copy


def test_prediction_copies_are_not_trained_on_unless_asked() -> None:
    from backend.annotations import is_prediction_copy

    tasks = [
        exported_task(1, "copied only", "Positive", **COPY),
        exported_task(2, "opened pre-filled and submitted", "Positive", parent_prediction=42, lead_time=4.5,
                      updated_by=1, item={"origin": "prediction"}),
        exported_task(3, "a copy an annotator then corrected", "Negative", **{**COPY, "updated_by": 1}),
        exported_task(4, "typed by hand", "Negative", parent_prediction=None, lead_time=2.0, updated_by=1),
    ]
    assert [is_prediction_copy(t["annotations"][0]) for t in tasks] == [True, False, False, False]
    found = accepted_annotations(tasks, SPEC)
    assert [(r.task_id, r.label) for r in found.rows] == [(2, "POSITIVE"), (3, "NEGATIVE"), (4, "NEGATIVE")]
    assert dict(found.skipped) == {"prediction_copy": 1}
    everything = accepted_annotations(tasks, SPEC, include_prediction_copies=True)
    assert [(r.task_id, r.label) for r in everything.rows] == [(1, "POSITIVE"), (2, "POSITIVE"), (3, "NEGATIVE"),
                                                               (4, "NEGATIVE")]
    assert not everything.skipped


def test_a_person_s_annotation_wins_over_a_copy_on_the_same_task() -> None:
    task = exported_task(1, "both", "Negative", lead_time=3.0, updated_by=1, updated_at="2026-11-24T09:00:00Z")
    copy = {**exported_task(1, "both", "Positive", **COPY)["annotations"][0], "id": 99,
            "updated_at": "2026-11-24T11:00:00Z"}  # newer, but nobody judged it
    task["annotations"].append(copy)
    assert [(r.annotation_id, r.label) for r in accepted_annotations([task], SPEC).rows] == [(10, "NEGATIVE")]
    assert [r.annotation_id for r in accepted_annotations([task], SPEC, include_prediction_copies=True).rows] == [99]
