"""The int8 engine's knobs, measured on one real-size random DistilBERT in one process: what chose their defaults.

Tables:
  session load   seconds to create the ONNX Runtime session of the int8 graph per graph optimization level, and
                 rows/s of 800 SST-2 train sentences on it (ORT_ENABLE_EXTENDED is what backend.model.onnx_engine
                 uses)
  token budget   rows/s at TOKEN_BUDGET 512/1024/2048/4096 on IMDB reviews 1,000-1,079 of the sample (long, not
                 the rows bench/engines.py measures) and on 800 SST-2 train sentences (short; never dev)
  one row        in-process latency of predict([text]) for one SST-2 train sentence at a time, 1 and 2 threads:
                 the floor under /predict's one-task latency
Every measurement runs --rounds times in a rotated order; the tables show each round.

    .venv/bin/python bench/engine_knobs.py [--rounds 2]

Writes bench/results/engine_knobs.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from backend.model.classifier import SentimentClassifier  # noqa: E402
from backend.model.engine import ONNX_INT8, softmax  # noqa: E402

BUDGETS = (512, 1024, 2048, 4096)
LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC")


def rate(clf: SentimentClassifier, texts: list[str]) -> float:
    started = time.perf_counter()
    clf.predict(texts)
    return round(len(texts) / (time.perf_counter() - started), 2)


class SessionEngine:
    """An Engine (backend.model.engine) over a given onnxruntime session: the production forward, any options."""

    name = ONNX_INT8

    def __init__(self, session: Any) -> None:
        self.session = session

    def forward(self, ids: Any, mask: Any) -> Any:
        (logits,) = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
        return softmax(logits)


def session_load(checkpoint: Path, short: list[str], rounds: int) -> dict[str, list[dict[str, float]]]:
    import onnxruntime as ort

    graph = checkpoint / "onnx" / "model.int8.onnx"
    out: dict[str, list[dict[str, float]]] = {level: [] for level in LEVELS}
    base = SentimentClassifier.from_path(checkpoint, device="cpu", engine=ONNX_INT8, threads=2)
    for r in range(rounds):
        for level in LEVELS[r % len(LEVELS):] + LEVELS[: r % len(LEVELS)]:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            started = time.perf_counter()
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            load_s = time.perf_counter() - started
            clf = SentimentClassifier(SessionEngine(session), base.encoder, base.labels, base.max_length)
            clf.predict(short[:8])
            out[level].append({"load_s": round(load_s, 3), "short_rows_s": rate(clf, short)})
    return out


def budgets(checkpoint: Path, short: list[str], long: list[str], rounds: int) -> dict[int, dict[str, list[float]]]:
    out: dict[int, dict[str, list[float]]] = {b: {"long": [], "short": []} for b in BUDGETS}
    for r in range(rounds):
        for budget in BUDGETS[r % len(BUDGETS):] + BUDGETS[: r % len(BUDGETS)]:
            clf = SentimentClassifier.from_path(checkpoint, device="cpu", engine=ONNX_INT8, threads=2,
                                                token_budget=budget)
            clf.predict(long[:2])
            out[budget]["long"].append(rate(clf, long))
            out[budget]["short"].append(rate(clf, short))
    return out


def one_row(checkpoint: Path, texts: list[str]) -> dict[int, dict[str, float]]:
    out = {}
    for threads in (1, 2):
        clf = SentimentClassifier.from_path(checkpoint, device="cpu", engine=ONNX_INT8, threads=threads)
        for text in texts[:10]:
            clf.predict([text])
        ms = []
        for text in texts:
            started = time.perf_counter()
            clf.predict([text])
            ms.append((time.perf_counter() - started) * 1000)
        out[threads] = {"p50_ms": round(common.pct(ms, 0.5), 2), "p95_ms": round(common.pct(ms, 0.95), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_knobs.json")
    args = ap.parse_args()
    from engines import with_engines

    from tests.modelfactory import build_distilbert

    short, long = common.texts("sst2/train.tsv", 0, 800), common.texts("imdb/test_sample.csv", 1000, 80)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = with_engines(build_distilbert(Path(tmp) / "random", size="real"), Path(tmp) / "engines")
        result: dict[str, Any] = {"session_load": session_load(checkpoint, short, args.rounds),
                                  "token_budget": budgets(checkpoint, short, long, args.rounds),
                                  "one_row": one_row(checkpoint, short[:200])}
    print(f"{'graph optimization level':<26}{'load s':>24}{'short rows/s':>24}")
    for level, runs in result["session_load"].items():
        print(f"{level:<26}{str([r['load_s'] for r in runs]):>24}{str([r['short_rows_s'] for r in runs]):>24}")
    print(f"\n{'TOKEN_BUDGET':<26}{'long rows/s (80 IMDB)':>24}{'short rows/s (800 SST-2)':>26}")
    for budget, runs in result["token_budget"].items():
        print(f"{budget:<26}{str(runs['long']):>24}{str(runs['short']):>26}")
    print(f"\n{'one row, in process':<26}{'p50 ms':>10}{'p95 ms':>10}")
    for threads, figures in result["one_row"].items():
        print(f"{str(threads) + ' thread(s)':<26}{figures['p50_ms']:>10}{figures['p95_ms']:>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
