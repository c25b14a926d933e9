"""GET /versions: the store's versions oldest first and the one being served."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.api.conftest import Backend

pytestmark = pytest.mark.api


def test_versions_lists_the_store(backend: Backend) -> None:
    reply = backend.client.get("/versions")
    assert reply.status_code == 200
    assert reply.json() == {"versions": [backend.version], "current": backend.version}


def test_versions_after_a_publish_and_a_swap(backend: Backend, tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = backend.version
    staged = tmp_path / "next"
    shutil.copytree(tiny_checkpoint, staged)
    second = backend.store.publish(staged, {"source": "test"}, name="next").version
    in_store_order = [v.version for v in backend.store.list()]  # oldest first (same-second ties: by name)
    assert sorted(in_store_order) == sorted([first, second])
    assert backend.client.get("/versions").json() == {"versions": in_store_order, "current": second}
    backend.store.set_current(first, project=3)  # a project's own line: /versions describes the default line
    assert backend.client.get("/versions").json() == {"versions": in_store_order, "current": second}
