"""Retention on a real store in tmp_path: which checkpoints go, which stay and why, what a crash leaves."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from backend import retention
from backend.retention import collect
from backend.store import ModelStore

pytestmark = pytest.mark.unit


class Store:
    """A store built version by version with checkpoints of known sizes and controlled created_at."""

    def __init__(self, root: Path) -> None:
        self.store = ModelStore(root / "models")
        self.src, self.sizes, self.n = root / "src", {}, 0

    def add(self, status: str | None = None, project: int | None = None, size: int = 3000) -> str:
        """Publish a version (not current) with `size` + 2 + 100 bytes of checkpoint files; its version string."""
        self.n += 1
        src = self.src / str(self.n)
        (src / "tokenizer").mkdir(parents=True)
        (src / "config.json").write_bytes(b"{}")
        (src / "model.safetensors").write_bytes(os.urandom(size))
        (src / "tokenizer" / "vocab.txt").write_bytes(b"v" * 100)
        meta = {"kind": "retrain" if status else "import", "created_at": f"2026-01-01T00:00:{self.n:02d}+00:00"}
        if status:
            meta.update(status=status, project=project)
        version = self.store.publish(src, meta, name=f"v{self.n}", make_current=False).version
        self.sizes[version] = size + 102
        return version


@pytest.fixture
def s(tmp_path: Path) -> Store:
    built = Store(tmp_path)
    built.store.set_current(built.add(), reason="published")  # the starter on the default line
    return built


def _gone(store: ModelStore, version: str) -> bool:
    """Weights removed, meta.json (and nothing else) kept, the store calling it collected."""
    folder = store.versions_dir / version
    return sorted(p.name for p in folder.iterdir()) == ["meta.json"] and store.get(version).collected


def _kept(store: ModelStore, version: str) -> bool:
    got = store.get(version)
    return not got.collected and (got.path / "model.safetensors").is_file()


def test_the_newest_rejected_of_each_project_keep_their_weights_the_older_go(s: Store) -> None:
    p1 = [s.add("rejected", 1) for _ in range(4)]
    p2 = [s.add("rejected", 2, size=5000) for _ in range(3)]
    promoted = s.add("promoted", 1)
    report = collect(s.store, keep_rejected=2)
    assert [c.version for c in report.collected] == [p1[0], p1[1], p2[0]]
    assert all(_gone(s.store, v) for v in (p1[0], p1[1], p2[0]))
    assert all(_kept(s.store, v) for v in (p1[2], p1[3], p2[1], p2[2], promoted, s.store.current_version()))
    assert report.bytes_freed == s.sizes[p1[0]] + s.sizes[p1[1]] + s.sizes[p2[0]] == 2 * 3102 + 5102
    assert s.store.get(p1[0]).meta["bytes_freed"] == 3102 and s.store.get(p1[0]).meta["collected_at"]
    assert s.store.get(p1[0]).meta["status"] == "rejected" and s.store.get(p1[0]).meta["project"] == 1
    reasons = {k.version: k.reason for k in report.kept}
    assert reasons[p1[3]] == "among the newest 2 rejected of project 1"
    assert reasons[promoted] == "promoted, not rejected"
    assert "current on default" in reasons[s.store.current_version() or ""]
    again = collect(s.store, keep_rejected=2)
    assert again.collected == () and again.bytes_freed == 0  # collected versions are not counted twice


def test_every_version_a_line_names_or_could_roll_back_to_is_kept(s: Store) -> None:
    r = [s.add("rejected", 1) for _ in range(4)]
    promoted, stray, on_default = s.add("promoted", 1), s.add("rejected", 1), s.add("rejected", 3)
    for version in (*r, promoted):  # five changes: the last three name r[1], r[2], r[3] and promoted
        s.store.set_current(version, reason="rollback", project=1)
    s.store.set_current(on_default, reason="rollback")
    history_before = s.store.history(1)
    report = collect(s.store, keep_rejected=0)
    assert {c.version for c in report.collected} == {r[0], stray}
    assert _gone(s.store, r[0]) and _gone(s.store, stray)
    assert all(_kept(s.store, v) for v in (r[1], r[2], r[3], promoted, on_default))
    reasons = {k.version: k.reason for k in report.kept}
    assert reasons[r[1]] == "in the last changes of project-1"  # only as `previous` of the third-last change
    assert reasons[on_default] == "current on default; in the last changes of default"
    assert s.store.history(1) == history_before and s.store.current_version(1) == promoted


def test_a_project_rolled_back_to_the_default_line_keeps_its_history_versions(s: Store) -> None:
    old, first, second = s.add("rejected", 2), s.add("rejected", 2), s.add("rejected", 2)
    s.store.set_current(first, project=2)
    s.store.set_current(second, project=2)
    s.store.leave_line(2, reason="rollback past the first promotion")
    assert not s.store.has_line(2)
    report = collect(s.store, keep_rejected=0)
    assert [c.version for c in report.collected] == [old] and _gone(s.store, old)
    assert _kept(s.store, first) and _kept(s.store, second)
    assert [c["version"] for c in s.store.history(2)] == [first, second, None]


def test_a_dry_run_removes_nothing_and_reports_what_the_real_run_removes(s: Store) -> None:
    old = [s.add("rejected", 1) for _ in range(3)]
    metas = {v.version: v.meta for v in s.store.list()}
    dry = collect(s.store, keep_rejected=1, dry_run=True)
    assert dry.dry_run and [c.version for c in dry.collected] == old[:2]
    assert {v.version: v.meta for v in s.store.list()} == metas and all(_kept(s.store, v) for v in old)
    real = collect(s.store, keep_rejected=1)
    assert real.collected == dry.collected and real.kept == dry.kept and real.bytes_freed == dry.bytes_freed == 6204
    assert _gone(s.store, old[0]) and _gone(s.store, old[1]) and _kept(s.store, old[2])


def test_names_to_keep_are_spared(s: Store) -> None:
    base, other = s.add("rejected", 1), s.add("rejected", 1)
    report = collect(s.store, keep_rejected=0, keep=[base])
    assert [c.version for c in report.collected] == [other] and _kept(s.store, base)
    assert {k.version: k.reason for k in report.kept}[base] == "named to keep"


def test_a_run_killed_after_setting_aside_is_finished_by_the_next(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    old, newer = s.add("rejected", 1), s.add("rejected", 1)
    monkeypatch.setattr(retention.shutil, "rmtree", lambda *a, **kw: None)  # killed before the removal
    collect(s.store, keep_rejected=1)
    assert s.store.get(old).collected and s.store.get(old).meta["bytes_freed"] == 3102
    assert len(list((s.store.versions_dir / old).iterdir())) == 2  # meta.json and what was set aside
    monkeypatch.undo()
    assert [(c.version, c.bytes) for c in collect(s.store, keep_rejected=1, dry_run=True).collected] == [(old, 3102)]
    report = collect(s.store, keep_rejected=1)
    assert [(c.version, c.bytes) for c in report.collected] == [(old, 3102)] and _gone(s.store, old)
    assert _kept(s.store, newer)


def test_the_checkpoint_is_set_aside_under_the_store_lock(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s.add("rejected", 1)
    seen: list[bool] = []
    real_replace = os.replace

    def replace_and_probe(src: Path, dst: Path) -> None:
        def probe() -> None:
            try:
                with FileLock(s.store.lock_path, timeout=0):
                    seen.append(False)
            except Timeout:
                seen.append(True)
        if Path(src).name == "model":
            thread = threading.Thread(target=probe)
            thread.start()
            thread.join()
        real_replace(src, dst)

    monkeypatch.setattr(retention.os, "replace", replace_and_probe)
    assert len(collect(s.store, keep_rejected=0).collected) == 1
    assert seen == [True]


def test_an_empty_store_has_nothing_to_collect(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "nothing")
    report = collect(store, keep_rejected=2)
    assert report.collected == () and report.kept == () and report.bytes_freed == 0
    assert not store.root.exists()
