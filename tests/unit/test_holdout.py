"""The frozen per-project holdout."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.holdout import Holdout

pytestmark = pytest.mark.unit


def test_new_tasks_are_drawn_near_the_fraction_and_the_draw_is_stable(tmp_path: Path) -> None:
    split = Holdout(tmp_path, 3).assign(list(range(1, 2001)), 0.2)
    assert 300 < len(split.holdout) < 500 and len(split.train) + len(split.holdout) == 2000
    again = Holdout(tmp_path / "other", 3).assign(list(range(1, 2001)), 0.2)
    assert again.holdout == split.holdout  # the same draw on another machine


def test_a_task_never_changes_side_even_when_the_fraction_changes(tmp_path: Path) -> None:
    first = Holdout(tmp_path, 3).assign(list(range(1, 101)), 0.2)
    later = Holdout(tmp_path, 3).assign(list(range(1, 201)), 0.9)
    assert first.holdout <= later.holdout and first.train <= later.train
    new_holdout = later.holdout - first.holdout
    assert len(new_holdout) > 60  # the 100 new tasks were drawn at 0.9


def test_the_split_only_answers_for_the_tasks_asked_about(tmp_path: Path) -> None:
    Holdout(tmp_path, 1).assign(list(range(1, 51)), 0.5)
    split = Holdout(tmp_path, 1).assign([1, 2, 3], 0.5)
    assert split.train | split.holdout == {1, 2, 3}
    assert len(Holdout(tmp_path, 1).load().train | Holdout(tmp_path, 1).load().holdout) == 50
