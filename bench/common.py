"""What the benchmarks share: SST-2 dev texts, a store with a real-size random DistilBERT, the `serve` process
(Basic auth bench:bench-pass) and small measuring helpers. No side effects at import."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (ROOT / "labeling_config" / "sentiment.xml").read_text()
AUTH = ("bench", "bench-pass")


def texts(data_file: str, start: int = 0, n: int | None = None) -> list[str]:
    """Rows start..start+n of one of the bundled data files (data/sst2/train.tsv, data/imdb/test_sample.csv, ...),
    read by the project's own reader (backend.datasets)."""
    from backend.datasets import read_examples

    rows = read_examples(ROOT / "data" / data_file)
    return [e.text for e in rows[start : None if n is None else start + n]]


def dev_texts(n: int | None = None) -> list[str]:
    """The first n SST-2 dev sentences (all 872 without n)."""
    return texts("sst2/dev.tsv", 0, n)


def git_head() -> dict[str, str]:
    """The measured code: the repository's HEAD commit and subject."""
    line = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H %s"], capture_output=True, text=True)
    commit, _, subject = line.stdout.strip().partition(" ")
    return {"commit": commit, "subject": subject}


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS, or VmHWM: its peak) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} for pid {pid}")


def build_store(tmp: Path) -> Path:
    """A store whose current version is a real-size random DistilBERT, imported the way users import one (its
    engine built and gated on SST-2 dev)."""
    from tests.modelfactory import build_distilbert

    ckpt = build_distilbert(tmp / "ckpt", size="real")
    store = tmp / "store"
    env = {**os.environ, "MODEL_DIR": str(store)}
    subprocess.run([sys.executable, "-m", "backend", "models", "import", str(ckpt), "--name", "distilbert-random"],
                   check=True, env=env, capture_output=True)
    return store


def start_server(store: Path, port: int, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m backend serve` on the store, Basic auth bench:bench-pass, returned once /health answers 200."""
    env = {**os.environ, "MODEL_DIR": str(store), "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1],
           "LOG_LEVEL": "WARNING", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", str(port)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", auth=AUTH, timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"backend did not become healthy; see {log}")
