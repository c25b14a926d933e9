"""Session fixtures for the e2e and browser tiers: real processes on loopback, nothing faked.

* a tiny random DistilBERT (tests/modelfactory) imported with `sentiment-backend models import` into a temp store;
* the backend as a real `sentiment-backend serve` subprocess with Basic auth and a webhook secret, log to a file;
* a real Label Studio 1.23.2 (devtools.labelstudio_server, fresh data dir) and a personal access token;
* one project built from labeling_config/sentiment.xml with the first 200 SST-2 dev rows, connected with
  `sentiment-backend connect` and pre-labeled with Label Studio's own "Retrieve predictions".

Label Studio's first start (migrations) takes the longest, so it is launched first and the backend starts while
it migrates. Logs of both servers are copied to test-artifacts/e2e/ at the end of the session.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from label_studio_sdk import LabelStudio

from backend.config import Settings
from devtools.labelstudio_server import (
    LabelStudioError,
    LabelStudioServer,
    create_personal_access_token,
    default_venv,
    free_port,
)
from tests.modelfactory import build_distilbert

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SENTIMENT_XML = REPO / "labeling_config" / "sentiment.xml"
DEV_TSV = REPO / "data" / "sst2" / "dev.tsv"
N_TASKS = 200
BACKEND_TITLE = "sentiment-backend"
# settings of ours that must come from the fixtures, never from the developer's shell: every Settings field
_OUR_VARIABLES = tuple(name.upper() for name in Settings.model_fields)


def cli_executable() -> str:
    """The `sentiment-backend` console script of the interpreter running the tests (the project venv)."""
    local = Path(sys.executable).parent / "sentiment-backend"
    found = str(local) if local.exists() else shutil.which("sentiment-backend")
    if not found:
        pytest.fail("sentiment-backend is not installed: run `make venv`")
    return found


def clean_environment(**settings: str) -> dict[str, str]:
    """os.environ without our settings, plus the given ones; Hugging Face kept offline."""
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    # no engine builds: the unit tier covers them, and an export per training would only slow these tiers down
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DEVICE="cpu", BUILD_ENGINE="false")
    env.update(settings)  # a caller's BUILD_ENGINE or DEVICE wins
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `sentiment-backend ARGS`; fail the test with its output when it exits non-zero."""
    done = subprocess.run([cli_executable(), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"sentiment-backend {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def sst2_dev_texts(n: int) -> list[str]:
    """The first n texts of data/sst2/dev.tsv."""
    with DEV_TSV.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["text"] for _, row in zip(range(n), rows, strict=False)]


@dataclass(frozen=True)
class Backend:
    """The running `sentiment-backend serve` process as the tests see it."""

    url: str
    user: str
    password: str
    webhook_secret: str
    version: str
    model_dir: Path
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        """Basic auth credentials for requests."""
        return (self.user, self.password)

    def log_text(self) -> str:
        """Everything the backend has logged so far."""
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Studio:
    """A running Label Studio with an admin login and a personal access token."""

    server: LabelStudioServer
    pat: str = field(repr=False)
    client: LabelStudio = field(repr=False)
    first_start_seconds: float

    @property
    def url(self) -> str:
        """Base URL, http://127.0.0.1:<port>."""
        return self.server.base_url


@dataclass(frozen=True)
class SentimentProject:
    """The shared project: 200 SST-2 dev rows, our backend connected, predictions retrieved once."""

    id: int
    ml_backend_id: int
    task_ids: list[int]
    connection: dict[str, object]
    retrieve_seconds: float


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: they reuse the project the e2e tests check, and the e2e tier then carries the start-up."""
    browser = [item for item in items if item.get_closest_marker("browser")]
    if browser:
        items[:] = [item for item in items if not item.get_closest_marker("browser")] + browser


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temp folder for the whole e2e session (store, checkpoint, LS data, logs)."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def _label_studio_process(e2e_dir: Path) -> Iterator[LabelStudioServer]:
    """Label Studio launched, not yet waited for (its migrations overlap the backend's start)."""
    venv = default_venv()
    if not (venv / "bin" / "label-studio").exists():
        pytest.fail(f"no Label Studio in {venv}: run `make ls-venv` (or set LABEL_STUDIO_VENV)")
    server = LabelStudioServer(e2e_dir / "label-studio", free_port(), venv=venv)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _keep_artifact(server.log_path, "label-studio.log")


@pytest.fixture(scope="session")
def model_store(e2e_dir: Path) -> tuple[Path, str]:
    """A store holding one imported tiny random DistilBERT: (MODEL_DIR, its version string)."""
    checkpoint = build_distilbert(e2e_dir / "checkpoint")
    model_dir = e2e_dir / "models"
    env = clean_environment(MODEL_DIR=str(model_dir))
    imported = run_cli("models", "import", str(checkpoint), env=env).stdout.strip().splitlines()[-1]
    current = run_cli("models", "current", env=env).stdout.strip()
    assert current == imported, (current, imported)
    return model_dir, current


@pytest.fixture(scope="session")
def backend(e2e_dir: Path, model_store: tuple[Path, str]) -> Iterator[Backend]:
    """`sentiment-backend serve` on a free loopback port, Basic auth and webhook secret on; waits for /health 200."""
    model_dir, version = model_store
    port = free_port()
    log_path = e2e_dir / "backend.log"
    user = "label-studio"
    password, webhook_secret = "pw-" + secrets.token_urlsafe(18), "wh-" + secrets.token_urlsafe(18)
    env = clean_environment(
        MODEL_DIR=str(model_dir),
        BASIC_AUTH_USER=user,
        BASIC_AUTH_PASS=password,
        WEBHOOK_SECRET=webhook_secret,
        LOG_LEVEL="INFO",
    )
    handle = Backend(
        url=f"http://127.0.0.1:{port}",
        user=user,
        password=password,
        webhook_secret=webhook_secret,
        version=version,
        model_dir=model_dir,
        log_path=log_path,
        env=env,
    )
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [cli_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_backend(handle, process)
        yield handle
    finally:
        _stop(process)
        _keep_artifact(log_path, "backend.log")


def _wait_for_backend(handle: Backend, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the backend exited ({process.returncode}):\n{handle.log_text()[-4000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(handle.url + "/health", auth=handle.auth, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"the backend's /health is not 200 after {timeout} s:\n{handle.log_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _keep_artifact(path: Path, name: str) -> None:
    with contextlib.suppress(OSError):
        target = ARTIFACTS / "e2e"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)


@pytest.fixture(scope="session")
def label_studio(_label_studio_process: LabelStudioServer, backend: Backend) -> Studio:
    """Label Studio once healthy (it was launched before the backend), with a fresh personal access token.

    It depends on `backend` only so that the backend starts while Label Studio runs its migrations.
    """
    server = _label_studio_process
    started = time.monotonic()
    try:
        server.wait_ready()
    except LabelStudioError as exc:
        pytest.fail(str(exc))
    waited = time.monotonic() - started
    pat = create_personal_access_token(server.base_url, server.email, server.password)
    client = LabelStudio(base_url=server.base_url, api_key=pat, timeout=300)
    return Studio(server=server, pat=pat, client=client, first_start_seconds=waited)


def connect_with_cli(studio: Studio, backend: Backend, project_id: int) -> dict[str, object]:
    """`sentiment-backend connect` the way an operator runs it; returns the JSON line it prints."""
    env = {**backend.env, "LABEL_STUDIO_URL": studio.url, "LABEL_STUDIO_API_KEY": studio.pat}
    args = ("connect", "--project", str(project_id), "--backend-url", backend.url, "--title", BACKEND_TITLE)
    out = run_cli(*args, env=env).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("{"))
    connection: dict[str, object] = json.loads(line)
    return connection


def task_ids(client: LabelStudio, project_id: int) -> list[int]:
    """Every task id of a project, in order."""
    tasks: Any = client.tasks.list(project=project_id, fields="task_only")  # a pager over every page
    return sorted(int(task.id) for task in tasks if task.id is not None)


@pytest.fixture(scope="session")
def sentiment_project(label_studio: Studio, backend: Backend) -> SentimentProject:
    """The project the e2e and browser tests share: created, imported, connected, predictions retrieved once."""
    client = label_studio.client
    project = client.projects.create(title="e2e sentiment (SST-2 dev)", label_config=SENTIMENT_XML.read_text())
    assert project.id is not None
    tasks: list[Any] = [{"text": t} for t in sst2_dev_texts(N_TASKS)]  # flat form: data keys at the top
    client.projects.import_tasks(id=project.id, request=tasks)
    connection = connect_with_cli(label_studio, backend, project.id)
    started = time.monotonic()
    client.actions.create(
        id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []}
    )
    retrieve_seconds = time.monotonic() - started
    return SentimentProject(
        id=project.id,
        ml_backend_id=int(str(connection["ml_backend_id"])),
        task_ids=task_ids(client, project.id),
        connection=connection,
        retrieve_seconds=retrieve_seconds,
    )
