"""`make run`: the whole thing on this machine, in the foreground, until Ctrl-C.

    .venv/bin/python -m devtools.demo [--ls-port 8080] [--backend-port 9090]

1. Redis: use the one at REDIS_URL, or start a throw-away `redis-server` on loopback;
2. a model: `sentiment-backend models current`, else `models bootstrap --preset quick` (offline, ~10 min on 2 cores);
3. Label Studio 1.23.2 from .venv-ls on 127.0.0.1:8080, data kept in .run/label-studio for the next run, and a
   personal access token for the admin (replacing the previous run's);
4. the backend: `sentiment-backend serve` on 127.0.0.1:9090 (log: .run/backend.log), and one
   `sentiment-backend worker` for trainings and bulk pre-labeling (log: .run/worker.log);
5. once: the project "Sentiment demo (SST-2 dev)" with the 872 SST-2 dev sentences, connected with
   `sentiment-backend connect --retrieve` (pre-labels every task with Label Studio's "Retrieve predictions");
6. prints where to log in, then waits; Ctrl-C stops what this run started.

Settings come from the usual environment variables (MODEL_DIR default ./models, BASIC_AUTH_*, WEBHOOK_SECRET ...);
LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are set, for the backend and `connect`, from the Label Studio started here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

import requests
from label_studio_sdk import LabelStudio

from devtools.labelstudio_server import (
    REPO_ROOT,
    LabelStudioError,
    LabelStudioServer,
    create_personal_access_token,
    port_is_free,
)

log = logging.getLogger("demo")

PROJECT_TITLE = "Sentiment demo (SST-2 dev)"
BACKEND_TITLE = "sentiment-backend"
RUN_DIR = REPO_ROOT / ".run"
LABEL_CONFIG = REPO_ROOT / "labeling_config" / "sentiment.xml"
DEV_TSV = REPO_ROOT / "data" / "sst2" / "dev.tsv"
DATA_TRAIN_TSV = REPO_ROOT / "data" / "sst2" / "train.tsv"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to do."""


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Log the start and the duration of one step."""
    log.info("%s ...", name)
    started = time.monotonic()
    yield
    log.info("%s: done in %.1f s", name, time.monotonic() - started)


def cli(*args: str) -> list[str]:
    """The command line of `sentiment-backend ARGS` from this interpreter's venv."""
    executable = Path(sys.executable).parent / "sentiment-backend"
    return [str(executable if executable.exists() else shutil.which("sentiment-backend") or "sentiment-backend"), *args]


