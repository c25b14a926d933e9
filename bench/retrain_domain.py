"""Retraining for domain adaptation end to end: an SST-2 model fine-tuned on IMDB annotations made in Label Studio.

One run, everything real and on loopback:
  1. the model store given with --store is copied to a temp dir (the source store is never changed);
  2. data/imdb/test_sample.csv (2,500 reviews) is split with --seed: --labels rows to annotate, the rest (or
     --eval-rows of them) held out as the in-domain evaluation set;
  3. "before": the store's current version (an SST-2-trained model) is scored in this process on the IMDB
     evaluation rows and on data/sst2/dev.tsv (accuracy, macro-F1, ECE);
  4. a real Label Studio 1.23.2 (own data dir), a throw-away redis-server, `sentiment-backend serve` (Basic auth,
     webhook secret, TRAIN_AFTER_ANNOTATIONS=0 so only START_TRAINING trains) and one `sentiment-backend worker`
     are started; a project from labeling_config/sentiment.xml gets every label row as a task, the backend is
     connected with `sentiment-backend connect`, and each task gets one annotation with its true label;
  5. training is triggered the way the "Start Training" button does it, POST /api/ml/{id}/train on Label Studio
     (Label Studio sends START_TRAINING to our /webhook, which enqueues the training job). The clock starts at
     that request; the job (GET /jobs on the backend) is polled every second until it is final;
  6. "after": the store's new current version, and the candidate when it was not promoted, are scored in this
     process on the same IMDB evaluation rows and SST-2 dev.

Goals shown next to the figures: at least +3 points of IMDB accuracy, at most 1 point of SST-2 dev accuracy lost,
and at most 180 s from the trigger to the promotion. Phase seconds come from the job's phase changes as seen by
the 1 s poll (queued = trigger to the worker's start stamp, exact).

    .venv/bin/python bench/retrain_domain.py --store models [--labels 500] [--eval-rows N] [--seed 0] \
        [--max-seconds 600] [--epochs E] [--learning-rate LR] [--max-length L] [--min-holdout 20] \
        [--rehearsal-file data/sst2/train.tsv] [--rehearsal-ratio 1.0]

Smoke run (a tiny random model, a couple of minutes):
    .venv/bin/python bench/retrain_domain.py --store /tmp/bench-tiny/models --labels 60 --eval-rows 100 \
        --max-seconds 60 --max-length 128

Needs .venv-ls (`make ls-venv`) and redis-server (`make redis`). Prints a table and writes
bench/results/retrain_domain.json; Label Studio, backend and worker logs go to bench/results/retrain_domain_logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere in this process
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import requests  # noqa: E402

from backend.config import Settings  # noqa: E402
from backend.datasets import read_examples  # noqa: E402
from backend.model.types import Example  # noqa: E402
from devtools.demo import stop_process  # noqa: E402
from devtools.labelstudio_server import LabelStudioServer, create_personal_access_token, free_port  # noqa: E402
from tests.e2e.conftest import SENTIMENT_XML, clean_environment, cli_executable  # noqa: E402
from tests.e2e.test_prelabel import RedisServer, Workers  # noqa: E402

IMDB_CSV = ROOT / "data" / "imdb" / "test_sample.csv"
SST2_DEV = ROOT / "data" / "sst2" / "dev.tsv"
IMDB_LABELS = {"0": "NEGATIVE", "1": "POSITIVE"}
CHOICES = {"NEGATIVE": "Negative", "POSITIVE": "Positive"}  # model label → <Choice value> of sentiment.xml
FROM_NAME, TO_NAME = "sentiment", "text"  # <Choices name> and <Text name> of labeling_config/sentiment.xml
# the Settings defaults, given to the services explicitly so both sides match
TOKEN_BUDGET, STRIDE = (Settings.model_fields[f].default for f in ("token_budget", "window_stride"))
IMPORT_BATCH = 1000
FINAL_STATES = {"finished", "finished_with_errors", "failed", "cancelled"}
GOAL_IMDB_POINTS, GOAL_SST2_LOSS_POINTS, GOAL_SECONDS = 3.0, 1.0, 180.0
GOAL_PREFILL_COVERAGE, GOAL_PREFILL_PRECISION, GOAL_QUEUE_PRECISION, TOP_ERRORS = 0.60, 0.97, 0.50, 20
PHASES = ("queued", "loading annotations", "training", "evaluating", "publishing", "promoting", "done")


# ---------------------------------------------------------------- data and in-process scoring


def read_imdb() -> list[Example]:
    """Every row of data/imdb/test_sample.csv (header text,label; 0 negative, 1 positive)."""
    with IMDB_CSV.open(encoding="utf-8", newline="") as f:
        return [Example(text=row["text"], label=IMDB_LABELS[row["label"].strip()]) for row in csv.DictReader(f)]


def split_imdb(rows: list[Example], n_labels: int, eval_rows: int | None, seed: int) -> tuple[list[Example],
                                                                                           list[Example]]:
    """(rows to annotate, in-domain evaluation rows): a seeded shuffle, the first n_labels, then the rest."""
    if not 0 < n_labels < len(rows):
        raise SystemExit(f"--labels must be between 1 and {len(rows) - 1}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    labels = [rows[i] for i in order[:n_labels]]
    rest = [rows[i] for i in order[n_labels:]]
    return labels, rest if eval_rows is None else rest[:eval_rows]


def score_version(version: Any, sets: dict[str, list[Example]]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Load a store version and evaluate it on each named set (the worker's inference knobs) as it serves, at its
    calibration temperature, and at T = 1 (the baseline: `ece_t1`, `log_loss_t1`): (metrics per set, the served
    predictions per set)."""
    from backend import calibration
    from backend.model.classifier import SentimentClassifier
    from backend.training import score_predictions

    started = time.perf_counter()
    temperature = calibration.temperature_of(version.meta)
    classifier = SentimentClassifier.from_path(version.path, device="cpu", token_budget=TOKEN_BUDGET, stride=STRIDE)
    scores: dict[str, Any] = {"temperature": temperature,
                              "calibrated": bool(calibration.record_of(version.meta).get("calibrated"))}
    served: dict[str, list[Any]] = {}
    for name, examples in sets.items():
        raw = classifier.predict([e.text for e in examples])
        gold = [e.label for e in examples]
        served[name] = calibration.calibrate(raw, temperature)
        metrics = score_predictions(served[name], gold)
        at_one = score_predictions(raw, gold)
        metrics.update(ece_t1=at_one["ece"], log_loss_t1=at_one["log_loss"])
        scores[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
    scores["seconds"] = round(time.perf_counter() - started, 1)
    del classifier
    return scores, served


def at_threshold(predictions: list[Any], examples: list[Example], threshold: float | None) -> dict[str, Any]:
    """Coverage (share of rows scoring at least `threshold`) and precision among them, on rows the threshold was
    not chosen on."""
    if threshold is None:
        return {"threshold": None, "coverage": 0.0, "precision": None, "rows": len(examples)}
    chosen = [(p, e) for p, e in zip(predictions, examples, strict=True) if p.score >= threshold]
    right = sum(p.label == e.label for p, e in chosen)
    return {"threshold": threshold, "coverage": round(len(chosen) / len(examples), 4),
            "precision": round(right / len(chosen), 4) if chosen else None, "rows": len(examples),
            "prefilled": len(chosen)}


def flip_rows(rows: list[Example], fraction: float, seed: int) -> tuple[list[Example], set[int]]:
    """The rows with a seeded `fraction` of their labels flipped (what annotators get wrong), and which indexes."""
    if not 0 <= fraction < 1:
        raise SystemExit("--flip must be in [0, 1)")
    chosen = set(random.Random(seed + 1).sample(range(len(rows)), round(fraction * len(rows))))
    other = {"NEGATIVE": "POSITIVE", "POSITIVE": "NEGATIVE"}
    return [Example(r.text, other[r.label]) if i in chosen else r for i, r in enumerate(rows)], chosen


# ---------------------------------------------------------------- services


def service_environment(**settings: str) -> dict[str, str]:
    """clean_environment, minus any other setting of ours (TRAIN_*, PROMOTE_MARGIN ...) left in the shell."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in clean_environment().items() if k.upper() not in ours}
    env.update(settings)
    return env


def start_backend(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`sentiment-backend serve` on a loopback port, in its own session, stdout+stderr to log_path."""
    with log_path.open("wb") as out:
        return subprocess.Popen([cli_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for_backend(url: str, auth: tuple[str, str], process: subprocess.Popen[bytes], log_path: Path,
                     timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the backend exited ({process.returncode}):\n{tail(log_path)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/health", auth=auth, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"the backend's /health is not 200 after {timeout:.0f} s:\n{tail(log_path)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- Label Studio


def create_labeled_project(client: Any, rows: list[Example]) -> tuple[int, list[int]]:
    """A project from sentiment.xml with one task per row (data key `text`): (project id, task ids)."""
    project = client.projects.create(title=f"retrain domain: IMDB {len(rows)}", label_config=SENTIMENT_XML.read_text())
    assert project.id is not None
    tasks: list[Any] = [{"text": r.text} for r in rows]
    for start in range(0, len(tasks), IMPORT_BATCH):
        client.projects.import_tasks(id=project.id, request=tasks[start : start + IMPORT_BATCH])
    listed: Any = client.tasks.list(project=project.id, fields="task_only")
    ids = sorted(int(t.id) for t in listed if t.id is not None)
    if len(ids) != len(rows):
        raise SystemExit(f"project {project.id} holds {len(ids)} tasks, {len(rows)} were imported")
    return project.id, ids


def annotate(client: Any, project: int, rows: list[Example]) -> dict[str, int]:
    """One annotation per task, with the row's label (flipped ones included); the task id of each text."""
    label_of = {r.text: r.label for r in rows}
    listed: Any = client.tasks.list(project=project, fields="task_only")
    task_of: dict[str, int] = {}
    for task in listed:
        text = (task.data or {}).get("text")
        if text not in label_of:
            raise SystemExit(f"task {task.id} holds a text that was not imported")
        choice = CHOICES[label_of[text]]
        result = [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [choice]}}]
        client.annotations.create(id=int(task.id), result=result)
        task_of[text] = int(task.id)
    return task_of


def wait_for_assessment(backend_url: str, auth: tuple[str, str], project: int, version: str,
                        timeout: float = 900) -> dict[str, Any]:
    """GET /projects/{id}/label-errors until it shows the worker's assessment of `version` (the threshold and the
    label-error queue it stored after the training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = requests.get(f"{backend_url}/projects/{project}/label-errors", auth=auth, timeout=10)
        reply.raise_for_status()
        shown: dict[str, Any] = reply.json()
        if shown.get("assessed") and shown.get("version") == version:
            return shown
        time.sleep(2.0)
    raise RuntimeError(f"no assessment of {version} for project {project} after {timeout:.0f} s")


def connect(env: dict[str, str], project: int, backend_url: str) -> dict[str, Any]:
    """`sentiment-backend connect` the way an operator runs it; the JSON line it prints."""
    done = subprocess.run([cli_executable(), "connect", "--project", str(project), "--backend-url", backend_url,
                           "--title", "sentiment-backend"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"sentiment-backend connect exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{"))
    connection: dict[str, Any] = json.loads(line)
    return connection


def access_token(base_url: str, pat: str) -> str:
    """A short-lived JWT access token for raw requests (the PAT is a refresh token)."""
    reply = requests.post(base_url + "/api/token/refresh/", json={"refresh": pat}, timeout=30)
    reply.raise_for_status()
    return str(reply.json()["access"])


# ---------------------------------------------------------------- the training job


def find_train_job(backend_url: str, auth: tuple[str, str], since: float, timeout: float = 30) -> dict[str, Any]:
    """The newest training run created at or after `since` (GET /jobs), waiting up to timeout for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = requests.get(backend_url + "/jobs", params={"limit": 50}, auth=auth, timeout=10)
        reply.raise_for_status()
        jobs = [j for j in reply.json()["jobs"] if j.get("kind") == "train" and j.get("created_at", 0) >= since - 1]
        if jobs:
            return max(jobs, key=lambda j: j["created_at"])
        time.sleep(0.5)
    raise RuntimeError(f"no training job appeared on the backend within {timeout:.0f} s of the trigger")


def follow_job(backend_url: str, auth: tuple[str, str], job_id: str, started: float, timeout: float,
               worker: subprocess.Popen[bytes]) -> tuple[dict[str, Any], dict[str, float]]:
    """Poll GET /jobs/{id} every second until final: (the last answer, first-seen seconds of each phase)."""
    seen: dict[str, float] = {}
    last_line = ""
    job: dict[str, Any] = {}
    while True:
        elapsed = time.perf_counter() - started
        reply = requests.get(f"{backend_url}/jobs/{job_id}", auth=auth, timeout=10)
        reply.raise_for_status()
        job = reply.json()
        phase = str(job.get("phase") or job.get("state"))
        seen.setdefault(phase, round(elapsed, 1))
        line = f"{job['state']:<9} {phase:<20} {job.get('percent', 0):5.1f}%"
        if job.get("total_steps"):
            line += f"  step {job.get('step')}/{job['total_steps']} epoch {job.get('epoch')} loss {job.get('loss')}"
        if job.get("eta_s") is not None and job["state"] not in FINAL_STATES:
            line += f"  eta {job['eta_s']} s"
        if line != last_line:
            print(f"  {elapsed:7.1f} s  {line}", flush=True)
            last_line = line
        if job["state"] in FINAL_STATES:
            return job, seen
        if elapsed > timeout:
            raise RuntimeError(f"job {job_id} not final after {timeout:.0f} s (last: {line})")
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}) while job {job_id} was {job['state']}")
        time.sleep(1.0)


def phase_seconds(seen: dict[str, float], job: dict[str, Any], trigger_epoch: float) -> dict[str, Any]:
    """Seconds per phase from the first-seen times (1 s poll resolution), and the exact stamps of the job."""
    order = [p for p in PHASES if p in seen] + [p for p in seen if p not in PHASES]
    order.sort(key=lambda p: seen[p])
    durations = {p: round(seen[nxt] - seen[p], 1) for p, nxt in zip(order, order[1:], strict=False)}
    exact: dict[str, float | None] = {"queued_exact": None, "trigger_to_final_exact": None}
    if job.get("started_at"):
        exact["queued_exact"] = round(float(job["started_at"]) - trigger_epoch, 2)
    if job.get("finished_at"):
        exact["trigger_to_final_exact"] = round(float(job["finished_at"]) - trigger_epoch, 2)
    return {"first_seen_s": seen, "durations_s": durations, **exact}


def promotion_time(store_dir: Path, project: int, version: str | None, trigger_epoch: float) -> float | None:
    """Seconds from the trigger to the line of the project's HISTORY that made `version` current (1 s
    resolution), if any."""
    from backend.store import ModelStore

    for change in ModelStore(store_dir).history(project):
        if version and change.get("version") == version:
            with contextlib.suppress(ValueError, TypeError):
                return round(datetime.fromisoformat(str(change["at"])).timestamp() - trigger_epoch, 1)
    return None


# ---------------------------------------------------------------- report


def points(after: dict[str, Any], before: dict[str, Any], name: str) -> float:
    return round(100 * (after[name]["accuracy"] - before[name]["accuracy"]), 2)


def print_table(result: dict[str, Any]) -> None:
    t = result["training"]
    rows = result["scores"]
    before = rows["before"]
    counts = t.get("counts") or {}
    sizes = "/".join(str(counts.get(k, "?")) for k in ("train", "validation", "holdout")) if counts else "-"
    print(f"\nnproc {result['machine']['nproc']}  labels {result['data']['labels']}  IMDB eval rows "
          f"{result['data']['imdb_eval_rows']}  SST-2 dev rows {result['data']['sst2_dev_rows']}  seed "
          f"{result['data']['seed']}  epochs {result['train_settings']['epochs']}  max length "
          f"{result['train_settings']['max_length']}  TRAIN_MAX_SECONDS {result['train_settings']['max_seconds']}")
    head = (f"{'model':<26}{'version':<36}{'IMDB acc':>9}{'Δ pts':>8}{'F1':>7}{'ECE T=1':>8}{'ECE':>7}{'T':>6}"
            f"{'SST-2 acc':>10}"
            f"{'Δ pts':>8}{'trigger→final s':>17}{'promoted':>10}  train/val/holdout")
    print(head)
    print("-" * len(head))
    labels = {"before": "before (SST-2 model)", "after": "after retraining", "candidate": "candidate (not promoted)"}
    for key in ("before", "after", "candidate"):
        row = rows.get(key)
        if row is None:
            continue
        imdb, sst2 = row["imdb_eval"], row["sst2_dev"]
        d_imdb = "-" if key == "before" else f"{points(row, before, 'imdb_eval'):+.2f}"
        d_sst2 = "-" if key == "before" else f"{points(row, before, 'sst2_dev'):+.2f}"
        final = "-" if key == "before" else str(t.get("trigger_to_final_s"))
        promoted = "-" if key == "before" else str(t.get("promoted"))
        print(f"{labels[key]:<26}{row['version'][:35]:<36}{100 * imdb['accuracy']:>9.2f}{d_imdb:>8}"
              f"{imdb['macro_f1']:>7.3f}{imdb['ece_t1']:>8.3f}{imdb['ece']:>7.3f}{row['temperature']:>6.2f}"
              f"{100 * sst2['accuracy']:>10.2f}{d_sst2:>8}"
              f"{final:>17}{promoted:>10}  {'-' if key == 'before' else sizes}")
    g = result["goals"]
    print(f"goals: IMDB ≥ +{GOAL_IMDB_POINTS:g} pts: {g['imdb_gain']['value']:+.2f} {mark(g['imdb_gain']['met'])}   "
          f"SST-2 ≥ -{GOAL_SST2_LOSS_POINTS:g} pt: {g['sst2_loss']['value']:+.2f} {mark(g['sst2_loss']['met'])}   "
          f"trigger→promotion ≤ {GOAL_SECONDS:g} s: {g['promotion_seconds']['value']} "
          f"{mark(g['promotion_seconds']['met'])}")
    calib = (t.get("candidate_meta") or {}).get("calibration") or {}
    if calib.get("before"):
        print(f"candidate's own calibration record ({calib.get('fitted_on', {}).get('description')} → "
              f"{calib.get('measured_on')}, {calib['before']['rows']} rows): ECE {calib['before']['ece']:.4f} → "
              f"{calib['after']['ece']:.4f}, log-loss {calib['before']['log_loss']:.4f} → "
              f"{calib['after']['log_loss']:.4f}")
    p = result["prefill"]
    record, shown = p.get("record") or {}, p["imdb_eval"]
    print(f"pre-fill threshold from the project holdout ({record.get('rows')} rows, target "
          f"{record.get('target')} at confidence {record.get('confidence')}): {record.get('threshold')} "
          f"(holdout coverage {record.get('coverage')}); on the {shown['rows']} unseen IMDB rows: coverage "
          f"{shown['coverage']:.1%}, precision {shown['precision']}  {mark(g['prefill_coverage']['met'])}")
    if record.get("threshold") is None:
        print(f"  no threshold: {record.get('reason')}")
    cells = [f"{c['threshold']}: {c['coverage']:.1%}/" + ("-" if c["precision"] is None else f"{c['precision']:.1%}")
             for c in p.get("imdb_eval_grid", [])]
    print("  diagnostic (not a guarantee), each grid threshold on the unseen IMDB rows, coverage/precision: "
          + ", ".join(cells))
    q = result["label_error_queue"]
    if q["flipped"]:
        print(f"label-error queue: {q['queue_length']} rows of {q['scored']} scored; top {q['top']}: {q['hits']} "
              f"flipped (precision {q['precision_top']}, {q['top_by_side']})  recall over the whole queue "
              f"{q['recall_all']} of {q['flipped']} flipped  {mark(g['label_error_top']['met'])}")
    print(f"job {t.get('job_id')} {t.get('state')}: {t.get('summary')}")
    print(f"Label Studio answered the train request in {t.get('ls_answer_s')} s (HTTP {t.get('ls_status')}); "
          f"phases (s, 1 s poll): {t.get('phases', {}).get('durations_s')}")
    for line in t.get("errors") or []:
        print(f"  error: {line}")


def label_error_queue(assessment: dict[str, Any], flipped: set[int], top: int = TOP_ERRORS) -> dict[str, Any]:
    """How many of the stored queue's first `top` rows are annotations made wrong on purpose, per side."""
    rows = assessment.get("rows") or []
    first = rows[:top]
    hits = [r for r in first if int(r["task_id"]) in flipped]
    return {
        "flipped": len(flipped), "queue_length": assessment.get("found", 0), "scored": assessment.get("scored", 0),
        "top": len(first), "hits": len(hits), "precision_top": round(len(hits) / len(first), 4) if first else None,
        "recall_all": round(len({int(r["task_id"]) for r in rows} & flipped) / len(flipped), 4) if flipped else None,
        "top_by_side": {side: {"rows": sum(r.get("side") == side for r in first),
                               "hits": sum(r.get("side") == side for r in hits)} for side in ("holdout", "train")},
    }


def mark(ok: bool | None) -> str:
    return "met" if ok else "MISSED"


def goals(scores: dict[str, Any], training: dict[str, Any], prefill: dict[str, Any],
          queue: dict[str, Any]) -> dict[str, Any]:
    after, before = scores["after"], scores["before"]
    shown = prefill["imdb_eval"]
    held = shown["precision"] is not None and shown["precision"] >= GOAL_PREFILL_PRECISION
    gain, loss = points(after, before, "imdb_eval"), points(after, before, "sst2_dev")
    seconds = training.get("trigger_to_promotion_s")
    in_time = bool(training.get("promoted")) and seconds is not None and seconds <= GOAL_SECONDS
    return {
        "imdb_gain": {"value": gain, "goal": f">= +{GOAL_IMDB_POINTS} points", "met": gain >= GOAL_IMDB_POINTS},
        "sst2_loss": {"value": loss, "goal": f">= -{GOAL_SST2_LOSS_POINTS} point",
                      "met": loss >= -GOAL_SST2_LOSS_POINTS},
        "promotion_seconds": {"value": seconds if seconds is not None else "not promoted",
                              "goal": f"<= {GOAL_SECONDS} s", "met": in_time},
        "prefill_coverage": {"value": shown["coverage"], "precision": shown["precision"],
                             "goal": f">= {GOAL_PREFILL_COVERAGE:.0%} of unseen IMDB rows pre-filled at >= "
                                     f"{GOAL_PREFILL_PRECISION:.0%} precision",
                             "met": held and shown["coverage"] >= GOAL_PREFILL_COVERAGE},
        "label_error_top": {"value": queue["precision_top"], "goal": f">= {GOAL_QUEUE_PRECISION:.0%} of the top "
                                                                     f"{TOP_ERRORS} are flipped annotations",
                            "met": None if not queue["flipped"] else (queue["precision_top"] or 0)
                            >= GOAL_QUEUE_PRECISION},
    }


# ---------------------------------------------------------------- main


def run_label_studio_flow(args: argparse.Namespace, tmp: Path, store: Path, label_rows: list[Example],
                          flipped: set[int], logs: Path, training: dict[str, Any]) -> None:
    """Steps 4 and 5 of the module docstring; fills `training` (the JSON of what the training did) as it goes,
    so what was learnt before a failure is kept."""
    from backend.store import ModelStore

    studio = LabelStudioServer(tmp / "label-studio", free_port())
    redis_server = RedisServer(tmp)
    backend: subprocess.Popen[bytes] | None = None
    workers: Workers | None = None
    backend_log = logs / "backend.log"
    for old in logs.glob("worker-*.log"):
        old.unlink()
    try:
        print("starting Label Studio and redis-server ...", flush=True)
        studio.start()
        redis_server.start()
        studio.wait_ready()
        from label_studio_sdk import LabelStudio

        pat = create_personal_access_token(studio.base_url, studio.email, studio.password)
        client = LabelStudio(base_url=studio.base_url, api_key=pat, timeout=600)
        user, password = "label-studio", "pw-" + secrets.token_urlsafe(18)
        settings = dict(
            MODEL_DIR=str(store), REDIS_URL=redis_server.url, LABEL_STUDIO_URL=studio.base_url,
            LABEL_STUDIO_API_KEY=pat, BASIC_AUTH_USER=user, BASIC_AUTH_PASS=password,
            WEBHOOK_SECRET="wh-" + secrets.token_urlsafe(18), LOG_LEVEL="INFO", DEVICE="cpu",
            TOKEN_BUDGET=str(TOKEN_BUDGET), WINDOW_STRIDE=str(STRIDE), TRAIN_AFTER_ANNOTATIONS="0",
            TRAIN_MIN_HOLDOUT=str(args.min_holdout), TRAIN_MAX_SECONDS=str(args.max_seconds),
            PRELABEL_AFTER_PROMOTION="false", PRELABEL_ON_TASKS_CREATED="false",
        )
        for option, variable in (("epochs", "TRAIN_EPOCHS"), ("learning_rate", "TRAIN_LEARNING_RATE"),
                                 ("max_length", "TRAIN_MAX_LENGTH"), ("rehearsal_file", "TRAIN_REHEARSAL_FILE"),
                                 ("rehearsal_ratio", "TRAIN_REHEARSAL_RATIO")):
            if getattr(args, option) is not None:
                settings[variable] = str(getattr(args, option))
        env = service_environment(**settings)
        port = free_port()
        backend_url, auth = f"http://127.0.0.1:{port}", (user, password)
        print("starting sentiment-backend serve and one worker ...", flush=True)
        backend = start_backend(env, port, backend_log)
        workers = Workers(env, logs)
        workers.start(1)  # returns once the worker has loaded the model and listens
        wait_for_backend(backend_url, auth, backend, backend_log)

        started = time.perf_counter()
        project, task_ids = create_labeled_project(client, label_rows)
        connection = connect(env, project, backend_url)
        if connection.get("error"):
            raise SystemExit(f"connect: Label Studio reports an error for the backend: {connection}")
        ml_backend_id = int(connection["ml_backend_id"])
        print(f"project {project}: {len(task_ids)} tasks, ML backend {ml_backend_id}; annotating ...", flush=True)
        task_of = annotate(client, project, label_rows)
        annotated = len(task_of)
        training["flipped_task_ids"] = sorted(task_of[label_rows[i].text] for i in flipped)
        setup_s = round(time.perf_counter() - started, 1)
        print(f"{annotated} annotations ({len(flipped)} flipped) in {setup_s} s (project, import, connect, "
              "annotations)", flush=True)

        token = access_token(studio.base_url, pat)
        print(f"POST /api/ml/{ml_backend_id}/train (the Start Training button) ...", flush=True)
        trigger_epoch, trigger = time.time(), time.perf_counter()
        reply = requests.post(f"{studio.base_url}/api/ml/{ml_backend_id}/train",
                              headers={"Authorization": f"Bearer {token}"}, json={}, timeout=120)
        ls_answer_s = round(time.perf_counter() - trigger, 3)
        training.update({"project": project, "ml_backend_id": ml_backend_id, "tasks": len(task_ids),
                         "annotations_created": annotated, "setup_s": setup_s, "ls_status": reply.status_code,
                         "ls_answer_s": ls_answer_s})
        ml = client.ml.get(id=ml_backend_id)
        training["ls_ml_backend"] = {"state": str(ml.state or ""), "error_message": ml.error_message}
        if reply.status_code != 200:
            raise RuntimeError(f"Label Studio answered the train request {reply.status_code}: {reply.text[:500]}")
        job = find_train_job(backend_url, auth, trigger_epoch)
        training["job_id"] = job["id"]
        print(f"training job {job['id']} (Label Studio answered in {ls_answer_s} s)", flush=True)
        timeout = args.timeout or args.max_seconds + 900 + 300
        final, seen = follow_job(backend_url, auth, job["id"], trigger, timeout, workers.processes[0])
        elapsed = round(time.perf_counter() - trigger, 1)
        phases = phase_seconds(seen, final, trigger_epoch)
        trigger_to_final = phases["trigger_to_final_exact"] or elapsed
        promoted = bool(final.get("promoted"))
        training.update({
            "job_id": final["id"], "state": final["state"], "summary": final.get("summary"),
            "promoted": promoted, "candidate": final.get("candidate"), "counts": final.get("counts"),
            "errors": final.get("errors", []), "failed_jobs": final.get("failed_jobs", []),
            "trigger_to_final_s": trigger_to_final, "trigger_to_final_polled_s": elapsed, "phases": phases,
            "trigger_to_promotion_s": trigger_to_final if promoted else None,
            "promotion_history_s": (promotion_time(store, project, final.get("candidate"), trigger_epoch)
                                    if promoted else None),
            "job": final,
        })
        served = ModelStore(store).current_version(project)
        if served is not None and final["state"] in ("finished", "finished_with_errors"):
            print(f"waiting for the worker's assessment of {served} (threshold, label errors) ...", flush=True)
            assessed_at = time.perf_counter()
            training["assessment"] = wait_for_assessment(backend_url, auth, project, served)
            training["assessment_s"] = round(time.perf_counter() - assessed_at, 1)
    finally:
        if workers is not None:
            workers.stop_all()
        if backend is not None:
            stop_process(backend, "backend")
        redis_server.stop()
        studio.stop()
        with contextlib.suppress(OSError):
            shutil.copyfile(studio.log_path, logs / "label-studio.log")


def main() -> None:
    defaults = Settings.model_fields
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="model store whose CURRENT is an SST-2-trained model")
    ap.add_argument("--labels", type=int, default=500, help="IMDB rows annotated in Label Studio")
    ap.add_argument("--eval-rows", type=int, default=None, help="IMDB evaluation rows (default: all the others)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the IMDB split")
    ap.add_argument("--max-seconds", type=float, default=600, help="TRAIN_MAX_SECONDS of the worker")
    ap.add_argument("--epochs", type=float, default=None,
                    help=f"TRAIN_EPOCHS (default {defaults['train_epochs'].default})")
    ap.add_argument("--learning-rate", type=float, default=None,
                    help=f"TRAIN_LEARNING_RATE (default {defaults['train_learning_rate'].default})")
    ap.add_argument("--max-length", type=int, default=None,
                    help=f"TRAIN_MAX_LENGTH (default {defaults['train_max_length'].default})")
    ap.add_argument("--min-holdout", type=int, default=20, help="TRAIN_MIN_HOLDOUT of the worker")
    ap.add_argument("--rehearsal-file", type=lambda p: Path(p).resolve(), default=None,
                    help="TRAIN_REHEARSAL_FILE, e.g. data/sst2/train.tsv (old-domain rows mixed into training)")
    ap.add_argument("--rehearsal-ratio", type=float, default=None, help="TRAIN_REHEARSAL_RATIO")
    ap.add_argument("--flip", type=float, default=0.0,
                    help="share of the annotations made with the wrong label (the label-error experiment)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds to wait for the job (default: max-seconds + 1200)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrain_domain.json")
    args = ap.parse_args()
    source = args.store.resolve()
    from backend.store import ModelStore

    if ModelStore(source).current_version() is None:
        raise SystemExit(f"{source} is not a model store with a current version")
    logs = args.out.parent / (args.out.stem + "_logs")
    logs.mkdir(parents=True, exist_ok=True)

    from backend.store import ModelStore

    imdb = read_imdb()
    label_rows, eval_rows = split_imdb(imdb, args.labels, args.eval_rows, args.seed)
    annotated_rows, flipped = flip_rows(label_rows, args.flip, args.seed)
    sst2_dev = read_examples(SST2_DEV)
    sets = {"imdb_eval": eval_rows, "sst2_dev": sst2_dev}
    served: dict[str, dict[str, list[Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store = tmp / "models"
        shutil.copytree(source, store, ignore=shutil.ignore_patterns("staging"))
        before_version = ModelStore(store).current()
        assert before_version is not None, f"store {source} has no current version"
        print(f"store {source} copied; current {before_version.version}. Scoring it on {len(eval_rows)} IMDB rows "
              f"and {len(sst2_dev)} SST-2 dev rows ...", flush=True)
        before_scores, served["before"] = score_version(before_version, sets)
        scores: dict[str, Any] = {"before": {"version": before_version.version, **before_scores}}
        print(f"  before: IMDB {100 * scores['before']['imdb_eval']['accuracy']:.2f}  SST-2 dev "
              f"{100 * scores['before']['sst2_dev']['accuracy']:.2f}  ({scores['before']['seconds']} s)", flush=True)

        training: dict[str, Any] = {}
        try:
            run_label_studio_flow(args, tmp, store, annotated_rows, flipped, logs, training)
        except RuntimeError as exc:  # the flow failed after the trigger: report it with what is known
            print(f"error: {exc}", file=sys.stderr)
            training.update(state="error", promoted=False, errors=[*training.get("errors", []), str(exc)])

        after_store = ModelStore(store)
        after_version = after_store.current(training.get("project"))
        assert after_version is not None
        print(f"scoring the version project {training.get('project')} is served, {after_version.version} ...",
              flush=True)
        after_scores, served["after"] = score_version(after_version, sets)
        scores["after"] = {"version": after_version.version, **after_scores}
        candidate = training.get("candidate")
        if candidate and candidate != after_version.version:
            print(f"scoring the candidate {candidate} (not promoted) ...", flush=True)
            candidate_scores, served["candidate"] = score_version(after_store.get(candidate), sets)
            scores["candidate"] = {"version": candidate, **candidate_scores}
        if candidate:
            meta = after_store.get(candidate).meta
            training["candidate_meta"] = {k: meta.get(k) for k in ("params", "training", "train_seconds", "metrics",
                                                                   "compared_metrics", "decision", "counts",
                                                                   "calibration")}
    assessment = training.get("assessment") or {}
    threshold = (assessment.get("prefill") or {}).get("threshold") if assessment.get("version") == scores[
        "after"]["version"] else None
    from backend.prefill import DEFAULT_THRESHOLDS

    prefill = {"chosen_on": assessment.get("rows_source"), "record": assessment.get("prefill"),
               "imdb_eval": at_threshold(served["after"]["imdb_eval"], eval_rows, threshold),
               # a diagnostic, not a guarantee: what each grid threshold gives on the unseen rows themselves
               "imdb_eval_grid": [at_threshold(served["after"]["imdb_eval"], eval_rows, t)
                                  for t in DEFAULT_THRESHOLDS]}
    queue = label_error_queue(assessment, set(training.get("flipped_task_ids") or []))
    result = {
        "store": str(source),
        "data": {"imdb": str(IMDB_CSV.relative_to(ROOT)), "sst2_dev": str(SST2_DEV.relative_to(ROOT)),
                 "labels": len(label_rows), "imdb_eval_rows": len(eval_rows), "sst2_dev_rows": len(sst2_dev),
                 "seed": args.seed, "flipped": len(flipped), "flip_fraction": args.flip},
        "train_settings": {
            "epochs": args.epochs if args.epochs is not None else defaults["train_epochs"].default,
            "learning_rate": args.learning_rate if args.learning_rate is not None
            else defaults["train_learning_rate"].default,
            "max_length": args.max_length if args.max_length is not None else defaults["train_max_length"].default,
            "max_seconds": args.max_seconds, "min_holdout": args.min_holdout,
            "batch_size": defaults["train_batch_size"].default,
            "holdout_fraction": defaults["train_holdout_fraction"].default,
            "min_annotations": defaults["train_min_annotations"].default,
            "promote_margin": defaults["promote_margin"].default,
            "rehearsal_file": str(args.rehearsal_file) if args.rehearsal_file else None,
            "rehearsal_ratio": args.rehearsal_ratio if args.rehearsal_ratio is not None
            else defaults["train_rehearsal_ratio"].default,
        },
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform(), "device": "cpu"},
        "scores": scores, "training": training, "prefill": prefill, "label_error_queue": queue,
    }
    result["goals"] = goals(scores, training, prefill, queue)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out} (logs in {logs})")


if __name__ == "__main__":
    main()
