"""Does the backend keep Label Studio's timeouts (/health 1 s, /setup 3 s, webhooks 1 s, no retry) under /predict load?

One run, all real processes on loopback:
  * a throw-away redis-server (no persistence), so webhooks are really recorded;
  * `python -m backend serve` (Basic auth on) on a model store holding a DistilBERT of the real architecture
    (6 layers, 768 wide) with random weights, built offline: same speed as the SST-2 checkpoint; env
    MAX_CONCURRENT_PREDICTS from --max-concurrent-predicts (a code without the setting ignores it);
  * `locust --headless -f bench/load_users.py` (gevent users): --users users sending one-sentence /predict
    requests back to back, ANNOTATION_CREATED webhooks at --webhook-rate/s and /health at --health-rate/s, open
    loop (a slow answer delays no later request), for --seconds.

Rows of the table:
  /predict  ok/s: successful (200) predicts per second of the run; 503: refused (the bound); errors: any other
            status or no answer (must be 0); latency columns over the 200s only
  /webhook  ok: 200/201 answers; latency columns over every webhook sent; "over 1 s" is what Label Studio loses
  /health   the same for the probe (Label Studio marks the backend down after 1 s)
  baseline  measured first in the same run: one client sending the same /predict back to back with nothing else
            going on (--baseline-seconds), the server's unloaded capacity the loaded ok/s is compared with
Below it: webhooks the backend answered as not recorded, and the events Redis holds at the end.

    PYTHONPATH=. .venv/bin/python bench/load_predict.py [--seconds 60] [--users 64] [--webhook-rate 10]
        [--health-rate 2] [--max-concurrent-predicts 16]

Prints a table and writes bench/results/load_predict.json; the server and locust logs go next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import AUTH, build_store, dev_texts, free_port, git_head, pct, start_server  # noqa: E402

from backend.events import EVENTS_KEY  # noqa: E402
from tests.e2e.test_prelabel import RedisServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
OK_STATUSES = {"predict": {200}, "webhook": {200, 201}, "health": {200}}
REFUSED_STATUS = {"predict": 503}
LABEL_STUDIO_TIMEOUT_MS = 1000.0
WARM_UP_PREDICTS = 5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=int, default=60, help="length of the load")
    ap.add_argument("--users", type=int, default=64, help="concurrent /predict users")
    ap.add_argument("--webhook-rate", type=float, default=10.0, help="ANNOTATION_CREATED webhooks per second")
    ap.add_argument("--health-rate", type=float, default=2.0, help="/health probes per second")
    ap.add_argument("--max-concurrent-predicts", type=int, default=16, help="the server's MAX_CONCURRENT_PREDICTS")
    ap.add_argument("--baseline-seconds", type=float, default=10.0, help="one client alone first, for the baseline")
    ap.add_argument("--request-timeout", type=float, default=60.0, help="client timeout of one request (s)")
    ap.add_argument("--out", type=Path, default=RESULTS / "load_predict.json")
    return ap.parse_args()


def one_task_body(text: str) -> dict[str, Any]:
    return {"tasks": [{"id": 1, "data": {"text": text}}], "project": "1.1700000000",
            "label_config": (ROOT / "labeling_config" / "sentiment.xml").read_text()}


def warm_up(url: str) -> None:
    """A few sequential predicts, so the first load requests do not pay for lazy initialisation."""
    for _ in range(WARM_UP_PREDICTS):
        reply = requests.post(f"{url}/predict", json=one_task_body("a warm-up sentence"), auth=AUTH, timeout=60)
        reply.raise_for_status()


def baseline(url: str, seconds: float) -> dict[str, Any]:
    """One client alone, back to back, over SST-2 dev sentences: the unloaded /predict rate and latency."""
    texts, ms = dev_texts(200), []
    with requests.Session() as session:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            session.post(f"{url}/predict", json=one_task_body(texts[len(ms) % len(texts)]), auth=AUTH,
                         timeout=60).raise_for_status()
            ms.append((time.perf_counter() - started) * 1000)
    return {"what": "baseline", "n": len(ms), "ok": len(ms), "ok_per_s": round(len(ms) / seconds, 2),
            "refused_503": 0, "errors": 0, "error_statuses": [],
            "over_1s": sum(m > LABEL_STUDIO_TIMEOUT_MS for m in ms),
            "p50_ms": round(pct(ms, 0.5), 1), "p95_ms": round(pct(ms, 0.95), 1), "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1)}


def run_locust(url: str, args: argparse.Namespace, samples_path: Path, log: Path) -> list[dict[str, Any]]:
    """Run bench/load_users.py headless for args.seconds; every request's sample."""
    users = args.users + 2  # the webhook and health users are fixed_count=1 each
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "load_users.py"), "--headless",
               "--host", url, "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{args.seconds}s",
               "--stop-timeout", str(int(args.request_timeout)), "--only-summary", "--loglevel", "WARNING",
               "--exit-code-on-error", "0", "--samples-out", str(samples_path),
               "--webhook-rate", str(args.webhook_rate), "--health-rate", str(args.health_rate),
               "--request-timeout", str(args.request_timeout), "--basic-auth", ":".join(AUTH)]
    limit = args.seconds + 2 * args.request_timeout + 60
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=limit)
    if done.returncode != 0 or not samples_path.exists():
        raise SystemExit(f"locust exited {done.returncode} without samples; see {log}")
    samples: list[dict[str, Any]] = json.loads(samples_path.read_text())["samples"]
    return samples


