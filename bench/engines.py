"""Inference engines in one run, one table: what most backends run next to ours on each engine.

Rows:
  pipeline() bs1 (baseline)  transformers pipeline("text-classification"), one text per call, truncation at 512
                             tokens (without it, reviews over 512 tokens crash it): what Label Studio's examples run
  ours, torch fp32           SentimentClassifier on torch: length-sorted token-budget batches, long texts windowed
  ours, onnx fp32            the same on the version's fused ONNX Runtime export
  ours, onnx int8            the same on its dynamic-int8 export (INT8_RECIPE): what ENGINE=auto serves when it
                             passed its accuracy gate
  ours, openvino fp32        OpenVINO (2026.4) running the fused fp32 export: the other serious CPU engine here
  ours, openvino int8        OpenVINO on an NNCF static-int8 model (converted from torch, 300 SST-2 train sentences
                             as calibration data: never dev). Both OpenVINO rows need `pip install '.[bench]'`
                             and are left out without it.

Columns:
  short rows/s     in process, the SST-2 dev sentences (872), the whole list in one predict call (pipeline: one
                   call per text); "x" is the ratio to pipeline() in the same run
  long rows/s      in process, --long IMDB reviews; ours reads every token (windowed), the pipeline truncates:
                   "read" is the share of the reviews' tokens each one reads
  http rows/s      the real `sentiment-backend serve` process (Basic auth), /predict with 100 tasks a request over
                   the SST-2 dev sentences, sequential; "x" is the ratio to pipeline() in process
  p50/p95 ms       /predict of one SST-2 dev task per request over HTTP (--requests), sequential
  RSS MiB          the serving process's VmRSS after those requests (one version loaded)
  ready s          from starting the process to its first /health 200 (model loaded)
  dev acc          SST-2 dev accuracy of the trained offline starter (--starter STORE) on that engine, served at its
                   calibration temperature; "agree" is label agreement with torch fp32

Speed is measured on a DistilBERT of the real architecture (6 layers, 768 wide, 66 M parameters) with random
weights, built offline: it costs what distilbert-base-uncased-finetuned-sst-2-english costs. Its ONNX engine is
exported by the production code (backend.model.engine_build.export) and not gated (random weights agree with
nothing), so ENGINE=auto serves its int8 graph and ENGINE=torch the torch fp32 one. Accuracy is measured on the
trained starter: its current version is copied, both ONNX graphs exported into the copy, and each engine scored.
Every configuration runs --rounds times, in a rotated order; the table shows the median.

    .venv/bin/python bench/engines.py [--starter STORE] [--long 100] [--requests 200] [--rounds 2]

Prints the table and the goals, and writes bench/results/engines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import common  # noqa: E402

from backend.model.classifier import SentimentClassifier, pad_rows  # noqa: E402
from backend.model.engine import ONNX_FP32, ONNX_INT8, TORCH, softmax, usable_cpus  # noqa: E402

PIPELINE, OURS_TORCH, OURS_FP32, OURS_INT8 = ("pipeline() bs1 (baseline)", "ours, torch fp32", "ours, onnx fp32",
                                              "ours, onnx int8")
OV_FP32, OV_INT8 = "ours, openvino fp32", "ours, openvino int8"
HTTP_BATCH = 100
NNCF_ROWS = 300
GOALS = {"short_x": 7.0, "http_x": 6.0, "long_x": 3.0, "p95_ms": 15.0, "rss_mib": 600.0, "ready_s": 2.0,
         "max_loss_points": 0.3}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--starter", type=Path, help="a store whose current version is the trained offline starter")
    ap.add_argument("--short", type=int, default=None, help="SST-2 dev sentences for the short rows (all: 872)")
    ap.add_argument("--long", type=int, default=100, help="IMDB reviews for the long-row column")
    ap.add_argument("--requests", type=int, default=200, help="one-task /predict requests per served engine")
    ap.add_argument("--rounds", type=int, default=2, help="in-process rounds per configuration (median shown)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engines.json")
    return ap.parse_args()


class OpenVinoEngine:
    """An Engine (backend.model.engine) on an OpenVINO compiled model: padded ids and mask → probabilities."""

    def __init__(self, model: Any, name: str, threads: int) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                               "PERFORMANCE_HINT": "LATENCY"})
        self.output = self.compiled.output(0)
        self.name = name

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.compiled({"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})
        return softmax(np.asarray(out[self.output]))


def openvino_available() -> bool:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def nncf_int8(checkpoint: Path, encoder: Any, threads: int) -> OpenVinoEngine:
    """OpenVINO's own int8 path: the torch model converted to OpenVINO, statically quantized by NNCF (transformer
    preset) on SST-2 train sentences."""
    import nncf
    import openvino as ov
    import torch

    from backend.model.torch_engine import load_checkpoint, quiet_transformers

    with quiet_transformers():
        model, _ = load_checkpoint(checkpoint, attn_implementation="eager")
    model.eval()
    train = common.texts("sst2/train.tsv", 0, NNCF_ROWS)
    special = encoder.special

    def item(text: str) -> dict[str, np.ndarray]:
        ids, mask = pad_rows([[special.cls, *encoder.encode([text])[0][:510], special.sep]], special.pad)
        return {"input_ids": ids, "attention_mask": mask}

    example = {k: torch.from_numpy(v) for k, v in item("a fine example .").items()}
    converted = ov.convert_model(model, example_input=example)
    quantized = nncf.quantize(converted, nncf.Dataset(train, item), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=NNCF_ROWS)
    return OpenVinoEngine(quantized, "openvino-int8", threads)


def classifiers(checkpoint: Path, threads: int, temperature: float = 1.0) -> dict[str, SentimentClassifier]:
    """Ours on every engine, over one checkpoint that holds both ONNX graphs."""
    made = {name: SentimentClassifier.from_path(checkpoint, device="cpu", engine=engine, threads=threads,
                                                temperature=temperature)
            for name, engine in ((OURS_TORCH, TORCH), (OURS_FP32, ONNX_FP32), (OURS_INT8, ONNX_INT8))}
    if openvino_available():
        base = made[OURS_INT8]

        def over(engine: Any) -> SentimentClassifier:
            return SentimentClassifier(engine, base.encoder, base.labels, base.max_length, temperature=temperature)

        fused = checkpoint / "onnx" / "model.fp32.onnx"
        made[OV_FP32] = over(OpenVinoEngine(str(fused), "openvino-fp32", threads))
        made[OV_INT8] = over(nncf_int8(checkpoint, base.encoder, threads))
    return made


def with_engines(src: Path, dst: Path) -> Path:
    """A copy of a checkpoint with both ONNX graphs exported into it by the production export."""
    from backend.model.engine_build import export

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("onnx"))
    export(dst, SentimentClassifier.from_path(dst, device="cpu", engine=TORCH))
    return dst


def rows_per_s(run: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    run()
    return n / (time.perf_counter() - started)


def in_process(checkpoint: Path, short: list[str], long: list[str], rounds: int, threads: int) -> dict[str, Any]:
    """rows/s of every configuration on the short and the long texts, median over rotated rounds."""
    import torch
    from transformers import pipeline

    from backend.model.torch_engine import quiet_transformers

    torch.set_num_threads(threads)
    with quiet_transformers():
        pipe = pipeline("text-classification", model=str(checkpoint), device=-1)
    ours = classifiers(checkpoint, threads)

    def pipe_run(texts: Sequence[str]) -> Callable[[], object]:
        def run() -> None:
            with torch.inference_mode():
                for text in texts:
                    pipe(text, truncation=True, max_length=512)
        return run

    runs: dict[str, Callable[[Sequence[str]], Callable[[], object]]] = {PIPELINE: pipe_run}
    for name, clf in ours.items():
        runs[name] = lambda texts, clf=clf: (lambda: clf.predict(texts))  # type: ignore[misc]
    for run in runs.values():
        run(short[:16])()  # warm-up: first-call allocations, OpenVINO's first shapes
    measured: dict[str, dict[str, list[float]]] = {name: {"short": [], "long": []} for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            measured[name]["short"].append(rows_per_s(runs[name](short), len(short)))
            measured[name]["long"].append(rows_per_s(runs[name](long), len(long)))
            print(f"  round {r + 1}: {name:<28} short {measured[name]['short'][-1]:7.1f}  "
                  f"long {measured[name]['long'][-1]:6.2f} rows/s", flush=True)
    tokens = [len(ids) for ids in ours[OURS_TORCH].encoder.encode(long)]
    truncated_share = sum(min(n, 510) for n in tokens) / sum(tokens)
    return {"rows": {name: {"short_rows_s": round(statistics.median(m["short"]), 2),
                            "long_rows_s": round(statistics.median(m["long"]), 3),
                            "long_tokens_read": 1.0 if name != PIPELINE else round(truncated_share, 4),
                            "short_all": [round(v, 2) for v in m["short"]],
                            "long_all": [round(v, 3) for v in m["long"]]} for name, m in measured.items()},
            "long_tokens": {"mean": round(statistics.fmean(tokens), 1), "median": statistics.median(tokens),
                            "over_510": sum(n > 510 for n in tokens)}}


def served(store: Path, engine: str, short: list[str], requests_n: int, tmp: Path) -> dict[str, Any]:
    """The serve process with ENGINE=engine: ready time, /predict batch rows/s, one-task p50/p95, RSS."""
    port = common.free_port()
    started = time.perf_counter()
    proc = common.start_server(store, port, tmp / f"server-{engine}.log", {"ENGINE": engine})
    ready_s = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}/predict"
    try:
        with requests.Session() as session:
            session.auth = common.AUTH

            def predict(texts: Sequence[str], first_id: int) -> dict[str, Any]:
                body = {"tasks": [{"id": first_id + i, "data": {"text": t}} for i, t in enumerate(texts)],
                        "project": "1.1700000000", "label_config": common.CONFIG}
                reply = session.post(url, json=body, timeout=120)
                reply.raise_for_status()
                return dict(reply.json())

            engine_name = predict(short[:1], 1)["model_version"]
            for i in range(10):
                predict(short[i:i + 1], 1)  # warm-up
            ms = []
            for i in range(requests_n):
                t0 = time.perf_counter()
                predict(short[i % len(short):i % len(short) + 1], 1)
                ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            for start in range(0, len(short), HTTP_BATCH):
                predict(short[start:start + HTTP_BATCH], start + 1)
            http_rows_s = len(short) / (time.perf_counter() - t0)
        rss, peak = common.rss_mib(proc.pid), common.rss_mib(proc.pid, "VmHWM")
        torch_loaded = "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text(encoding="utf-8", errors="replace")
    finally:
        proc.terminate()
        proc.wait(10)
    return {"engine_setting": engine, "model_version": engine_name, "ready_s": round(ready_s, 2),
            "http_rows_s": round(http_rows_s, 2), "p50_ms": round(common.pct(ms, 0.5), 2),
            "p95_ms": round(common.pct(ms, 0.95), 2), "rss_mib": rss, "peak_rss_mib": peak,
            "torch_imported": torch_loaded}


def speed_store(tmp: Path) -> tuple[Path, Path]:
    """(a store whose current version is the random real-size DistilBERT with both ONNX graphs and an int8 engine
    record, that checkpoint)."""
    from backend.store import ModelStore
    from tests.modelfactory import build_distilbert

    checkpoint = with_engines(build_distilbert(tmp / "random", size="real"), tmp / "random-engines")
    store = ModelStore(tmp / "store")
    record = {"chosen": ONNX_INT8, "reason": "bench/engines.py: random weights, not gated"}
    version = store.publish(checkpoint, {"source": "bench/engines.py random real-size DistilBERT", "engine": record},
                            name="distilbert-random")
    return store.root, version.path


def accuracy(starter: Path, tmp: Path, threads: int) -> dict[str, Any]:
    """SST-2 dev accuracy of the starter's current version on every engine, and agreement with torch fp32."""
    from backend.datasets import read_examples
    from backend.model.loading import temperature_of
    from backend.store import ModelStore

    current = ModelStore(starter).current()
    if current is None:
        raise SystemExit(f"{starter} holds no current version")
    checkpoint = with_engines(current.path, tmp / "starter")
    dev = read_examples(ROOT / "data" / "sst2" / "dev.tsv")
    texts, gold = [e.text for e in dev], [e.label for e in dev]
    made = classifiers(checkpoint, threads, temperature_of(current.meta))
    preds = {name: [p.label for p in clf.predict(texts)] for name, clf in made.items()}
    ref = preds[OURS_TORCH]
    out = {name: {"dev_accuracy": round(sum(p == g for p, g in zip(labels, gold, strict=True)) / len(gold), 4),
                  "agreement_torch": round(sum(a == b for a, b in zip(labels, ref, strict=True)) / len(ref), 4)}
           for name, labels in preds.items()}
    return {"version": current.version, "engine_record": current.meta.get("engine"), "rows": out}


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.1f}x" if value and base else "-"


