"""/predict latency for one task over HTTP, next to in-process baselines measured in the same run.

Rows of the table:
  http /predict (1 task)      the real `sentiment-backend serve` process, Basic auth on, one task per request
  in-process predict (1 text) SentimentClassifier.predict([text]) in this process (the floor HTTP adds to)
  pipeline bs1 (baseline)     transformers pipeline("text-classification") one text per call, what
                              Label Studio's example backends run

The model is a DistilBERT of the real architecture (6 layers, 768 wide) with random weights, built
offline: same speed as distilbert-base-uncased-finetuned-sst-2-english. `--model-dir DIR` measures a
store's current version instead (e.g. the offline starter in ./models).

    .venv/bin/python bench/predict_latency.py [--requests 200] [--model-dir models]

Prints a table and writes bench/results/predict_latency.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = (ROOT / "labeling_config" / "sentiment.xml").read_text()


def dev_texts(n: int) -> list[str]:
    rows = (ROOT / "data" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [r.split("\t")[0] for r in rows[:n]]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(name: str, ms: list[float]) -> dict:
    return {"name": name, "n": len(ms), "p50_ms": round(pct(ms, 0.5), 2), "p95_ms": round(pct(ms, 0.95), 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(tmp: Path) -> Path:
    from tests.modelfactory import build_distilbert

    ckpt = build_distilbert(tmp / "ckpt", size="real")
    store = tmp / "store"
    env = {**os.environ, "MODEL_DIR": str(store)}
    subprocess.run([sys.executable, "-m", "backend", "models", "import", str(ckpt), "--name", "distilbert-random"],
                   check=True, env=env, capture_output=True)
    return store


def start_server(store: Path, port: int, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m backend serve` on the store, Basic auth bench:bench-pass, once /health answers 200."""
    env = {**os.environ, "MODEL_DIR": str(store), "BASIC_AUTH_USER": "bench", "BASIC_AUTH_PASS": "bench-pass",
           "LOG_LEVEL": "WARNING", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", str(port)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", auth=("bench", "bench-pass"), timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"backend did not become healthy; see {log}")


def bench_http(port: int, texts: list[str]) -> list[float]:
    session = requests.Session()
    session.headers["Authorization"] = "Basic " + base64.b64encode(b"bench:bench-pass").decode()
    url = f"http://127.0.0.1:{port}/predict"
    times = []
    for i, text in enumerate(texts):
        body = {"tasks": [{"id": i + 1, "data": {"text": text}}], "project": "1.1700000000", "label_config": CONFIG,
                "params": {"login": None, "password": None, "context": None}}
        t0 = time.perf_counter()
        r = session.post(url, json=body, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return times


def bench_inprocess(ckpt: Path, texts: list[str]) -> tuple[list[float], list[float]]:
    import torch
    from transformers import pipeline

    from backend.model.classifier import SentimentClassifier

    clf = SentimentClassifier.from_path(ckpt, device="cpu")
    pipe = pipeline("text-classification", model=str(ckpt), tokenizer=str(ckpt), device=-1, truncation=True)
    ours, base = [], []
    for text in texts[:10]:
        clf.predict([text]), pipe(text)  # warm-up both
    for text in texts:  # interleaved, so machine noise hits both alike
        t0 = time.perf_counter()
        clf.predict([text])
        ours.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(text)
        base.append((time.perf_counter() - t0) * 1000)
    return ours, base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--model-dir", type=Path, default=None, help="measure this store's current version")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_latency.json")
    args = ap.parse_args()
    texts = dev_texts(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.model_dir.resolve() if args.model_dir else build_store(Path(tmp))
        from backend.store import ModelStore

        current = ModelStore(store).current()
        assert current is not None, f"store {store} is empty"
        port = free_port()
        server = start_server(store, port, Path(tmp) / "server.log")
        try:
            bench_http(port, texts[:10])  # warm-up
            http_ms = bench_http(port, texts)
        finally:
            server.terminate()
            server.wait(10)
        ours_ms, pipe_ms = bench_inprocess(current.path, texts)
    rows = [summary("http /predict (1 task)", http_ms), summary("in-process predict (1 text)", ours_ms),
            summary("pipeline bs1 (baseline)", pipe_ms)]
    result = {"model_version": current.version, "model_source": current.meta.get("source"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "texts": "SST-2 dev, first N sentences", "rows": rows}
    print(f"model {current.version}  ({args.requests} requests, sequential)")
    print(f"{'what':<30}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for r in rows:
        print(f"{r['name']:<30}{r['n']:>6}{r['p50_ms']:>10}{r['p95_ms']:>10}{r['mean_ms']:>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