def kind_row(kind: str, samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts and latencies of one request kind (predict: latencies of the successful ones only)."""
    mine = [s for s in samples if s["kind"] == kind]
    ok = [s for s in mine if s["status"] in OK_STATUSES[kind]]
    refused = [s for s in mine if s["status"] == REFUSED_STATUS.get(kind)]
    errors = [s for s in mine if s["status"] not in OK_STATUSES[kind] and s["status"] != REFUSED_STATUS.get(kind)]
    timed = [s["ms"] for s in (ok if kind == "predict" else mine)]
    row: dict[str, Any] = {"what": f"/{kind}", "n": len(mine), "ok": len(ok), "ok_per_s": round(len(ok) / seconds, 2),
                           "refused_503": len(refused), "errors": len(errors),
                           "error_statuses": sorted({s["status"] for s in errors}),
                           "over_1s": sum(ms > LABEL_STUDIO_TIMEOUT_MS for ms in (s["ms"] for s in mine))}
    for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        row[name] = round(pct(timed, q), 1) if timed else None
    row["max_ms"] = round(max(timed), 1) if timed else None
    return row


def webhook_outcomes(samples: list[dict[str, Any]]) -> dict[str, int]:
    """How the backend answered the webhooks it accepted: {"recorded": n, "dropped": m, ...}."""
    outcomes: dict[str, int] = {}
    for s in samples:
        if s["kind"] == "webhook" and "webhook_status" in s:
            key = str(s["webhook_status"])
            outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


def print_table(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(f"load: {s['users']} /predict users, {s['webhook_rate']} webhooks/s, {s['health_rate']} /health/s for "
          f"{s['seconds']} s; MAX_CONCURRENT_PREDICTS={s['max_concurrent_predicts']}; "
          f"{result['machine']['cpus']} CPUs (load average {result['machine']['loadavg_1m_before']} before, "
          f"{result['machine']['loadavg_1m_after']} after); code {result['code']['commit'][:9]}")
    columns = ("what", "n", "ok", "ok_per_s", "refused_503", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms",
               "over_1s")
    heads = ("what", "n", "ok", "ok/s", "503", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "over 1 s")
    print(f"{heads[0]:<10}" + "".join(f"{h:>9}" for h in heads[1:]))
    for row in result["rows"]:
        cells = ["-" if row[c] is None else row[c] for c in columns[1:]]
        print(f"{row['what']:<10}" + "".join(f"{c:>9}" for c in cells))
    print(f"webhook answers: {result['webhook_outcomes']}; events in Redis at the end: {result['events_in_redis']}")
    loaded, alone = result["rows"][1]["ok_per_s"], result["rows"][0]["ok_per_s"]
    print(f"/predict under load: {loaded} ok/s = {loaded / alone:.0%} of one client alone ({alone}/s)")
    for row in result["rows"]:
        if row["errors"]:
            print(f"ERRORS on {row['what']}: {row['errors']} (statuses {row['error_statuses']}; 0 = no answer)")


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Start Redis and the backend, run the load, stop both (also on errors and Ctrl-C); the result."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = build_store(tmp)
    redis_server = RedisServer(dir=tmp)
    with contextlib.ExitStack() as stack:
        redis_server.start()
        stack.callback(redis_server.stop)
        port = free_port()
        env = {"REDIS_URL": redis_server.url, "MAX_CONCURRENT_PREDICTS": str(args.max_concurrent_predicts),
               "DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               # this checkout's backend, not whichever one the venv has installed
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        server = start_server(store, port, RESULTS / "load_predict_server.log", extra_env=env)
        stack.callback(stop_process, server)
        url = f"http://127.0.0.1:{port}"
        warm_up(url)
        alone = baseline(url, args.baseline_seconds)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        samples = run_locust(url, args, tmp / "samples.json", RESULTS / "load_predict_locust.log")
        wall = time.monotonic() - started
        if wall < args.seconds:  # locust quits early on SIGINT (Ctrl-C reaches it too) and still writes samples
            raise SystemExit(f"the load stopped after {wall:.0f} s of {args.seconds} s (interrupted?)")
        events = int(redis.Redis.from_url(redis_server.url).llen(EVENTS_KEY))
        alive = server.poll() is None
    rows = [alone] + [kind_row(kind, samples, args.seconds) for kind in ("predict", "webhook", "health")]
    return {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
            "webhook_outcomes": webhook_outcomes(samples), "events_in_redis": events, "server_alive_after": alive,
            "locust_wall_s": round(wall, 1), "auth": "Basic auth on", "code": git_head(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        # the cores are shared: the 1-minute load average before and after the load says how much
                        "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
            "texts": "SST-2 dev sentences, one per /predict"}


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s (not devtools.demo's: that one signals a process group of its own)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
