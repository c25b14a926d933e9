"""ServedModel: each project's version from its line, loads awaited off the event loop, the default line's health."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backend.api.served import ServedModel
from backend.errors import ModelNotReady
from backend.store import ModelStore
from tests.unit.fakemodels import Loader, publish

pytestmark = pytest.mark.unit


def test_the_default_line_loads_in_the_background_and_reports_readiness(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    loader.gate.clear()
    served = ServedModel(store, loader)
    served.start_loading()
    assert not served.ready and served.version == v1 and served.cache.loading() == [v1]
    with pytest.raises(ModelNotReady, match="still loading"):
        served.current()
    loader.gate.set()
    assert served.wait(5)
    assert served.ready and served.error is None and served.current().version == v1
    served.start_loading()
    served.refresh()
    assert served.wait(5) and loader.calls == [v1]  # idempotent: loaded once


def test_an_empty_store_is_an_error(store: ModelStore) -> None:
    served = ServedModel(store, Loader())
    served.start_loading()
    assert not served.ready and served.error is not None and "no current version" in served.error
    with pytest.raises(ModelNotReady, match="no current version"):
        served.version_for(1)


def test_each_project_is_served_its_own_line_and_others_the_default(store: ModelStore, tmp_path: Path) -> None:
    default = publish(store, tmp_path, "default")
    own = publish(store, tmp_path, "own", current=False)
    store.set_current(own, project=7)
    loader = Loader()
    served = ServedModel(store, loader)
    assert served.version_for(7) == own and served.version_for(8) == default and served.version_for(None) == default
    assert served.labels_of(own) == ("NEGATIVE", "POSITIVE") and loader.calls == []  # labels without a load

    async def both() -> tuple[str, str]:
        seven, eight = await asyncio.gather(served.model_for(7), served.model_for(8))
        return seven.version, eight.version

    assert asyncio.run(both()) == (own, default)
    assert sorted(loader.calls) == sorted([own, default])


def test_a_project_waits_for_its_load_while_a_loaded_one_answers(store: ModelStore, tmp_path: Path) -> None:
    default = publish(store, tmp_path, "default")
    own = publish(store, tmp_path, "own", current=False)
    loader = Loader()
    served = ServedModel(store, loader)
    served.cache.get(default)
    store.set_current(own, project=7)
    loader.gate.clear()

    async def scenario() -> list[str]:
        order: list[str] = []

        async def ask(project: int) -> None:
            order.append(f"{project}:{(await served.model_for(project)).version}")

        waiting = asyncio.create_task(ask(7))
        await asyncio.sleep(0.05)
        await ask(8)  # answered at once although project 7's load is held back
        loader.gate.set()
        await waiting
        return order

    assert asyncio.run(scenario()) == [f"8:{default}", f"7:{own}"]


def test_a_load_slower_than_the_wait_is_a_503_and_keeps_loading(store: ModelStore, tmp_path: Path) -> None:
    version = publish(store, tmp_path, "slow")
    loader = Loader()
    loader.gate.clear()
    served = ServedModel(store, loader, load_wait_s=0.05)
    with pytest.raises(ModelNotReady, match="still loading"):
        asyncio.run(served.model_for(1))
    loader.gate.set()
    assert served.wait(5) and served.cache.peek(version) is not None


def test_a_failed_default_is_an_error_until_a_retry_loads_it(
    store: ModelStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    loader.fail.add(v1)
    served = ServedModel(store, loader, retry_failed_after=0.3)
    served.start_loading()
    served.wait(5)
    assert not served.ready and served.error == "the model failed to load; see the server log"
    assert "OSError: cannot read" in caplog.text and str(tmp_path) not in (served.error or "")
    loader.fail.clear()
    served.refresh()
    assert served.wait(5) and loader.calls == [v1]  # too soon: not tried again
    time.sleep(0.4)
    served.refresh()
    served.wait(5)
    assert served.ready and served.error is None and served.current().version == v1


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pointer_files_are_read_at_most_once_per_interval_and_another_process_is_seen_after_it(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = publish(store, tmp_path, "first")
    second = publish(store, tmp_path, "second", current=False)
    clock = Clock()
    served = ServedModel(store, Loader(), check_interval_s=1.0, clock=clock)
    reads: list[int | None] = []
    real = store.current_version
    monkeypatch.setattr(store, "current_version", lambda project=None: reads.append(project) or real(project))
    assert [served.version_for(3) for _ in range(50)] == [first] * 50
    assert reads == [3]  # one read for fifty requests
    ModelStore(store.root).set_current(second, project=3)  # another process (the CLI, a worker) promotes
    clock.now += 0.5
    assert served.version_for(3) == first and reads == [3]  # within the interval: not seen yet
    clock.now += 0.5
    assert served.version_for(3) == second and reads == [3, 3]  # the interval passed: seen


def test_a_promotion_through_this_processs_store_is_seen_by_the_next_request(store: ModelStore,
                                                                             tmp_path: Path) -> None:
    first = publish(store, tmp_path, "first")
    second = publish(store, tmp_path, "second", current=False)
    served = ServedModel(store, Loader(), check_interval_s=3600, clock=Clock())
    assert served.version_for(3) == first and served.version == first
    store.set_current(second, project=3)  # what the API's promote route does
    assert served.version_for(3) == second and served.version == first
    store.set_current(second)
    assert served.version == second
    store.leave_line(3)
    assert served.version_for(3) == second  # back on the default line, which moved too


def test_an_interval_of_zero_reads_the_pointer_on_every_request(store: ModelStore, tmp_path: Path) -> None:
    first = publish(store, tmp_path, "first")
    second = publish(store, tmp_path, "second", current=False)
    served = ServedModel(store, Loader(), check_interval_s=0, clock=Clock())
    assert served.version_for(3) == first
    ModelStore(store.root).set_current(second, project=3)
    assert served.version_for(3) == second
