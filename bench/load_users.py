"""The locust users of bench/load_predict.py (run by it as `locust --headless -f bench/load_users.py ...`).

* PredictUser (all users but two): POST /predict with one SST-2 dev sentence per request, the body shaped like
  tests/fixtures/ls/predict_request.json, back to back. A refused one (503) waits its Retry-After, at most 1 s,
  as a well-behaved client does; without that, users spinning on 503s would take the CPU the model needs.
* WebhookUser (one): POST /webhook with tests/fixtures/ls/webhook_annotation_created.json at --webhook-rate/s.
* HealthUser (one): GET /health at --health-rate/s.

The webhook and health users are open loop, like Label Studio: each request runs in its own greenlet on a fixed
schedule (constant_throughput over a task that only spawns it), so a slow answer delays no later request and slow
answers cannot hide by lowering the rate. Every loop is bounded by locust's --run-time and by a request count;
every request by --request-timeout. Each finished request is kept as (kind, status, ms, webhook status) and written
as JSON to --samples-out when locust quits.
"""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.pool import Group
from locust import HttpUser, between, constant_throughput, events, task
from locust.exception import StopUser

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "ls"
MAX_RETRY_WAIT_S = 1.0
MAX_PREDICTS_PER_USER_PER_S = 200  # the count bound of a predict loop, far above what a CPU model answers

SAMPLES: list[dict[str, Any]] = []
IN_FLIGHT = Group()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--samples-out", type=str, default="", help="write every request's outcome here (JSON)")
    parser.add_argument("--webhook-rate", type=float, default=10.0, help="webhooks per second")
    parser.add_argument("--health-rate", type=float, default=2.0, help="/health probes per second")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="client timeout of one request (s)")
    parser.add_argument("--basic-auth", type=str, default="", help="user:password sent with every request")


@events.test_stop.add_listener
def _drain(environment: Any, **_: Any) -> None:
    """Let the open-loop requests still in flight finish (each is bounded by --request-timeout)."""
    IN_FLIGHT.join(timeout=environment.parsed_options.request_timeout + 5)
    IN_FLIGHT.kill(block=False)


@events.quitting.add_listener
def _write_samples(environment: Any, **_: Any) -> None:
    out = environment.parsed_options.samples_out
    if out:
        Path(out).write_text(json.dumps({"samples": SAMPLES}))


def predict_bodies() -> list[dict[str, Any]]:
    """One /predict body per SST-2 dev sentence: the fixture's shape, one task, labeling_config/sentiment.xml."""
    shape = json.loads((FIXTURES / "predict_request.json").read_text())
    task_shape = shape["tasks"][0]
    config = (ROOT / "labeling_config" / "sentiment.xml").read_text()
    with (ROOT / "data" / "sst2" / "dev.tsv").open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [{**shape, "label_config": config, "tasks": [{**task_shape, "id": i + 1, "inner_id": i + 1,
                                                         "data": {"text": text}}]}
            for i, text in enumerate(texts)]


PREDICT_BODIES = predict_bodies()
WEBHOOK_BODY = json.loads((FIXTURES / "webhook_annotation_created.json").read_text())


class BackendUser(HttpUser):
    """Common set-up: credentials and the client timeout from the command line."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        if options.basic_auth:
            user, _, password = options.basic_auth.partition(":")
            self.client.auth = (user, password)
        self.request_timeout = options.request_timeout

    def send(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        """One request, its outcome appended to SAMPLES; the response (None after a transport error)."""
        started = time.perf_counter()
        try:
            response = self.client.request(method, path, json=body, timeout=self.request_timeout, name=kind)
        except Exception as exc:  # locust's client returns most failures; anything else is still a sample
            SAMPLES.append({"kind": kind, "status": 0, "ms": (time.perf_counter() - started) * 1000,
                            "error": type(exc).__name__})
            return None
        sample = {"kind": kind, "status": response.status_code, "ms": (time.perf_counter() - started) * 1000}
        if response.status_code == 0:
            sample["error"] = type(response.error).__name__ if response.error else "no response"
        if kind == "webhook" and response.status_code in (200, 201):
            sample["webhook_status"] = _json_field(response, "status")
        SAMPLES.append(sample)
        return response


def _json_field(response: Any, name: str) -> Any:
    try:
        return response.json().get(name)
    except ValueError:
        return None


class PredictUser(BackendUser):
    """One-sentence /predict requests back to back."""

    weight = 1
    wait_time = between(0, 0)

    def on_start(self) -> None:
        super().on_start()
        self.sent = 0
        self.offset = random.randrange(len(PREDICT_BODIES))  # users do not send the same sentences in step
        self.limit = int(MAX_PREDICTS_PER_USER_PER_S * self.environment.parsed_options.run_time)

    @task
    def predict(self) -> None:
        if self.sent >= self.limit:
            raise StopUser()
        body = PREDICT_BODIES[(self.offset + self.sent) % len(PREDICT_BODIES)]
        self.sent += 1
        response = self.send("predict", "POST", "/predict", body)
        if response is not None and response.status_code == 503:
            gevent.sleep(min(_retry_after(response), MAX_RETRY_WAIT_S))


def _retry_after(response: Any) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", MAX_RETRY_WAIT_S)))
    except ValueError:
        return MAX_RETRY_WAIT_S


class OpenLoopUser(BackendUser):
    """Spawns one request greenlet per task run; constant_throughput paces the task runs at rate()."""

    abstract = True
    fixed_count = 1

    def wait_time(self) -> float:
        return float(self.pacer(self))

    def rate(self) -> float:
        raise NotImplementedError

    def request(self) -> None:
        raise NotImplementedError

    def on_start(self) -> None:
        super().on_start()
        self.pacer = constant_throughput(self.rate())
        self.sent = 0
        self.limit = int(self.rate() * self.environment.parsed_options.run_time) + 1

    @task
    def fire(self) -> None:
        if self.sent >= self.limit:
            raise StopUser()
        self.sent += 1
        IN_FLIGHT.spawn(self.request)


class WebhookUser(OpenLoopUser):
    """ANNOTATION_CREATED webhooks at --webhook-rate per second."""

    def rate(self) -> float:
        return float(self.environment.parsed_options.webhook_rate)

    def request(self) -> None:
        self.send("webhook", "POST", "/webhook", WEBHOOK_BODY)


class HealthUser(OpenLoopUser):
    """GET /health at --health-rate per second."""

    def rate(self) -> float:
        return float(self.environment.parsed_options.health_rate)

    def request(self) -> None:
        self.send("health", "GET", "/health")
