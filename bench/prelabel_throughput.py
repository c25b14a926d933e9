"""Bulk pre-labeling throughput end to end through a real Label Studio, next to the raw classifier in the same run.

Rows of the table:
  raw classifier (in-process)  SentimentClassifier.predict in this process, the texts cut in --chunk-size slices
                               as the workers get them: the ceiling no number of Label Studio round trips reaches
  prelabel, W worker(s)        `sentiment-backend prelabel --project P --chunk-size C --follow`, timed from launch
                               to exit, with W `sentiment-backend worker` processes on a fresh redis-server and a
                               fresh project of N tasks in one real Label Studio 1.23.2 (loopback, own data dir)
  Label Studio write ceiling   Label Studio storing precomputed predictions for a fresh project of the same N
                               tasks, one `POST /api/projects/{id}/import/predictions` of C predictions after
                               another from one client (what a chunk's writes cost with zero inference, no reads):
                               no pre-labeling through this Label Studio can be faster. Measured in the same run,
                               on the same Label Studio; each configuration's "% LS" is its rows/s over this one's
                               (the goal: 85 % or more)

Phase columns come from the workers' Redis stats hash (backend.jobs.metrics): seconds summed over all workers
spent reading tasks from Label Studio (a chunk reads twice: before inference and to verify the write), in our
inference, writing predictions to Label Studio (on the chunk's writer thread, overlapping inference), and
waiting for a write ("wait": the part of the writes inference did not hide); "other" is the rest of the
chunks' time (duplicate repair, bookkeeping): chunk = read + infer + wait + other. "plan" is the wait before
the first chunk starts (the CLI, the queue, listing the project's tasks).
CPU columns are the CPU seconds Label Studio and the workers used during the run (from /proc).

After each run the script checks through the Label Studio API that every task holds exactly one prediction of
the model version, and reports lost and duplicated ones.

The model is a DistilBERT of the real architecture (6 layers, 768 wide) with random weights, built offline: same
speed as distilbert-base-uncased-finetuned-sst-2-english (--model tiny: a 2-layer toy, for smoke runs), imported
with its engine built and gated, so the workers and the raw row run the engine ENGINE=auto picks (the table's
header names it) with one thread each (INFERENCE_THREADS=0). Texts are
SST-2 train sentences, cycled and prefixed with the row number so every task is unique.

    .venv/bin/python bench/prelabel_throughput.py [--tasks 20000] [--model real] [--chunk-size 500]
        [--write-batch 0,125] [--workers 1,2]

Needs .venv-ls (`make ls-venv`) and redis-server (`make redis`). Prints a table and writes
bench/results/prelabel_throughput.json; worker and Label Studio logs go to bench/results/prelabel_throughput_logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere in this process
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from backend.config import Settings  # noqa: E402
from devtools.labelstudio_server import LabelStudioServer, create_personal_access_token, free_port  # noqa: E402
from tests.e2e.conftest import SENTIMENT_XML, clean_environment, cli_executable  # noqa: E402
from tests.e2e.test_prelabel import RedisServer, Workers  # noqa: E402

TRAIN_TSV = ROOT / "data" / "sst2" / "train.tsv"
IMPORT_BATCH = 5000
RAW_MAX_TEXTS = 4000
# the Settings defaults, given to the workers explicitly so both sides match
TOKEN_BUDGET, STRIDE = (Settings.model_fields[f].default for f in ("token_budget", "window_stride"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sst2_texts(n: int) -> list[str]:
    """n unique texts: SST-2 train sentences cycled, each prefixed with its row number."""
    with TRAIN_TSV.open(encoding="utf-8", newline="") as f:
        base = [row["text"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [f"{i}: {base[i % len(base)]}" for i in range(n)]


def build_store(tmp: Path, size: str) -> tuple[Path, str]:
    """A model store under tmp holding one imported random DistilBERT, its engine built: (MODEL_DIR, its version)."""
    from tests.modelfactory import build_distilbert

    checkpoint = build_distilbert(tmp / "checkpoint", size=size)
    store = tmp / "models"
    # with its engine built and gated (on SST-2 dev), as a user's import is: the workers serve what ENGINE=auto picks
    env = clean_environment(MODEL_DIR=str(store), BUILD_ENGINE="true", DATA_DIR=str(ROOT / "data"))
    done = subprocess.run([cli_executable(), "models", "import", str(checkpoint), "--name", f"distilbert-{size}"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"models import failed:\n{done.stdout}\n{done.stderr}")
    return store, done.stdout.strip().splitlines()[-1]


def raw_baseline(store: Path, texts: list[str], chunk_size: int) -> dict[str, Any]:
    """Rows/s of classifier.predict in this process, on the texts in chunk_size slices (as the workers call it)."""
    from backend.model.loading import load_version
    from backend.store import ModelStore

    version = ModelStore(store).current()
    assert version is not None, f"store {store} is empty"
    # one thread, what each worker's engine gets (INFERENCE_THREADS=0)
    classifier = load_version(version, device="cpu", token_budget=TOKEN_BUDGET, stride=STRIDE, threads=1)
    classifier.predict(texts[:64])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), chunk_size):
        classifier.predict(texts[start : start + chunk_size])
    seconds = time.perf_counter() - started
    return {"name": "raw classifier (in-process)", "rows": len(texts), "seconds": round(seconds, 2),
            "rows_per_s": round(len(texts) / seconds, 1), "threads": 1, "engine": classifier.engine.name,
            "token_budget": TOKEN_BUDGET, "stride": STRIDE}


def create_project(client: Any, texts: list[str], title: str) -> tuple[int, list[int]]:
    """A project from labeling_config/sentiment.xml with one task per text: (project id, task ids)."""
    from backend.studio import StudioClient

    project = client.projects.create(title=title, label_config=SENTIMENT_XML.read_text())
    assert project.id is not None
    tasks: list[Any] = [{"text": t} for t in texts]
    for start in range(0, len(tasks), IMPORT_BATCH):
        client.projects.import_tasks(id=project.id, request=tasks[start : start + IMPORT_BATCH])
    ids = sorted(task_id for task_id, _ in StudioClient(client).task_versions(project.id))
    if len(ids) != len(texts):
        raise SystemExit(f"project {project.id} holds {len(ids)} tasks, {len(texts)} were imported")
    return project.id, ids


def check_predictions(client: Any, project: int, task_ids: list[int], version: str) -> dict[str, int]:
    """How many tasks hold no prediction of version, how many hold more than one, and predictions of others."""
    predictions = list(client.predictions.list(project=project))
    ours = Counter(p.task for p in predictions if p.model_version == version)
    return {
        "predictions": len(predictions),
        "lost": sum(1 for t in task_ids if ours[t] == 0),
        "duplicated_tasks": sum(1 for n in ours.values() if n > 1),
        "extra_predictions": sum(n - 1 for n in ours.values() if n > 1),
        "other_versions": sum(1 for p in predictions if p.model_version != version),
    }


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (and that of reaped children) of the given processes, from /proc; gone ones count 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def session_pids(leader: int) -> list[int]:
    """Every live process in the session `leader` started (Label Studio and whatever it spawned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == leader:
                    found.append(int(entry.name))
    return found


def run_config(n_workers: int, *, studio: LabelStudioServer, client: Any, pat: str, store: Path, version: str,
               texts: list[str], chunk_size: int, write_batch: int, tmp: Path, logs: Path,
               timeout: float) -> dict[str, Any]:
    """One configuration: fresh Redis and project, n_workers workers, one timed `prelabel --follow`."""
    import redis

    from backend.jobs.metrics import read_stats

    name = f"prelabel, {n_workers} worker{'s' if n_workers > 1 else ''}" + (f", writes of {write_batch}"
                                                                           if write_batch else "")
    work = tmp / f"w{n_workers}-b{write_batch}"
    work.mkdir()
    server = RedisServer(work)
    workers: Workers | None = None
    server.start()
    try:
        project, task_ids = create_project(client, texts, f"throughput {n_workers}w {len(texts)}")
        # clean_environment drops our variables from the shell's and sets DEVICE=cpu and HF_HUB_OFFLINE=1
        env = clean_environment(MODEL_DIR=str(store), REDIS_URL=server.url, LABEL_STUDIO_URL=studio.base_url,
                                LABEL_STUDIO_API_KEY=pat, LOG_LEVEL="INFO", TOKEN_BUDGET=str(TOKEN_BUDGET),
                                WINDOW_STRIDE=str(STRIDE), PRELABEL_WRITE_BATCH=str(write_batch))
        workers = Workers(env, work)
        workers.start(n_workers)  # returns once every worker has loaded the model and listens
        assert studio.process is not None
        ls_pids = session_pids(studio.process.pid)
        worker_pids = [p.pid for p in workers.processes]
        ls_cpu0, worker_cpu0 = cpu_seconds(ls_pids), cpu_seconds(worker_pids)
        command = [cli_executable(), "prelabel", "--project", str(project), "--chunk-size", str(chunk_size), "--follow"]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - started
        ls_cpu = cpu_seconds(ls_pids) - ls_cpu0
        worker_cpu = cpu_seconds(worker_pids) - worker_cpu0
        run_id = done.stdout.split()[0] if done.stdout.split() else ""
        shown = subprocess.run([cli_executable(), "jobs", "show", run_id], env=env, capture_output=True, text=True)
        run: dict[str, Any] = {"state": "unknown", "errors": [shown.stderr.strip()]}
        if shown.returncode == 0:
            run = json.loads(shown.stdout)
        stats = read_stats(redis.Redis(port=server.port))
        check = check_predictions(client, project, task_ids, version)
    finally:
        if workers is not None:
            workers.stop_all()
            for log in work.glob("worker-*.log"):
                shutil.copyfile(log, logs / f"{n_workers}w-b{write_batch}-{log.name}")
        server.stop()
    if done.returncode != 0:
        print(f"  {name}: prelabel exited {done.returncode}\n{done.stdout}{done.stderr[-2000:]}", file=sys.stderr)
    phases = {k: round(stats.get(f"{k}_seconds", 0.0), 2) for k in ("read", "infer", "write", "write_wait", "chunk")}
    phases["other"] = round(phases["chunk"] - phases["read"] - phases["infer"] - phases["write_wait"], 2)
    plan_s = None
    if run.get("started_at") and run.get("created_at"):
        plan_s = round(run["started_at"] - run["created_at"], 2)
    return {
        "name": name, "workers": n_workers, "write_batch": write_batch, "project": project, "run_id": run_id,
        "rows": len(texts),
        "seconds": round(seconds, 2), "rows_per_s": round(len(texts) / seconds, 1),
        "exit_code": done.returncode, "state": run.get("state"), "done": run.get("done"), "failed": run.get("failed"),
        "chunks": run.get("chunks"), "run_rows_per_s": run.get("rows_per_s"), "plan_s": plan_s,
        "errors": run.get("errors", [])[:10], "phases_s": phases, "chunks_recorded": int(stats.get("chunks", 0)),
        "predictions_written": int(stats.get("predictions_written", 0)),
        "duplicates_removed": int(stats.get("duplicates_removed", 0)),
        "cpu_s": {"label_studio": round(ls_cpu, 1), "workers": round(worker_cpu, 1)}, "check": check,
    }


def ls_write_ceiling(studio: LabelStudioServer, client: Any, texts: list[str], version: str,
                     chunk_size: int) -> dict[str, Any]:
    """Rows/s of Label Studio storing precomputed predictions for a fresh project of the same tasks, chunk_size per
    request, one request after another: the most any pre-labeling through it can reach."""
    from backend.studio import StudioClient

    project, task_ids = create_project(client, texts, f"ceiling {len(texts)}")
    studio_client = StudioClient(client)
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]},
               "score": 0.9}]
    payloads = [[{"task": t, "result": result, "score": 0.9, "model_version": version}
                 for t in task_ids[start : start + chunk_size]] for start in range(0, len(task_ids), chunk_size)]
    assert studio.process is not None
    ls_pids = session_pids(studio.process.pid)
    ls_cpu0 = cpu_seconds(ls_pids)
    started = time.perf_counter()
    created, request_s = 0, []
    for payload in payloads:
        sent = time.perf_counter()
        created += studio_client.import_predictions(project, payload)
        request_s.append(round(time.perf_counter() - sent, 3))
    seconds = time.perf_counter() - started
    ls_cpu = cpu_seconds(ls_pids) - ls_cpu0
    check = check_predictions(client, project, task_ids, version)
    return {"name": "Label Studio write ceiling", "project": project, "rows": len(texts), "requests": len(payloads),
            "created": created, "seconds": round(seconds, 2), "rows_per_s": round(len(texts) / seconds, 1),
            "request_s": request_s,
            "cpu_s": {"label_studio": round(ls_cpu, 1)},
            "ls_cpu_ms_per_prediction": round(1000 * ls_cpu / max(1, len(texts)), 2), "check": check}


