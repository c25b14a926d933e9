"""ModelStore: versions, the CURRENT pointer, staging, and what a crash mid-publish leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend import store as store_module
from backend.errors import VersionNotFound
from backend.store import ModelStore, slugify

pytestmark = pytest.mark.unit


def _checkpoint(path: Path, payload: str = "weights") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}')
    (path / "model.safetensors").write_text(payload)
    return path


def test_empty_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.list() == []
    assert store.current() is None and store.current_version() is None


def test_publish_list_get_current(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    first = store.publish(_checkpoint(tmp_path / "a", "A"), {"source": "a"}, name="First One")
    second = store.publish(_checkpoint(tmp_path / "b", "B"), {"source": "b"}, name="first one")
    assert first.version.startswith("first-one-") and second.version.startswith("first-one-")
    assert first.version != second.version
    assert [v.version for v in store.list()] == [first.version, second.version]
    assert store.current_version() == second.version
    got = store.get(first.version)
    assert got.meta["source"] == "a" and got.meta["version"] == first.version and got.created_at
    assert (got.path / "model.safetensors").read_text() == "A"
    assert (tmp_path / "a" / "model.safetensors").exists()  # a checkpoint outside the store is copied


def test_publish_without_make_current_and_set_current(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    first = store.publish(_checkpoint(tmp_path / "a"), {}, name="a")
    second = store.publish(_checkpoint(tmp_path / "b"), {}, name="b", make_current=False)
    assert store.current_version() == first.version
    assert store.set_current(second.version).version == second.version
    assert (store.root / "lines" / "default" / "CURRENT").read_text() == second.version + "\n"
    assert store.current() == store.get(second.version)


def test_publish_moves_a_staged_checkpoint_and_cleans_staging(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with store.staging() as staged:
        (staged / "model.safetensors").write_text("trained")
        version = store.publish(staged, {"kind": "test"}, name="staged")
        assert not staged.exists()
    assert (version.path / "model.safetensors").read_text() == "trained"
    assert list(store.staging_root.iterdir()) == []


def test_staging_is_removed_on_error(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(RuntimeError), store.staging() as staged:
        (staged / "half-written").write_text("x")
        raise RuntimeError("training crashed")
    assert list(store.staging_root.iterdir()) == []
    assert store.list() == []


def test_crash_mid_publish_leaves_no_partial_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path / "models")
    first = store.publish(_checkpoint(tmp_path / "a"), {}, name="a")
    real_replace = os.replace

    def crash_on_version_rename(src: object, dst: object) -> None:
        if Path(str(dst)).parent == store.versions_dir:
            raise OSError("simulated crash while renaming into versions/")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.os, "replace", crash_on_version_rename)
    with pytest.raises(OSError, match="simulated crash"):
        store.publish(_checkpoint(tmp_path / "b"), {}, name="b")
    monkeypatch.undo()
    assert [v.version for v in store.list()] == [first.version]
    assert sorted(p.name for p in store.versions_dir.iterdir()) == [first.version]
    assert store.current_version() == first.version
    assert list(store.staging_root.iterdir()) == []


def test_crash_while_switching_current_keeps_the_old_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path / "models")
    first = store.publish(_checkpoint(tmp_path / "a"), {}, name="a")
    second = store.publish(_checkpoint(tmp_path / "b"), {}, name="b", make_current=False)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the pointer rename")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError):
        store.set_current(second.version)
    monkeypatch.undo()
    assert (store.root / "lines" / "default" / "CURRENT").read_text() == first.version + "\n"
    assert store.current_version() == first.version


def test_update_meta_merges_and_keeps_checkpoint(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    version = store.publish(_checkpoint(tmp_path / "a", "W"), {"source": "a", "metrics": {}}, name="a")
    updated = store.update_meta(version.version, metrics={"sst2_dev": {"accuracy": 0.9}}, note="checked")
    assert updated.meta["source"] == "a" and updated.meta["note"] == "checked"
    assert store.get(version.version).meta["metrics"] == {"sst2_dev": {"accuracy": 0.9}}
    assert (updated.path / "model.safetensors").read_text() == "W"
    assert not list(store.versions_dir.glob("*/*.tmp"))
    with pytest.raises(VersionNotFound):
        store.update_meta("no-such-version", note="x")


@pytest.mark.parametrize("bad", ["missing-version", "../models", "..", ".", "a/b", "/etc", "../../etc/passwd", ""])
def test_unknown_and_traversal_versions_are_not_found(tmp_path: Path, bad: str) -> None:
    store = ModelStore(tmp_path / "models")
    store.publish(_checkpoint(tmp_path / "a"), {}, name="a")
    (tmp_path / "meta.json").write_text("{}")  # a meta.json one level above versions/ must stay unreachable
    with pytest.raises(VersionNotFound):
        store.get(bad)
    with pytest.raises(VersionNotFound):
        store.set_current(bad)


def test_names_are_slugged_into_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    version = store.publish(_checkpoint(tmp_path / "a"), {}, name="../../Evil Name!")
    assert version.version.startswith("evil-name-")
    assert version.path.parent.parent == store.versions_dir
    assert slugify("") == "model" and slugify("A" * 80) == "a" * 40


def test_dangling_pointer_is_reported(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.root.mkdir(parents=True)
    (store.root / "CURRENT").write_text("vanished-20250101-000000\n")
    with pytest.raises(VersionNotFound):
        store.current()
