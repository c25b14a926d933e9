"""Build the image with podman and run it with buildah, the way this machine allows (see README, Docker).

`podman run` cannot start containers here (the OCI runtime's setrlimit is refused), so a built image is run with
`buildah from IMAGE` + `buildah run --isolation chroot`: the image's filesystem, user, working directory and
environment, on the network namespace of the caller (the host's, or an empty one under `unshare --net`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# what the Dockerfile copies (docker/Dockerfile.dockerignore): the build context holds only these
CONTEXT_PATHS = ("pyproject.toml", "README.md", "backend", "labeling_config", "data", "docker")
TORCH_WHEEL_GLOB = "torch-2.13.0*-cp311-*.whl"


def tracked_files(paths: Sequence[str]) -> list[str]:
    """The git-tracked files under paths (what a fresh clone has, nothing built locally)."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", *paths], capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def find_torch_wheel() -> Path | None:
    """A local torch 2.13.0 CPython 3.11 wheel from $TORCH_WHEELS or pip's $PIP_FIND_LINKS directories, if any."""
    for directory in (os.environ.get("TORCH_WHEELS", ""), *os.environ.get("PIP_FIND_LINKS", "").split()):
        if directory and Path(directory).is_dir():
            wheels = sorted(Path(directory).glob(TORCH_WHEEL_GLOB))
            if wheels:
                return wheels[-1]
    return None


def assemble_context(dest: Path, checkpoint: Path, torch_wheel: Path | None) -> Path:
    """A build context: the tracked repository files the image needs, the torch wheel, the checkpoint to bake."""
    for name in tracked_files(CONTEXT_PATHS):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    if torch_wheel is not None:
        shutil.copy2(torch_wheel, dest / "docker" / "wheels" / torch_wheel.name)
    for item in checkpoint.iterdir():
        shutil.copy2(item, dest / "docker" / "checkpoint" / item.name)
    shutil.copy2(dest / "docker" / "Dockerfile.dockerignore", dest / ".dockerignore")
    return dest


def build_image(context: Path, tag: str, build_args: Mapping[str, str], log_path: Path) -> float:
    """`podman build` (docker format, chroot isolation, host network); returns its wall-clock seconds."""
    command = ["podman", "build", "--format", "docker", "--isolation", "chroot", "--network", "host"]
    command += ["-f", "docker/Dockerfile", "-t", tag]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    started = time.monotonic()
    with log_path.open("wb") as out:
        done = subprocess.run([*command, "."], cwd=context, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"podman build exited {done.returncode} after {seconds:.0f} s:\n{tail}")
    return seconds


def image_exists(tag: str) -> bool:
    """True when podman's storage holds this image."""
    return subprocess.run(["podman", "image", "exists", tag]).returncode == 0


def image_inspect(tag: str) -> dict[str, Any]:
    """`buildah inspect --type image`: the OCI config, the Docker config (HEALTHCHECK lives there) and more."""
    out = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True, text=True, check=True)
    inspected: dict[str, Any] = json.loads(out.stdout)
    return inspected


def image_size(tag: str) -> int:
    """The image's size in bytes as podman reports it (all layers, uncompressed)."""
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@dataclass
class Container:
    """A buildah working container of an image; run() and start() run commands in it with chroot isolation."""

    image: str
    name: str = field(default_factory=lambda: f"sentiment-test-{uuid.uuid4().hex[:8]}")

    def create(self) -> Container:
        """`buildah from`: the image's rootfs and config as a working container (no process yet)."""
        subprocess.run(["buildah", "from", "--pull-never", "--name", self.name, self.image], capture_output=True,
                       check=True)
        return self

    def remove(self) -> None:
        """`buildah rm`: the working container and its writable layer are gone."""
        subprocess.run(["buildah", "rm", self.name], capture_output=True)

    def command(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """The `buildah run` command line for args, with env added to the image's environment."""
        line = ["buildah", "run", "--isolation", "chroot"]
        for key, value in (env or {}).items():
            line += ["-e", f"{key}={value}"]
        return [*line, self.name, "--", *args]

    def run(self, args: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run args to completion inside the container; stdout and stderr captured."""
        return subprocess.run(self.command(args, env), capture_output=True, text=True, timeout=timeout)

    def start(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> Process:
        """Start args in the background in its own session (buildah and the command share its process group)."""
        with log_path.open("ab") as out:
            popen = subprocess.Popen(self.command(args, env), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return Process(popen, log_path)


@dataclass
class Process:
    """A background `buildah run`; stop() ends its whole process group (buildah, chroot helper, the command)."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the command has written so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group, SIGKILL after timeout."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


@contextlib.contextmanager
def working_container(image: str) -> Iterator[Container]:
    """A fresh working container of image, removed on exit."""
    container = Container(image).create()
    try:
        yield container
    finally:
        container.remove()
