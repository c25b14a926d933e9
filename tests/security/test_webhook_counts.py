"""Annotation counting under concurrency: 50 webhooks at once against a real uvicorn and a redis-server of the
test's own count each accepted annotation once, and start one training at the threshold."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from backend import keys
from tests.api.conftest import ls_payload
from tests.redisdb import RedisServer
from tests.security.conftest import Live

pytestmark = pytest.mark.security

PROJECT = 1


def fifty_webhooks() -> list[dict[str, Any]]:
    """30 distinct annotations, 10 of them posted twice and 10 updated after: 50 bodies, shuffled."""
    hook = ls_payload("webhook_annotation_created.json")

    def body(annotation_id: int, action: str = "ANNOTATION_CREATED") -> dict[str, Any]:
        annotation = {**hook["annotation"], "id": annotation_id, "task": 1000 + annotation_id}
        return {**hook, "action": action, "annotation": annotation, "project": {**hook["project"], "id": PROJECT}}

    bodies = [body(i) for i in range(1, 31)]
    bodies += [body(i) for i in range(1, 11)]
    bodies += [body(i, "ANNOTATION_UPDATED") for i in range(11, 21)]
    random.Random(9).shuffle(bodies)
    return bodies


def post_at_once(url: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every body from its own thread, released together."""
    replies: list[dict[str, Any]] = [{}] * len(bodies)
    barrier = threading.Barrier(len(bodies))
    with httpx.Client(base_url=url, timeout=30) as client:
        def send(index: int) -> None:
            barrier.wait()
            reply = client.post("/webhook", json=bodies[index])
            assert reply.status_code == 200, reply.text
            replies[index] = reply.json()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    return replies


def test_fifty_concurrent_webhooks_of_thirty_annotations_count_thirty(
    live: Callable[..., Live], redis_server: RedisServer
) -> None:
    server = live(redis_url=redis_server.url, train_after_annotations=31)
    replies = post_at_once(server.url, fifty_webhooks())
    assert all(r["status"] == "recorded" and "error" not in r["training"] for r in replies), replies
    held = redis.Redis.from_url(redis_server.url).smembers(keys.annotations_since_training(PROJECT))
    assert held == {str(i).encode() for i in range(1, 31)}
    assert max(r["training"]["since_last"] for r in replies) == 30
    assert not any("job" in r["training"] for r in replies)


def test_fifty_concurrent_webhooks_at_the_threshold_start_exactly_one_training(
    live: Callable[..., Live], redis_server: RedisServer
) -> None:
    server = live(redis_url=redis_server.url, train_after_annotations=30)
    replies = post_at_once(server.url, fifty_webhooks())
    started = [r["training"] for r in replies if r["training"].get("created")]
    assert len(started) == 1 and started[0]["since_last"] == 30 and started[0]["job"].startswith("train-")
    client = redis.Redis.from_url(redis_server.url)
    assert client.llen("rq:queue:sentiment-train") == 1
    assert client.get(keys.active_run(PROJECT, "train")).decode() == started[0]["job"]
    # what is left counts towards the next training: only repeats that arrived after the take, never one of 30 lost
    left = {int(i) for i in client.smembers(keys.annotations_since_training(PROJECT))}
    assert left <= set(range(1, 21))
