"""backend.jobs.prelabel against a fake Label Studio: the exactly-once chunk, planning, finishing a run, and
a chunk's predicting and writing overlapping."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from backend.errors import InvalidLabelingConfig, LabelStudioUnavailable
from backend.jobs.prelabel import RunCancelled, check_project, plan_chunks, prelabel_chunk, write_batches
from backend.labeling.spec import parse_spec
from backend.model.types import Prediction
from tests.api.conftest import FakeClassifier
from tests.jobs.fakes import CONFIG, FakeStudio

pytestmark = pytest.mark.unit

V = "model-v1"
SPEC = parse_spec(CONFIG, FakeClassifier.labels)


def run_chunk(studio: FakeStudio, ids: list[int], **kw: object):  # type: ignore[no-untyped-def]
    return prelabel_chunk(studio, 1, ids, SPEC, FakeClassifier(), V, **kw)  # type: ignore[arg-type]


def test_a_chunk_gives_each_task_one_prediction_with_the_models_choice() -> None:
    studio = FakeStudio(5)
    out = run_chunk(studio, [1, 2, 3, 4, 5])
    assert (out.written, out.already, out.failed, out.deduped) == (5, 0, 0, 0)
    for t in range(1, 6):
        assert studio.count(t, V) == 1
        expected = FakeClassifier.expected(studio.texts[t]).label
        choice = next(p["choice"] for p in studio.predictions if p["task"] == t)
        assert choice == {"POSITIVE": "Positive", "NEGATIVE": "Negative"}[expected]
    assert studio.calls.count("import_predictions") == 1  # a chunk smaller than its first write batch: one write


def test_a_retry_after_the_write_landed_writes_nothing() -> None:
    studio = FakeStudio(4)
    run_chunk(studio, [1, 2, 3, 4])
    writes = studio.calls.count("import_predictions")
    again = run_chunk(studio, [1, 2, 3, 4])
    assert (again.written, again.already) == (0, 4)
    assert studio.calls.count("import_predictions") == writes
    assert all(studio.count(t, V) == 1 for t in range(1, 5))


def test_a_partial_earlier_write_is_completed_and_other_versions_are_left_alone() -> None:
    studio = FakeStudio(4)
    studio.add_prediction(1, V)
    studio.add_prediction(2, "someone-else")
    out = run_chunk(studio, [1, 2, 3, 4])
    assert (out.written, out.already) == (3, 1)
    assert all(studio.count(t, V) == 1 for t in range(1, 5))
    assert studio.count(2, "someone-else") == 1


def test_duplicates_of_our_version_are_repaired_keeping_the_lowest_id() -> None:
    studio = FakeStudio(2)
    first = studio.add_prediction(1, V)
    studio.add_prediction(1, V)
    studio.add_prediction(1, V)
    out = run_chunk(studio, [1, 2])
    assert out.deduped == 2
    assert [p["id"] for p in studio.predictions if p["task"] == 1] == [first]
    assert studio.count(2, V) == 1


def test_items_label_studio_drops_are_counted_failed_with_a_message() -> None:
    studio = FakeStudio(6, drop_every=3)
    out = run_chunk(studio, list(range(1, 7)))
    assert (out.written, out.failed) == (4, 2)
    assert "reported 4 of 6 predictions created" in out.problems[0]
    assert "3, 6" in out.problems[0]


def test_tasks_without_text_fail_alone() -> None:
    studio = FakeStudio(3)
    studio.texts[2] = None
    out = run_chunk(studio, [1, 2, 3])
    assert (out.written, out.failed) == (2, 1)
    assert "data['text']" in out.problems[0] and "2" in out.problems[0]


def test_deleted_tasks_are_counted_gone() -> None:
    studio = FakeStudio(3)
    del studio.texts[3]
    out = run_chunk(studio, [1, 2, 3])
    assert (out.written, out.gone) == (2, 1)


def test_a_cancel_before_the_write_writes_nothing() -> None:
    studio = FakeStudio(3)
    with pytest.raises(RunCancelled):
        run_chunk(studio, [1, 2, 3], cancelled=lambda: True)
    assert studio.predictions == []


def test_plan_skips_tasks_that_have_our_version_and_cuts_fixed_chunks() -> None:
    studio = FakeStudio(10)
    studio.add_prediction(4, V)
    studio.add_prediction(5, "other")
    chunks, already = plan_chunks(studio, 1, V, 4)  # type: ignore[arg-type]
    assert already == 1
    assert chunks == [[1, 2, 3, 5], [6, 7, 8, 9], [10]]


def test_check_project_names_the_project_when_its_config_cannot_take_predictions() -> None:
    studio = FakeStudio(1, label_config='<View><Text name="t" value="$t"/></View>')
    with pytest.raises(InvalidLabelingConfig, match=r"project 1 \('fake'\) cannot be pre-labeled: no <Choices>"):
        check_project(studio, 1, ("NEGATIVE", "POSITIVE"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- predicting and writing overlap


class CountingClassifier(FakeClassifier):
    """A FakeClassifier that counts its predict calls (under a condition) and can fail the n-th one."""

    def __init__(self, fail_call: int = 0) -> None:
        super().__init__()
        self.predicts = 0
        self.changed = threading.Condition()
        self.fail_call = fail_call

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        with self.changed:
            self.predicts += 1
            self.changed.notify_all()
            if self.predicts == self.fail_call:
                raise RuntimeError("the worker died during inference")
        return super().predict(texts, max_tokens=max_tokens)


@dataclass
class OverlapStudio(FakeStudio):
    """A FakeStudio whose n-th write blocks until the classifier has started predicting batch n+1 (the last
    write excepted), and records whether that happened; a serial chunk would never get there."""

    classifier: CountingClassifier = field(default_factory=CountingClassifier)
    batches: int = 0
    fail_write: int = 0  # this write (1-based) answers 502 after storing nothing

    def __post_init__(self) -> None:
        super().__post_init__()
        self.overlapped: list[bool] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        write = len(self.overlapped) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if write < self.batches:
                with self.classifier.changed:
                    seen = self.classifier.changed.wait_for(lambda: self.classifier.predicts > write, timeout=10)
                self.overlapped.append(seen)
            else:
                self.overlapped.append(True)
            if write == self.fail_write:
                raise LabelStudioUnavailable("Label Studio refused writing predictions: HTTP 502 injected")
            return super().import_predictions(project_id, predictions)
        finally:
            self.in_flight -= 1


def overlap_studio(n_tasks: int, batches: int, **kw: Any) -> tuple[OverlapStudio, CountingClassifier]:
    studio = OverlapStudio(n_tasks, batches=batches, **kw)
    return studio, studio.classifier


def test_write_batches_start_with_a_quarter_batch_then_full_ones() -> None:
    sizes = [len(b) for b in write_batches(list(range(500)), 100)]
    assert sizes == [25, 100, 100, 100, 100, 75]
    assert [list(b) for b in write_batches([1, 2, 3], 100)] == [[1, 2, 3]]
    assert [list(b) for b in write_batches([1, 2, 3], 0)] == [[1, 2, 3]]  # 0 (the default): one write
    assert [list(b) for b in write_batches(list(range(6)), 4)] == [[0], [1, 2, 3, 4], [5]]
    assert [len(b) for b in write_batches(list(range(5)), 1)] == [1, 1, 1, 1, 1]


def test_the_next_batch_is_predicted_while_label_studio_stores_the_current_one() -> None:
    studio, classifier = overlap_studio(20, batches=3)
    out = prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V, write_batch=9)  # type: ignore[arg-type]
    assert [len(c) for c in classifier.calls] == [2, 9, 9]  # three batches: 2, 9, 9
    assert studio.overlapped == [True, True, True], "a write waited for nothing: inference and writes took turns"
    assert studio.max_in_flight == 1  # never two writes at once
    assert (out.written, out.failed, out.writes) == (20, 0, 3)
    assert all(studio.count(t, V) == 1 for t in range(1, 21))
    for t in range(1, 21):  # each task got its own text's prediction, whatever batch it was in
        expected = {"POSITIVE": "Positive", "NEGATIVE": "Negative"}[FakeClassifier.expected(studio.texts[t]).label]
        assert next(p["choice"] for p in studio.predictions if p["task"] == t) == expected


def test_a_write_failing_mid_chunk_raises_after_earlier_batches_landed_and_the_retry_completes_exactly_once() -> None:
    studio, classifier = overlap_studio(20, batches=3, fail_write=2)
    with pytest.raises(LabelStudioUnavailable):
        prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V, write_batch=9)  # type: ignore[arg-type]
    assert studio.in_flight == 0  # nothing is still writing once the chunk raised
    assert sorted(p["task"] for p in studio.predictions) == [1, 2]  # the first batch only
    studio.batches, studio.fail_write, studio.overlapped = 0, 0, []
    again = prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V, write_batch=9)  # type: ignore[arg-type]
    assert (again.already, again.written, again.failed) == (2, 18, 0)
    assert all(studio.count(t, V) == 1 for t in range(1, 21))


def test_inference_dying_mid_chunk_waits_for_the_write_in_flight_and_the_retry_completes_exactly_once() -> None:
    studio, classifier = overlap_studio(20, batches=0)
    classifier.fail_call = 2  # predicting the second batch fails while the first one is being written
    with pytest.raises(RuntimeError, match="died during inference"):
        prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V, write_batch=9)  # type: ignore[arg-type]
    assert studio.in_flight == 0 and sorted(p["task"] for p in studio.predictions) == [1, 2]
    classifier.fail_call = 0
    again = prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V, write_batch=9)  # type: ignore[arg-type]
    assert (again.already, again.written) == (2, 18)
    assert all(studio.count(t, V) == 1 for t in range(1, 21))


def test_a_cancel_between_batches_stops_before_the_next_write() -> None:
    studio, classifier = overlap_studio(20, batches=0)
    asked = iter([False, True])  # asked before each write: the first goes, the second is cancelled
    with pytest.raises(RunCancelled):
        prelabel_chunk(studio, 1, list(range(1, 21)), SPEC, classifier, V,  # type: ignore[arg-type]
                       write_batch=9, cancelled=lambda: next(asked))
    assert studio.calls.count("import_predictions") == 1 and studio.in_flight == 0
    assert sorted(p["task"] for p in studio.predictions) == [1, 2]


def test_duplicates_made_by_a_racing_writer_during_the_batches_are_repaired_by_the_verify() -> None:
    studio, classifier = overlap_studio(12, batches=0)
    original = studio.import_predictions

    def racing(project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        created = original(project_id, predictions)
        studio.add_prediction(predictions[0]["task"], V)  # another writer stored the same task meanwhile
        return created

    studio.import_predictions = racing  # type: ignore[method-assign]
    out = prelabel_chunk(studio, 1, list(range(1, 13)), SPEC, classifier, V, write_batch=8)  # type: ignore[arg-type]
    assert out.writes == 3 and out.deduped == 3 and out.written == 12  # batches of 2, 8 and 2
    assert all(studio.count(t, V) == 1 for t in range(1, 13))