def print_table(result: dict[str, Any]) -> None:
    raw, ceiling = result["raw"], result["ls_ceiling"]
    rows = result["configurations"]
    print(f"nproc {result['machine']['nproc']}  model {result['model_version']}  tasks {result['tasks']}  "
          f"chunk size {result['chunk_size']}  write batches {result['write_batches']}  "
          f"engine {raw['engine']}, 1 thread in the raw row and in each worker")
    head = (f"{'configuration':<30}{'rows':>7}{'s':>9}{'rows/s':>9}{'% raw':>7}{'% LS':>7}{'vs 1w':>7}{'plan s':>8}"
            f"{'read s':>8}{'infer s':>9}{'write s':>9}{'wait s':>8}{'other s':>9}{'LS cpu':>8}{'wk cpu':>8}  check")
    print(head)
    print("-" * len(head))
    print(f"{raw['name']:<30}{raw['rows']:>7}{raw['seconds']:>9}{raw['rows_per_s']:>9}{100:>7}{'-':>7}{'-':>7}"
          f"{'-':>8}{'-':>8}{raw['seconds']:>9}{'-':>9}{'-':>8}{'-':>9}{'-':>8}{'-':>8}")
    print(f"{ceiling['name']:<30}{ceiling['rows']:>7}{ceiling['seconds']:>9}{ceiling['rows_per_s']:>9}{'-':>7}"
          f"{100:>7}{'-':>7}{'-':>8}{'-':>8}{'-':>9}{ceiling['seconds']:>9}{'-':>8}{'-':>9}"
          f"{ceiling['cpu_s']['label_studio']:>8}{'-':>8}  {_check_text(ceiling['check'])}")
    for r in rows:
        p = r["phases_s"]
        speedup = "-" if r["speedup_vs_1_worker"] is None else f"{r['speedup_vs_1_worker']:.2f}"
        ok = _check_text(r["check"])
        if r["state"] != "finished":
            ok += f" ({r['state']})"
        print(f"{r['name']:<30}{r['rows']:>7}{r['seconds']:>9}{r['rows_per_s']:>9}{r['pct_of_raw']:>7}"
              f"{r['pct_of_ls_ceiling']:>7}{speedup:>7}{str(r['plan_s']):>8}{p['read']:>8}{p['infer']:>9}"
              f"{p['write']:>9}{p['write_wait']:>8}{p['other']:>9}{r['cpu_s']['label_studio']:>8}"
              f"{r['cpu_s']['workers']:>8}  {ok}")
    print("phase seconds are summed over workers; read + infer + wait + other = the chunks' time (write overlaps "
          f"infer); Label Studio stored a prediction in {ceiling['ls_cpu_ms_per_prediction']} ms of its CPU")
    best = max((r["pct_of_ls_ceiling"] for r in rows), default=0.0)
    print(f"best end to end: {best} % of Label Studio's own write ceiling (goal: 85 %)")


