"""ModelCache: each version loaded once however many ask at once, a bounded LRU of loaded versions, failures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backend.errors import ModelNotReady, VersionNotFound
from backend.model.cache import ModelCache
from backend.store import ModelStore
from tests.unit.fakemodels import Loader, Named, publish

pytestmark = pytest.mark.unit


def test_concurrent_asks_for_one_version_load_it_once(store: ModelStore, tmp_path: Path) -> None:
    version = publish(store, tmp_path, "first")
    loader = Loader()
    loader.gate.clear()
    cache = ModelCache(store, loader)
    futures = [cache.load(version) for _ in range(8)]
    got: list[Named] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(version))) for _ in range(4)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    assert cache.loading() == [version] and cache.peek(version) is None
    loader.gate.set()
    for thread in threads:
        thread.join(10)
    assert {f.result(5).version for f in futures} == {version}
    assert loader.calls == [version] and cache.loads == 1
    assert len(got) == 4 and all(c is got[0] for c in got) and got[0].version == version


def test_the_cache_holds_at_most_max_loaded_least_recently_used_dropped(store: ModelStore, tmp_path: Path) -> None:
    a, b, c = (publish(store, tmp_path, name) for name in ("a", "b", "c"))
    cache = ModelCache(store, Loader(), max_loaded=2)
    cache.get(a)
    cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)
    assert cache.loaded() == [a, c]  # b, the least recently used, was dropped
    assert cache.peek(b) is None and cache.get(b).version == b and cache.loaded() == [c, b]


def test_a_failed_load_fails_every_waiter_and_is_retried_only_later(
    store: ModelStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = publish(store, tmp_path, "first")
    loader = Loader()
    loader.fail.add(version)
    cache = ModelCache(store, loader, retry_failed_after=3600)
    with pytest.raises(ModelNotReady, match="failed to load; see the server log"):
        cache.get(version)
    assert "OSError: cannot read" in caplog.text, "the cause stays in the server log"
    loader.fail.clear()
    with pytest.raises(ModelNotReady):
        cache.get(version)  # too soon: not tried again
    assert loader.calls == [version] and cache.failed(version)
    cache_soon = ModelCache(store, loader, retry_failed_after=0.0)
    loader.fail.add(version)
    with pytest.raises(ModelNotReady):
        cache_soon.get(version)
    loader.fail.clear()
    assert cache_soon.get(version).version == version


def test_an_unknown_version_says_so(store: ModelStore) -> None:
    with pytest.raises(VersionNotFound):
        ModelCache(store, Loader()).get("nowhere-20260101-000000")


def test_load_dir_loads_a_candidate_without_keeping_it(store: ModelStore, tmp_path: Path) -> None:
    cache = ModelCache(store, Loader())
    assert cache.load_dir(tmp_path).version == "candidate" and cache.loaded() == []
