"""Session fixtures of the container tier (`make container-test`, `pytest -m container`): the image, built for real.

* the image is built with podman from a temporary build context (tracked repository files, the local torch wheel,
  a tiny random DistilBERT to bake in with MODEL_SOURCE=local) on the local base `make container-base` made;
* a real Label Studio 1.23.2 (devtools.labelstudio_server) is launched first, so its migrations overlap the build;
* a real redis-server of our own on a free loopback port.

The tier is opt-in: unless the run selects it with `-m container`, its tests are deselected (it needs podman,
buildah and the local base, and a cold build takes minutes). Build time and image size are written to
test-artifacts/container/figures.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk import LabelStudio

from devtools.labelstudio_server import LabelStudioError, LabelStudioServer, create_personal_access_token, free_port
from devtools.labelstudio_server import default_venv as ls_venv
from tests.container.podman import (
    assemble_context,
    build_image,
    find_torch_wheel,
    image_exists,
    image_inspect,
    image_size,
    working_container,
)
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_prelabel import RedisServer
from tests.modelfactory import build_distilbert

TAG = "localhost/sentiment-backend:container-test"
MODEL_NAME = "tiny-random"


@dataclass(frozen=True)
class BuiltImage:
    """The image under test, its baked store version and what its build cost."""

    tag: str
    version: str
    build_seconds: float
    size_bytes: int
    inspected: dict[str, Any]

    @property
    def command(self) -> list[str]:
        """The image's CMD."""
        cmd: list[str] = self.inspected["Docker"]["config"]["Cmd"]
        return cmd


@dataclass(frozen=True)
class Studio:
    """A running Label Studio and a client holding a fresh personal access token."""

    server: LabelStudioServer
    pat: str
    client: LabelStudio


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the container tier unless `-m` names it."""
    if "container" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("container")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("container")]


@pytest.fixture(scope="session")
def container_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temp folder for the session (build context, logs, Label Studio data)."""
    return tmp_path_factory.mktemp("container")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/container/: build log, figures, server logs."""
    path = ARTIFACTS / "container"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def _studio_process(container_dir: Path, artifacts: Path) -> Iterator[LabelStudioServer]:
    """Label Studio launched, not yet waited for (it migrates while the image builds)."""
    server = LabelStudioServer(container_dir / "label-studio", free_port(), venv=ls_venv())
    try:
        server.start()
    except LabelStudioError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            shutil.copyfile(server.log_path, artifacts / "label-studio.log")


def _check_tools(base: str) -> None:
    for tool in ("podman", "buildah", "unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make container-test` (it installs podman and buildah)")
    if not image_exists(base):
        pytest.fail(f"no base image {base}: run `make container-base`")


@pytest.fixture(scope="session")
def built_image(container_dir: Path, artifacts: Path, _studio_process: LabelStudioServer) -> BuiltImage:
    """The image built from a temporary context with a tiny local checkpoint baked in (podman layer cache kept)."""
    base = os.environ.get("CONTAINER_BASE", "localhost/python-base")
    _check_tools(base)
    checkpoint = build_distilbert(container_dir / "checkpoint")
    wheel = find_torch_wheel()
    context = assemble_context(container_dir / "context", checkpoint, wheel)
    args = {"PYTHON_IMAGE": base, "MODEL_SOURCE": "local", "MODEL_NAME": MODEL_NAME}
    if wheel is not None:
        args["TORCH_SOURCE"] = "local"
    try:
        seconds = build_image(context, TAG, args, artifacts / "build.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with working_container(TAG) as container:
        current = container.run(["sentiment-backend", "models", "current"])
    assert current.returncode == 0, current.stdout + current.stderr
    image = BuiltImage(TAG, current.stdout.strip(), seconds, image_size(TAG), image_inspect(TAG))
    figures = {"tag": TAG, "base": base, "build_seconds": round(seconds, 1), "size_bytes": image.size_bytes,
               "torch_wheel": str(wheel), "version": image.version}
    (artifacts / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return image


@pytest.fixture(scope="session")
def studio(_studio_process: LabelStudioServer, built_image: BuiltImage) -> Studio:
    """Label Studio once healthy, with a personal access token (after the build, which it overlapped)."""
    started = time.monotonic()
    try:
        _studio_process.wait_ready()
    except LabelStudioError as exc:
        pytest.fail(f"{exc} (waited {time.monotonic() - started:.0f} s)")
    server = _studio_process
    pat = create_personal_access_token(server.base_url, server.email, server.password)
    return Studio(server, pat, LabelStudio(base_url=server.base_url, api_key=pat, timeout=300))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throw-away redis-server on a free loopback port, stopped after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