def _check_text(c: dict[str, int]) -> str:
    if not (c["lost"] or c["duplicated_tasks"] or c["other_versions"]):
        return "ok"
    return f"lost {c['lost']} dup {c['duplicated_tasks']} other {c['other_versions']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--model", choices=["real", "tiny"], default="real")
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--write-batch", default="0",
                    help="comma-separated PRELABEL_WRITE_BATCH values (0: one write a chunk), one configuration each")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts, one configuration each")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one prelabel run may take")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prelabel_throughput.json")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if not counts or min(counts) < 1:
        raise SystemExit("--workers needs worker counts >= 1, e.g. 1,2")
    batches = [int(b) for b in args.write_batch.split(",") if b.strip()]
    texts = sst2_texts(args.tasks)
    logs = args.out.parent / (args.out.stem + "_logs")
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prelabel-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store, version = build_store(tmp, args.model)
        print(f"model {version}; raw classifier baseline on {min(args.tasks, RAW_MAX_TEXTS)} texts ...", flush=True)
        raw = raw_baseline(store, texts[:RAW_MAX_TEXTS], args.chunk_size)
        studio = LabelStudioServer(tmp / "label-studio", free_port())
        configurations = []
        try:
            print("starting Label Studio ...", flush=True)
            studio.start()
            studio.wait_ready()
            from label_studio_sdk import LabelStudio

            pat = create_personal_access_token(studio.base_url, studio.email, studio.password)
            client = LabelStudio(base_url=studio.base_url, api_key=pat, timeout=600)
            print(f"Label Studio write ceiling: {args.tasks} precomputed predictions ...", flush=True)
            ceiling = ls_write_ceiling(studio, client, texts, version, args.chunk_size)
            for batch in batches:
                for n in counts:
                    print(f"{n} worker(s), write batch {batch}: {args.tasks} tasks ...", flush=True)
                    configurations.append(run_config(n, studio=studio, client=client, pat=pat, store=store,
                                                     version=version, texts=texts, chunk_size=args.chunk_size,
                                                     write_batch=batch, tmp=tmp, logs=logs, timeout=args.timeout))
        finally:
            studio.stop()
            with contextlib.suppress(OSError):
                shutil.copyfile(studio.log_path, logs / "label-studio.log")
    for c in configurations:
        one = next((o for o in configurations if o["workers"] == 1 and o["write_batch"] == c["write_batch"]), None)
        c["pct_of_raw"] = round(100 * c["rows_per_s"] / raw["rows_per_s"], 1)
        c["pct_of_ls_ceiling"] = round(100 * c["rows_per_s"] / ceiling["rows_per_s"], 1)
        c["speedup_vs_1_worker"] = round(c["rows_per_s"] / one["rows_per_s"], 2) if one else None
    result = {
        "model_version": version, "model": args.model, "tasks": args.tasks, "chunk_size": args.chunk_size,
        "write_batches": batches,
        "texts": "SST-2 train sentences, cycled, prefixed with the row number",
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "raw": raw, "ls_ceiling": ceiling, "configurations": configurations,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} (logs in {logs})")


if __name__ == "__main__":
    main()