def stop_process(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM the process group we started, SIGKILL after 15 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    log.info("stopped %s (pid %s)", name, process.pid)


def redis_reachable(url: str) -> bool:
    """True when Redis at url answers PING."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str) -> subprocess.Popen[bytes] | None:
    """Use the Redis at url, or start one on its loopback port; return the process when we started it."""
    if redis_reachable(url):
        log.info("redis: %s answers", url)
        return None
    target = urlparse(url)
    if target.hostname not in ("127.0.0.1", "localhost"):
        raise DemoError(f"redis at {url} does not answer (start it, or unset REDIS_URL for a local one)")
    server = shutil.which("redis-server")
    if server is None:
        raise DemoError("no redis-server on PATH: apt-get install -y redis-server")
    port = str(target.port or 6379)
    command = [server, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    for _ in range(50):
        if redis_reachable(url):
            log.info("redis: started on 127.0.0.1:%s (pid %s)", port, process.pid)
            return process
        time.sleep(0.1)
    stop_process(process, "redis")
    raise DemoError("redis-server did not answer within 5 s")


def ensure_model(env: dict[str, str]) -> str:
    """The current model version; runs the offline quick bootstrap (progress on the console) when the store is empty."""
    current = subprocess.run(cli("models", "current"), env=env, capture_output=True, text=True)
    if current.returncode == 0:
        return current.stdout.strip()
    if current.returncode != 1:  # 1 = empty store; anything else is a broken install or settings
        raise DemoError(f"`sentiment-backend models current` failed: {current.stderr.strip()}")
    log.info("the model store %s is empty: fine-tuning the bundled MiniLM on SST-2 (preset quick)", env["MODEL_DIR"])
    subprocess.run(cli("models", "bootstrap", "--preset", "quick"), env=env, check=True)
    return subprocess.run(cli("models", "current"), env=env, capture_output=True, text=True, check=True).stdout.strip()


def start_backend(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`sentiment-backend serve` on 127.0.0.1:port, waited for until /health answers 200."""
    if not port_is_free(port):
        raise DemoError(f"port {port} is busy: stop what holds it or pass --backend-port")
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            cli("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the backend exited ({process.returncode}); see {log_path}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        time.sleep(0.3)
    stop_process(process, "backend")
    raise DemoError(f"the backend's /health is not 200 after 180 s; see {log_path}")


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """One `sentiment-backend worker`: it runs the trainings ("Start training", annotation thresholds) and bulk
    pre-labeling the backend queues; it preloads the model, so it is not waited for."""
    with log_path.open("ab") as out:
        return subprocess.Popen(cli("worker"), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def find_project(client: LabelStudio, title: str) -> int | None:
    """The id of the first project with this title, if any."""
    projects: Any = client.projects.list()  # a pager over every page
    for project in projects:
        if project.title == title and project.id is not None:
            return int(project.id)
    return None


def dev_texts() -> list[str]:
    """Every SST-2 dev sentence (text column of data/sst2/dev.tsv)."""
    lines = DEV_TSV.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines if line.strip()]


def ensure_project(client: LabelStudio, env: dict[str, str], backend_url: str) -> int:
    """Create, fill and connect the demo project unless a previous run already did."""
    project_id = find_project(client, PROJECT_TITLE)
    if project_id is None:
        with phase("creating the project and importing the SST-2 dev sentences"):
            project = client.projects.create(title=PROJECT_TITLE, label_config=LABEL_CONFIG.read_text())
            assert project.id is not None
            project_id = int(project.id)
            tasks: list[Any] = [{"text": t} for t in dev_texts()]  # the flat form: data keys at the top
            client.projects.import_tasks(id=project_id, request=tasks)
    else:
        log.info("project %r exists (id %s)", PROJECT_TITLE, project_id)
    connected = [ml for ml in client.ml.list(project=project_id) if (ml.url or "").rstrip("/") == backend_url]
    if connected:
        log.info("the backend is already connected to project %s", project_id)
        return project_id
    with phase("connecting the backend and retrieving predictions for every task"):
        args = ("connect", "--project", str(project_id), "--backend-url", backend_url, "--title", BACKEND_TITLE)
        subprocess.run(cli(*args, "--retrieve"), env=env, check=True)
    return project_id


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo until Ctrl-C; 1 when a step fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ls-port", type=int, default=8080)
    parser.add_argument("--backend-port", type=int, default=9090)
    parser.add_argument("--ls-data", type=Path, default=RUN_DIR / "label-studio")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell's `cmd &` starts it ignored
        signal.signal(stop_signal, _raise_keyboard_interrupt)
    RUN_DIR.mkdir(exist_ok=True)

    env = dict(os.environ)
    env.setdefault("MODEL_DIR", str(REPO_ROOT / "models"))
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    # the demo's models know SST-2: rehearsing it keeps a project's retraining from forgetting it
    env.setdefault("TRAIN_REHEARSAL_FILE", str(DATA_TRAIN_TSV))
    backend_url = f"http://127.0.0.1:{options.backend_port}"
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    studio = LabelStudioServer(options.ls_data, options.ls_port)
    total = time.monotonic()
    try:
        for name, port in (("label studio", options.ls_port), ("backend", options.backend_port)):
            if not port_is_free(port):
                raise DemoError(f"port {port} for the {name} is busy: stop what holds it or pick another port")
        with phase("redis"):
            redis_process = ensure_redis(env["REDIS_URL"])
            if redis_process is not None:
                started.append(("redis", redis_process))
        with phase("model"):
            version = ensure_model(env)
            log.info("current model version: %s", version)
        first = not (options.ls_data / "label_studio.sqlite3").exists()
        note = " (first start: migrations, about a minute)" if first else ""
        with phase(f"label studio on {studio.base_url}{note}"):
            studio.start()
            studio.wait_ready()
        with phase("personal access token"):
            pat = create_personal_access_token(studio.base_url, studio.email, studio.password)
        # the backend gets the token too: it calls Label Studio for training data
        env.update(LABEL_STUDIO_URL=studio.base_url, LABEL_STUDIO_API_KEY=pat)
        with phase(f"backend on {backend_url}"):
            started.append(("backend", start_backend(env, options.backend_port, RUN_DIR / "backend.log")))
        started.append(("worker", start_worker(env, RUN_DIR / "worker.log")))
        client = LabelStudio(base_url=studio.base_url, api_key=pat, timeout=600)
        project_id = ensure_project(client, env, backend_url)
        log.info("ready in %.1f s", time.monotonic() - total)
        log.info("")
        log.info("  Label Studio  %s", studio.base_url)
        log.info("  login         %s / %s", studio.email, studio.password)
        log.info("  project       %s/projects/%s/data", studio.base_url, project_id)
        log.info("  backend       %s (model %s, log %s)", backend_url, version, RUN_DIR / "backend.log")
        log.info("")
        log.info("Ctrl-C stops: label studio, %s", ", ".join(name for name, _ in started))
        while True:
            for name, process in started:
                if process.poll() is not None:
                    raise DemoError(f"{name} exited ({process.returncode})")
            if studio.process is not None and studio.process.poll() is not None:
                raise DemoError(f"label studio exited; see {studio.log_path}")
            time.sleep(1)
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    except (DemoError, LabelStudioError, subprocess.CalledProcessError) as exc:
        log.error("demo failed: %s", exc)
        return 1
    finally:
        studio.stop()
        for name, process in reversed(started):
            stop_process(process, name)


if __name__ == "__main__":
    sys.exit(main())