def table(result: dict[str, Any]) -> list[str]:
    rows, http, acc = result["in_process"]["rows"], result["http"], result.get("accuracy", {}).get("rows", {})
    base_short, base_long = rows[PIPELINE]["short_rows_s"], rows[PIPELINE]["long_rows_s"]
    served_as = {OURS_TORCH: http.get("torch"), OURS_INT8: http.get("onnx")}
    head = (f"{'configuration':<28}{'short r/s':>10}{'x':>6}{'long r/s':>9}{'x':>6}{'read':>6}{'http r/s':>9}"
            f"{'x':>6}{'p50 ms':>8}{'p95 ms':>8}{'RSS MiB':>8}{'ready s':>8}{'dev acc':>8}{'agree':>7}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        h = served_as.get(name) or {}
        a = acc.get(name, {})
        lines.append(
            f"{name:<28}{r['short_rows_s']:>10.1f}{ratio(r['short_rows_s'], base_short):>6}{r['long_rows_s']:>9.2f}"
            f"{ratio(r['long_rows_s'], base_long):>6}{r['long_tokens_read']:>6.0%}"
            f"{h.get('http_rows_s', '-'):>9}{ratio(h.get('http_rows_s'), base_short):>6}{h.get('p50_ms', '-'):>8}"
            f"{h.get('p95_ms', '-'):>8}{h.get('rss_mib', '-'):>8}{h.get('ready_s', '-'):>8}"
            f"{a.get('dev_accuracy', '-'):>8}{a.get('agreement_torch', '-'):>7}")
    return lines


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 11 for the served int8 engine, measured against the baseline of the same run."""
    rows, onnx = result["in_process"]["rows"], result["http"]["onnx"]
    base = rows[PIPELINE]
    int8 = rows[OURS_INT8]
    checks = [
        ("short rows, in process", int8["short_rows_s"] / base["short_rows_s"], ">=", GOALS["short_x"], "x"),
        ("short rows, over HTTP", onnx["http_rows_s"] / base["short_rows_s"], ">=", GOALS["http_x"], "x"),
        ("long rows, every token read", int8["long_rows_s"] / base["long_rows_s"], ">=", GOALS["long_x"], "x"),
        ("/predict one task p95", onnx["p95_ms"], "<=", GOALS["p95_ms"], "ms"),
        ("API RSS, one version", onnx["rss_mib"], "<=", GOALS["rss_mib"], "MiB"),
        ("ready after start", onnx["ready_s"], "<=", GOALS["ready_s"], "s"),
    ]
    acc = result.get("accuracy", {}).get("rows")
    if acc:
        loss = 100 * (acc[OURS_TORCH]["dev_accuracy"] - acc[OURS_INT8]["dev_accuracy"])
        checks.append(("int8 accuracy loss vs fp32 (dev)", loss, "<=", GOALS["max_loss_points"], "points"))
    return [{"goal": g, "measured": round(v, 3), "target": f"{op} {t} {unit}",
             "met": v >= t if op == ">=" else v <= t} for g, v, op, t, unit in checks]


def main() -> None:
    args = parse_args()
    threads = usable_cpus()
    short, long = common.dev_texts(args.short), common.texts("imdb/test_sample.csv", 0, args.long)
    result: dict[str, Any] = {"commit": common.git_head(),
                              "machine": {"cpus": threads, "python": platform.python_version()}, "threads": threads,
                              "short_rows": len(short), "long_rows": len(long)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print("building the real-size random DistilBERT and its ONNX graphs ...", flush=True)
        store, checkpoint = speed_store(tmp)
        print("serving it over HTTP with ENGINE=torch, then ENGINE=auto (int8) ...", flush=True)
        result["http"] = {"torch": served(store, "torch", short, args.requests, tmp),
                          "onnx": served(store, "auto", short, args.requests, tmp)}
        print(f"in process, {args.rounds} round(s) ...", flush=True)
        result["in_process"] = in_process(checkpoint, short, long, args.rounds, threads)
        if args.starter:
            print(f"SST-2 dev accuracy of {args.starter}'s current version on each engine ...", flush=True)
            result["accuracy"] = accuracy(args.starter.resolve(), tmp, threads)
    result["goals"] = goals(result)
    lines = table(result)
    print(f"\n{len(short)} short rows (SST-2 dev), {len(long)} long rows (IMDB; mean "
          f"{result['in_process']['long_tokens']['mean']} tokens), {threads} threads")
    print("\n".join(lines))
    for g in result["goals"]:
        print(f"  {'met ' if g['met'] else 'MISS'}  {g['goal']:<34} {g['measured']:>9} (goal {g['target']})")
    result["table"] = lines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
