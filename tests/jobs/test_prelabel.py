"""backend.jobs.prelabel against a fake Label Studio: the exactly-once chunk, planning, finishing a run."""

from __future__ import annotations

import pytest

from backend.errors import InvalidLabelingConfig
from backend.jobs.prelabel import RunCancelled, check_project, plan_chunks, prelabel_chunk
from backend.labeling.spec import parse_spec
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
    assert studio.calls.count("import_predictions") == 1  # one bulk write per chunk


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
