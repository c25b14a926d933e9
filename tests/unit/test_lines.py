"""Model lines: a default line and one per project, moved by promotion and rollback, atomically under the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend.errors import NothingToRollBack, PointerMoved
from backend.lines import promote, rollback
from backend.store import ModelStore

pytestmark = pytest.mark.unit


def _publish(store: ModelStore, tmp_path: Path, name: str, *, current: bool = False, **meta: object) -> str:
    checkpoint = tmp_path / f"ckpt-{name}"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}')
    return store.publish(checkpoint, dict(meta), name=name, make_current=current).version


def test_a_project_promotion_makes_its_line_and_moves_no_other(store: ModelStore, tmp_path: Path) -> None:
    base = _publish(store, tmp_path, "base", current=True)
    a1 = _publish(store, tmp_path, "a1", project=1)
    assert store.current_version(1) == base and not store.has_line(1)
    promote(store, a1, project=1)
    assert store.current_version(1) == a1 and store.has_line(1)
    assert store.current_version() == base and store.current_version(2) == base
    assert store.lines() == {"default": base, "project-1": a1}
    assert store.history(1)[-1] == {**store.history(1)[-1], "version": a1, "previous": None}
    assert [h["version"] for h in store.history()] == [base]


def test_rolling_a_project_back_past_its_first_promotion_returns_it_to_the_default(
    store: ModelStore, tmp_path: Path
) -> None:
    base = _publish(store, tmp_path, "base", current=True)
    a1, a2 = _publish(store, tmp_path, "a1"), _publish(store, tmp_path, "a2")
    promote(store, a1, project=1)
    promote(store, a2, project=1)
    assert rollback(store, project=1).version == a1
    assert rollback(store, project=1).version == base and not store.has_line(1)
    assert store.lines() == {"default": base}
    assert store.history(1)[-1]["version"] is None and store.history(1)[-1]["previous"] == a1
    with pytest.raises(NothingToRollBack, match="default line"):
        rollback(store, project=1)
    # the default line moves on its own, and takes every project without a line along
    b = _publish(store, tmp_path, "b")
    promote(store, b)
    assert store.current_version(1) == b and store.current_version(9) == b
    promote(store, a2, project=1)  # a new first promotion makes the line again
    assert store.current_version(1) == a2 and store.current_version() == b


def test_a_compare_and_swap_refuses_a_moved_line_and_a_check_can_call_it_off(
    store: ModelStore, tmp_path: Path
) -> None:
    base = _publish(store, tmp_path, "base", current=True)
    a1, a2 = _publish(store, tmp_path, "a1"), _publish(store, tmp_path, "a2")
    store.set_current(a1, project=1, expect=base)  # the project was served the default's base: it may move
    with pytest.raises(PointerMoved, match=f"served {a1} now, not {base}"):
        store.set_current(a2, project=1, expect=base)
    assert store.current_version(1) == a1

    def cancelled() -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        store.set_current(a2, project=1, expect=a1, check=cancelled)
    assert store.current_version(1) == a1 and [h["version"] for h in store.history(1)] == [a1]


def _chain_is_consistent(history: list[dict[str, object]]) -> None:
    for before, after in zip(history, history[1:], strict=False):
        assert after["previous"] == before["version"], (before, after)


def test_concurrent_promotions_from_the_cli_and_two_threads_leave_a_consistent_line(
    store: ModelStore, tmp_path: Path
) -> None:
    base = _publish(store, tmp_path, "base", current=True)
    versions = [_publish(store, tmp_path, f"v{i}") for i in range(6)]
    env = {**os.environ, "MODEL_DIR": str(store.root), "LOG_LEVEL": "WARNING"}
    script = ("import sys\nfrom backend.cli import main\n"
              f"for i in range(15):\n    for v in {versions[:3]!r}:\n"
              "        try: main(['models', 'promote', v, '--project', '4'], standalone_mode=False)\n"
              "        except SystemExit: pass\n")
    cli = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[2],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors: list[BaseException] = []

    def promote_many(mine: list[str]) -> None:
        try:
            for _ in range(30):
                for version in mine:
                    promote(store, version, project=4)
                    promote(store, version)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=promote_many, args=(versions[3:5],)),
               threading.Thread(target=promote_many, args=(versions[4:],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    _, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 0 and not errors, (stderr, errors)
    for project in (4, None):
        history = store.history(project)
        _chain_is_consistent(history)
        assert history[-1]["version"] == store.current_version(project)
    assert {h["version"] for h in store.history(4)} == set(versions)  # all three writers got through
    assert store.history()[0]["version"] == base


def test_a_store_of_the_layout_before_lines_opens_as_the_default_line(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for name in ("old-20260101-000000", "new-20260102-000000"):
        (root / "versions" / name / "model").mkdir(parents=True)
        (root / "versions" / name / "meta.json").write_text(json.dumps({"version": name, "created_at": name[-15:]}))
    (root / "CURRENT").write_text("new-20260102-000000\n")
    old_history = [{"at": "t1", "version": "old-20260101-000000", "previous": None, "reason": "published"},
                   {"at": "t2", "version": "new-20260102-000000", "previous": "old-20260101-000000",
                    "reason": "promoted by training train-0000000001"}]
    (root / "HISTORY").write_text("".join(json.dumps(h) + "\n" for h in old_history))

    store = ModelStore(root)
    assert store.current_version() == "new-20260102-000000" == store.current_version(3)
    assert store.history() == old_history and store.lines() == {"default": "new-20260102-000000"}
    assert not (root / "CURRENT").exists() and (root / "CURRENT.before-lines").read_text() == "new-20260102-000000\n"
    assert (root / "HISTORY.before-lines").exists() and [v.version for v in store.list()] == [
        "old-20260101-000000", "new-20260102-000000"]
    assert rollback(store).version == "old-20260101-000000"  # the old history still rolls back
    assert ModelStore(root).current_version() == "old-20260101-000000"  # a second open changes nothing


class _Studio:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.selected: list[tuple[int, str]] = []

    def select_model_version(self, project: int, version: str) -> None:
        if self.error is not None:
            raise self.error
        self.selected.append((project, version))


def test_label_studio_follows_a_project_or_says_why_not() -> None:
    from backend.errors import LabelStudioAuthError, LabelStudioError
    from backend.lines import PENDING, follow_in_studio

    studio = _Studio()
    assert follow_in_studio(lambda: studio, 3, "v1") == "set" and studio.selected == [(3, "v1")]  # type: ignore[arg-type,return-value]
    refused = _Studio(LabelStudioError("no predictions of it", http_status=400))
    assert follow_in_studio(lambda: refused, 3, "v2") == PENDING  # type: ignore[arg-type,return-value]
    no_token = _Studio(LabelStudioAuthError("LABEL_STUDIO_API_KEY is not set"))
    assert follow_in_studio(lambda: no_token, 3, "v2") == "not set: LabelStudioAuthError"  # type: ignore[arg-type,return-value]


def test_a_version_whose_weights_were_collected_is_never_made_current(store: ModelStore, tmp_path: Path) -> None:
    from backend.errors import VersionNotFound

    base = _publish(store, tmp_path, "base", current=True)
    gone = _publish(store, tmp_path, "gone", status="rejected", project=1)
    import shutil

    shutil.rmtree(store.get(gone).path)
    with pytest.raises(VersionNotFound, match="weights removed"):
        promote(store, gone, project=1)
    assert store.current_version(1) == base and not store.has_line(1)
