"""Under load: 64 clients send /predict at once to a real uvicorn server while the model is held busy. Past
MAX_CONCURRENT_PREDICTS they get a JSON 503 with Retry-After at once; meanwhile /health, /setup and annotation
webhooks are all answered while the admitted predicts are still queued; then every admitted predict completes.
(Timings are the benchmark's business: bench/load_predict.py. Nothing here asserts a duration.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import ls_payload
from tests.security.conftest import Live

pytestmark = pytest.mark.security

CLIENTS = 64
BOUND = 8


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_webhooks_health_and_setup_answer_while_predicts_queue_and_extra_predicts_get_503(
    live: Callable[..., Live],
) -> None:
    server = live(max_concurrent_predicts=BOUND)
    server.classifier.gate = threading.Event()  # the model is busy until the gate opens
    body = ls_payload("predict_request_one_task.json")
    replies: list[httpx.Response] = []

    def send(_: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            replies.append(client.post("/predict", json=body))

    pool = ThreadPoolExecutor(CLIENTS)
    futures = [pool.submit(send, i) for i in range(CLIENTS)]
    wait_until(lambda: len(replies) == CLIENTS - BOUND and server.inference.admitted == BOUND)
    refused = list(replies)
    assert {r.status_code for r in refused} == {503}
    for reply in refused:
        assert reply.headers["retry-after"] == "1"
        assert reply.json() == {"detail": f"{BOUND} /predict requests are running or waiting for the model "
                                          f"(MAX_CONCURRENT_PREDICTS={BOUND}); retry in a moment"}

    with httpx.Client(base_url=server.url, timeout=30) as client:
        health = client.get("/health")
        setup = client.post("/setup", json=ls_payload("setup_request.json"))
        hooks = [client.post("/webhook", json=ls_payload("webhook_annotation_created.json")) for _ in range(10)]
    assert health.status_code == 200 and health.json()["status"] == "UP"
    assert setup.status_code == 200 and setup.json()["model_version"]
    assert [h.json()["status"] for h in hooks] == ["recorded"] * 10
    assert len(server.events.events) == 10
    # all of that was answered while the admitted predicts were still waiting for the model
    assert server.inference.admitted == BOUND and len(replies) == CLIENTS - BOUND

    server.classifier.gate.set()
    for future in futures:
        future.result(60)
    pool.shutdown()
    admitted = [r for r in replies if r.status_code != 503]
    assert len(admitted) == BOUND and {r.status_code for r in admitted} == {200}
    text = body["tasks"][0]["data"]["text"]
    for reply in admitted:
        (result,) = reply.json()["results"]
        assert result["result"][0]["value"]["choices"] == [
            "Positive" if server.classifier.expected(text).label == "POSITIVE" else "Negative"
        ]
    assert server.inference.admitted == 0
