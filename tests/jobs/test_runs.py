"""Project claims on a real Redis: set if absent, an atomic takeover of stale claims, compare-and-delete release."""

from __future__ import annotations

import threading

import pytest
import redis

from backend import keys
from backend.jobs.runs import RunState, RunStore

pytestmark = pytest.mark.redis


def test_a_stale_release_from_an_old_run_never_deletes_a_newer_run_s_claim(redis_conn: redis.Redis) -> None:
    runs = RunStore(redis_conn)
    old = runs.create("train", 1, "v1")
    assert runs.claim_project(1, old.id, "train") is None
    runs.set_state(old.id, RunState.FAILED, summary="failed")  # ended without releasing (a crash in between)
    new = runs.create("train", 1, "v1")
    assert runs.claim_project(1, new.id, "train") is None  # the stale claim is taken over
    assert runs.release_project(1, old.id, "train") is False  # the old run's late release
    assert runs.active_claim(1, "train") == new.id
    assert runs.release_project(1, new.id, "train") is True
    assert runs.active_claim(1, "train") is None
    assert runs.release_project(1, new.id, "train") is False  # twice is harmless


def test_a_live_claim_is_kept_and_kinds_and_projects_claim_apart(redis_conn: redis.Redis) -> None:
    runs = RunStore(redis_conn)
    first, second = runs.create("train", 1, "v1"), runs.create("train", 1, "v1")
    assert runs.claim_project(1, first.id, "train") is None
    assert runs.claim_project(1, second.id, "train") == first.id
    assert runs.claim_project(1, second.id, "prelabel") is None and runs.claim_project(2, second.id, "train") is None
    assert 0 < redis_conn.ttl(keys.active_run(1, "train")) <= keys.RUN_TTL_S


def test_a_cancelled_run_whose_job_still_stops_keeps_its_claim(redis_conn: redis.Redis) -> None:
    runs = RunStore(redis_conn)
    cancelled = runs.create("train", 1, "v1")
    runs.claim_project(1, cancelled.id, "train")
    runs.set_state(cancelled.id, RunState.CANCELLED, stopping=1)
    assert runs.claim_project(1, runs.create("train", 1, "v1").id, "train") == cancelled.id
    redis_conn.delete(keys.run(cancelled.id))  # the record expired: the claim is stale
    later = runs.create("train", 1, "v1")
    assert runs.claim_project(1, later.id, "train") is None and runs.active_claim(1, "train") == later.id


def test_many_claimers_of_a_stale_claim_leave_exactly_one_winner(redis_conn: redis.Redis) -> None:
    runs = RunStore(redis_conn)
    ended = runs.create("train", 1, "v1")
    runs.claim_project(1, ended.id, "train")
    runs.set_state(ended.id, RunState.FINISHED)
    contenders = [runs.create("train", 1, "v1").id for _ in range(12)]
    answers: dict[str, str | None] = {}
    barrier = threading.Barrier(len(contenders))

    def claim(run_id: str) -> None:
        store = RunStore(redis.Redis(connection_pool=redis_conn.connection_pool))
        barrier.wait()
        answers[run_id] = store.claim_project(1, run_id, "train")

    threads = [threading.Thread(target=claim, args=(run_id,)) for run_id in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [run_id for run_id, active in answers.items() if active is None]
    assert len(winners) == 1 and runs.active_claim(1, "train") == winners[0]
    assert {active for active in answers.values() if active is not None} == {winners[0]}
