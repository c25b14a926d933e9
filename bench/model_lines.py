"""What many projects on one backend cost: RSS of the API with 1, 2 and 3 versions loaded, and the latency of a
project's first /predict (its version not loaded yet) next to its second one and to a project whose version is
loaded (the baseline, measured in the same run).

The model is a DistilBERT of the real architecture (6 layers, 768 wide, ~255 MB of weights) with random
weights, built offline: it loads and predicts like distilbert-base-uncased-finetuned-sst-2-english. Four
versions of it: the default line's and one line each for projects 1, 2 and 3; the server keeps
MAX_LOADED_MODELS=3.

    .venv/bin/python bench/model_lines.py

Prints a table and writes bench/results/model_lines.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (the store, server and port helpers the benchmarks share)

AUTH = common.AUTH
PROJECTS = (1, 2, 3)


def cli(store: Path, *args: str) -> str:
    env = {**os.environ, "MODEL_DIR": str(store), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "backend", *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]



def predict_ms(port: int, project: int, text: str) -> tuple[float, str]:
    body = {"tasks": [{"id": 1, "data": {"text": text}}], "label_config": common.CONFIG,
            "project": f"{project}.1700000000"}
    started = time.perf_counter()
    reply = requests.post(f"http://127.0.0.1:{port}/predict", json=body, auth=AUTH, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    reply.raise_for_status()
    return round(elapsed, 1), reply.json()["model_version"]


def main() -> None:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = common.build_store(Path(tmp))
        default = cli(store, "models", "current")
        ckpt = Path(tmp) / "ckpt"
        lines = {}
        for project in PROJECTS:
            version = cli(store, "models", "import", str(ckpt), "--name", f"p{project}")
            lines[project] = cli(store, "models", "promote", version, "--project", str(project)).split()[0]
        cli(store, "models", "promote", default, "--default")
        port = common.free_port()
        server = common.start_server(store, port, Path(tmp) / "server.log", {"MAX_LOADED_MODELS": "3"})
        try:
            texts = common.dev_texts(40)
            for text in texts[:3]:
                predict_ms(port, 9, text)  # warm the default's first-call paths
            baseline = sorted(predict_ms(port, 9, t)[0] for t in texts[3:13])
            rows.append({"step": "default line loaded (baseline)", "loaded": 1, "rss_mib": common.rss_mib(server.pid),
                         "first_predict_ms": None, "next_predict_ms": baseline[len(baseline) // 2]})
            for n, project in enumerate(PROJECTS, start=2):
                first, version = predict_ms(port, project, texts[20 + n])
                assert version == lines[project], (version, lines[project])
                nxt = sorted(predict_ms(port, project, t)[0] for t in texts[30:35])[2]
                rows.append({"step": f"project {project}'s own version", "loaded": min(n, 3),
                             "rss_mib": common.rss_mib(server.pid), "first_predict_ms": first, "next_predict_ms": nxt})
            again, _ = predict_ms(port, 9, texts[0])  # the default was the least recently used: dropped
            rows.append({"step": "default line again (dropped by project 3)", "loaded": 3,
                         "rss_mib": common.rss_mib(server.pid), "first_predict_ms": again, "next_predict_ms": None})
        finally:
            server.terminate()
            server.wait(10)
    print(f"{'step':<44} {'loaded':>6} {'RSS MiB':>8} {'first /predict ms':>18} {'next /predict ms':>17}")
    for row in rows:
        first = "-" if row["first_predict_ms"] is None else f"{row['first_predict_ms']:.0f}"
        nxt = "-" if row["next_predict_ms"] is None else f"{row['next_predict_ms']:.0f}"
        print(f"{row['step']:<44} {row['loaded']:>6} {row['rss_mib']:>8} {first:>18} {nxt:>17}")
    out = ROOT / "bench" / "results" / "model_lines.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
