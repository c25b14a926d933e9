"""Start and stop a real Label Studio 1.23.2 on loopback, from its own virtual environment.

Label Studio is heavy (Django, pandas, boto3 ...), so it lives in `.venv-ls/` (`make ls-venv`), never in the
product's environment; `LABEL_STUDIO_VENV` points elsewhere. Used by the e2e/browser test fixtures and by
`python -m devtools.demo`.

What the start recipe gets right (see shared/docs/label-studio-live.md):
* `--internal-host 127.0.0.1` (the default is 0.0.0.0);
* the port is checked first: a busy port makes Label Studio silently move to the next free one;
* `ML_BLOCK_LOCAL_IP=false` and `SSRF_PROTECTION_ENABLED=false`, else a backend on 127.0.0.1 is refused (403)
  and the auto-created /webhook is never made;
* no telemetry, Sentry or version check;
* the PID we stop is the server's: the console script is exec'd directly (no shell, no shim) in its own session,
  and stop() also ends whatever in that session still holds the port.

A fresh 1.23 organization refuses legacy `Token` keys, so API access uses a personal access token (PAT) made with
`create_personal_access_token`; label-studio-sdk 2.1 refreshes it on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EMAIL = "admin@example.com"
DEFAULT_PASSWORD = "sentiment-demo-admin"
LOOPBACK = "127.0.0.1"

# variables of ours (or of the parent venv) that must not leak into Label Studio's process
_STRIPPED_ENV_PREFIXES = ("LABEL_STUDIO_", "DJANGO_")
_STRIPPED_ENV = {"HOST", "PORT", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DEBUG"}


class LabelStudioError(RuntimeError):
    """Label Studio could not be started, did not become healthy, or refused a login."""


def default_venv() -> Path:
    """The virtual environment holding label-studio==1.23.2: $LABEL_STUDIO_VENV or <repo>/.venv-ls."""
    return Path(os.environ.get("LABEL_STUDIO_VENV") or REPO_ROOT / ".venv-ls")


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing accepts connections on host:port and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as binder:
        binder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no conflict
        try:
            binder.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that is free right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def listening_pids(port: int) -> set[int]:
    """PIDs of the processes holding a LISTEN socket on this TCP port (read from /proc, Linux only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    pids: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(proc.name))
                    break
    return pids


@dataclass
class LabelStudioServer:
    """One Label Studio process on 127.0.0.1:<port> with its own data dir and a known admin login."""

    data_dir: Path
    port: int = 8080
    venv: Path = field(default_factory=default_venv)
    email: str = DEFAULT_EMAIL
    password: str = DEFAULT_PASSWORD
    legacy_token: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, the URL Label Studio also reports to the ML backend as its hostname."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Label Studio's stdout+stderr (appended across restarts)."""
        return self.data_dir / "label-studio.log"

    def environment(self) -> dict[str, str]:
        """The process environment: ours minus anything Label Studio could misread, plus the loopback recipe."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES) and k not in _STRIPPED_ENV
        }
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_USERNAME=self.email,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_HOST=self.base_url,
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            COLLECT_ANALYTICS="false",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            LATEST_VERSION_CHECK="false",
            PYTHONUNBUFFERED="1",
        )
        if self.legacy_token:
            env.update(LABEL_STUDIO_USER_TOKEN=self.legacy_token, LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true")
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Launch the server in the background (returns at once; call wait_ready())."""
        if self.process is not None:
            raise LabelStudioError("already started")
        executable = self.venv / "bin" / "label-studio"
        if not executable.exists():
            raise LabelStudioError(f"{executable} is missing: run `make ls-venv` (or set LABEL_STUDIO_VENV)")
        if not port_is_free(self.port):
            raise LabelStudioError(f"port {self.port} is busy: Label Studio would silently move to another one")
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [str(executable), "start", "--no-browser", "--internal-host", LOOPBACK, "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can end it and any child it made
            )
        log.info("label studio starting: pid %s, %s, data %s", self.process.pid, self.base_url, self.data_dir)

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Block until GET /health answers UP; return the seconds waited. Raises with the log tail on failure."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise LabelStudioError(f"label studio exited ({code}) before it was ready:\n{self.log_tail()}")
            if self._healthy():
                self._check_port_owner()
                return time.monotonic() - started
            time.sleep(0.5)
        raise LabelStudioError(f"label studio not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            reply = requests.get(self.base_url + "/health", timeout=2)
        except requests.RequestException:
            return False
        return reply.status_code == 200 and reply.json().get("status") == "UP"

    def _check_port_owner(self) -> None:
        owners = listening_pids(self.port)
        if self.process is not None and owners and not any(self._ours(pid) for pid in owners):
            raise LabelStudioError(f"port {self.port} is held by pid {sorted(owners)}, not by our label studio")

    def _ours(self, pid: int) -> bool:
        if self.process is None:
            return False
        try:
            return os.getsid(pid) == self.process.pid
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL after timeout; then make sure none of ours holds the port."""
        if self.process is None:
            return
        pgid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for pid in listening_pids(self.port):
            if self._ours(pid):  # a child that outlived the leader, still in our session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        log.info("label studio stopped (pid %s)", pgid)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LabelStudioServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_label_studio(data_dir: Path, port: int = 8080, **options: object) -> Iterator[LabelStudioServer]:
    """Start Label Studio, wait until healthy, yield the server, stop it on exit (the fixture/demo helper)."""
    server = LabelStudioServer(Path(data_dir), port, **options)  # type: ignore[arg-type]
    with server:
        yield server


def login_session(base_url: str, email: str, password: str) -> requests.Session:
    """A requests session logged in through /user/login/ (Django form + CSRF), as a browser would be."""
    session = requests.Session()
    login_url = base_url.rstrip("/") + "/user/login/"
    session.get(login_url, timeout=30).raise_for_status()
    form = {"email": email, "password": password, "csrfmiddlewaretoken": session.cookies.get("csrftoken") or ""}
    reply = session.post(login_url, data=form, headers={"Referer": login_url}, allow_redirects=False, timeout=30)
    if reply.status_code != 302 or "sessionid" not in session.cookies:
        raise LabelStudioError(f"login as {email} failed: HTTP {reply.status_code}")
    return session


def create_personal_access_token(base_url: str, email: str, password: str, *, replace: bool = True) -> str:
    """Log in and create a personal access token (POST /api/token/): the JWT refresh token label-studio-sdk takes.

    Label Studio allows one live token per user (409 otherwise); with replace=True the existing ones are revoked
    first (POST /api/token/blacklist/ takes the truncated form GET /api/token/ lists).
    """
    base = base_url.rstrip("/")
    session = login_session(base, email, password)
    headers = {"X-CSRFToken": session.cookies.get("csrftoken") or "", "Referer": base + "/"}
    reply = session.post(base + "/api/token/", headers=headers, timeout=30)
    if reply.status_code == 409 and replace:
        for listed in session.get(base + "/api/token/", timeout=30).json():
            revoked = session.post(base + "/api/token/blacklist/", json={"refresh": listed["token"]}, headers=headers)
            if revoked.status_code not in (204, 404):
                raise LabelStudioError(f"revoking the old token failed: HTTP {revoked.status_code}")
        reply = session.post(base + "/api/token/", headers=headers, timeout=30)
    if reply.status_code not in (200, 201):
        raise LabelStudioError(f"POST /api/token/ failed: HTTP {reply.status_code} {reply.text[:200]}")
    token: str = reply.json()["token"]
    return token
