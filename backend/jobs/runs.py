"""Run records: what a user sees of one bulk job (GET /jobs/{id}, `sentiment-backend jobs show`), kept in Redis.

A run is one trigger ("pre-label project 7"); rq jobs (a plan job, then chunk jobs) do its work. Counters are
HINCRBY'd by the workers, so any number of them on any number of machines add up. A chunk is counted once,
whatever happens to it: `finish_chunk` adds its index to a set first and counts only when the add is new, so
a chunk that runs twice (a retry after a crash that happened after the write) never counts twice.

Keys (prefix `sentiment:`): `run:<id>` hash, `run:<id>:chunks` hash index → task ids (JSON),
`run:<id>:finished` set of chunk indexes, `run:<id>:errors` capped list, `runs` sorted set by creation time,
`project:<id>:<kind>` the project's active run id of a kind (one pre-labeling and one training at a time): set
if absent, deleted only by a compare-and-delete naming its run; a training cancelled while its job runs keeps it
(field `stopping` on the run) until the job stops or rq reports the job abandoned.
A training run has no chunks: its phase, epoch, loss and ETA live in the JSON field `info`.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from redis.exceptions import WatchError

from backend import keys
from backend.errors import JobNotFound
from backend.keys import RUN_TTL_S

# what new_run_id makes; checked before any Redis lookup, so a typed id can never name another key
RUN_ID_PATTERN = r"^(prelabel|train)-[0-9a-f]{10}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
MAX_ERRORS = 50
MAX_CLAIM_ROUNDS = 20
# KEYS[1] a project's claim, ARGV[1] a run id: delete the claim only while it is still that run's
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RunState(str, Enum):
    """A run's life: queued → planning → running → one of the final states."""

    QUEUED = "queued"
    PLANNING = "planning"
    RUNNING = "running"
    FINISHED = "finished"
    FINISHED_WITH_ERRORS = "finished_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for the states a run never leaves."""
        return self in (RunState.FINISHED, RunState.FINISHED_WITH_ERRORS, RunState.FAILED, RunState.CANCELLED)


_COUNTERS = ("total", "skipped", "done", "failed", "deduped", "chunks_total", "chunks_done", "chunks_failed")


@dataclass(frozen=True)
class Run:
    """A snapshot of one run as stored."""

    id: str
    kind: str
    project: int
    model_version: str
    state: RunState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    summary: str = ""
    errors: tuple[str, ...] = ()
    chunk_size: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def count(self, name: str) -> int:
        """One counter (0 when never incremented)."""
        return int(self.counters.get(name, 0))

    @property
    def progress(self) -> float:
        """Fraction of the planned rows finished (written or failed); 1.0 when there was nothing to do."""
        if self.kind == "train":
            return 1.0 if self.state in (RunState.FINISHED, RunState.FINISHED_WITH_ERRORS) else float(
                self.info.get("progress", 0.0))
        total = self.count("total")
        if self.state in (RunState.QUEUED, RunState.PLANNING):
            return 0.0
        return 1.0 if total == 0 else min(1.0, (self.count("done") + self.count("failed")) / total)

    def rate(self, now: float | None = None) -> float:
        """Rows written per second since the first chunk started."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or (now if now is not None else time.time())
        return self.count("done") / max(end - self.started_at, 1e-3)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the current rate; None before any row is written, 0 once final."""
        if self.state.final:
            return 0.0
        if self.kind == "train":
            eta = self.info.get("eta_s")
            return None if eta is None else float(eta)
        rate = self.rate(now)
        if rate <= 0:
            return None
        left = self.count("total") - self.count("done") - self.count("failed")
        return max(0.0, left / rate)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The JSON shape of GET /jobs/{id}."""
        if self.kind == "train":
            return self._train_dict()
        return {
            "id": self.id,
            "kind": self.kind,
            "project": self.project,
            "model_version": self.model_version,
            "state": self.state.value,
            "progress": round(self.progress, 4),
            "percent": round(100 * self.progress, 1),
            "total": self.count("total"),
            "done": self.count("done"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "deduplicated": self.count("deduped"),
            "chunks": {k: self.count(f"chunks_{k}") for k in ("total", "done", "failed")},
            "rows_per_s": round(self.rate(now), 2),
            "eta_s": None if (eta := self.eta_s(now)) is None else round(eta, 1),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "summary": self.summary,
            "errors": list(self.errors),
        }


    def _train_dict(self) -> dict[str, Any]:
        shown = {k: self.info.get(k) for k in ("phase", "step", "total_steps", "epoch", "loss", "elapsed_s")}
        eta = self.eta_s()
        return {
            "id": self.id, "kind": self.kind, "project": self.project, "model_version": self.model_version,
            "state": self.state.value, "progress": round(self.progress, 4), "percent": round(100 * self.progress, 1),
            **shown, "eta_s": None if eta is None else round(eta, 1),
            "counts": self.info.get("counts", {}), "candidate": self.info.get("candidate"),
            "promoted": self.info.get("promoted"), "force": bool(self.info.get("force")),
            "label_studio": self.info.get("label_studio"), "gc_bytes_freed": self.info.get("gc_bytes_freed"),
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "summary": self.summary, "errors": list(self.errors),
        }


def new_run_id(kind: str) -> str:
    """A short unique id such as `prelabel-3f9a1c2b7d`."""
    return f"{kind}-{secrets.token_hex(5)}"


class RunStore:
    """Run records in Redis (a `redis.Redis` client with decode_responses=False)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)

    def _key(self, run_id: str, suffix: str = "") -> str:
        return keys.run(run_id, suffix)

    def create(self, kind: str, project: int, model_version: str, **extra: str) -> Run:
        """A new QUEUED run."""
        run_id = new_run_id(kind)
        now = time.time()
        record = {"id": run_id, "kind": kind, "project": project, "model_version": model_version,
                  "state": RunState.QUEUED.value, "created_at": now, **extra}
        pipe = self.redis.pipeline()
        pipe.hset(self._key(run_id), mapping=record)
        pipe.expire(self._key(run_id), RUN_TTL_S)
        pipe.zadd(keys.RUNS_INDEX, {run_id: now})
        pipe.zremrangebyscore(keys.RUNS_INDEX, 0, now - RUN_TTL_S)  # their records have expired
        pipe.zremrangebyrank(keys.RUNS_INDEX, 0, -keys.MAX_RUNS_INDEXED - 1)
        pipe.execute()
        return self.get(run_id)

    def claim_project(self, project: int, run_id: str, kind: str = "prelabel") -> str | None:
        """Make run_id the project's active run of its kind (None); the active run id when one holds the claim.

        A claim is SET NX; a stale one (its run is gone, or ended and not stopping) is taken over under WATCH, so
        two claimers never both win and a claim renewed meanwhile is never overwritten."""
        key = keys.active_run(project, kind)
        if self.redis.set(key, run_id, nx=True, ex=RUN_TTL_S):
            return None
        with self.redis.pipeline() as pipe:
            for _ in range(MAX_CLAIM_ROUNDS):
                try:
                    pipe.watch(key)
                    active = pipe.get(key)
                    if active is not None and self._holds_claim(_text(active)):
                        pipe.unwatch()
                        return _text(active)
                    pipe.multi()
                    pipe.set(key, run_id, ex=RUN_TTL_S)
                    pipe.execute()
                    return None
                except WatchError:  # the claim changed between the read and the write: look again
                    continue
        raise RuntimeError(f"the claim {key} kept changing; not claimed")

    def release_project(self, project: int, run_id: str, kind: str = "prelabel") -> bool:
        """Drop the project's active-run claim of a kind only if run_id still holds it (compare-and-delete)."""
        return bool(self._release(keys=[keys.active_run(project, kind)], args=[run_id]))

    def active_claim(self, project: int, kind: str = "prelabel") -> str | None:
        """The run id holding the project's claim of a kind, live or stale."""
        held = self.redis.get(keys.active_run(project, kind))
        return None if held is None else _text(held)

    def _holds_claim(self, run_id: str) -> bool:
        """True while the run may still be working: not final, or cancelled while its job still runs."""
        state, stopping = self.redis.hmget(self._key(run_id), ["state", "stopping"])
        if state is None:
            return False
        return not RunState(_text(state)).final or bool(stopping)

    def delete(self, run_id: str) -> None:
        """Forget a run record entirely (one that never started)."""
        pipe = self.redis.pipeline()
        pipe.delete(*(self._key(run_id, suffix) for suffix in ("", ":chunks", ":finished", ":errors")))
        pipe.zrem(keys.RUNS_INDEX, run_id)
        pipe.execute()

    def exists(self, run_id: str) -> bool:
        """True when the run record is in Redis (counters alone, left by a worker after Redis lost it, are not one)."""
        return bool(self.redis.hexists(self._key(run_id), "id"))

    def get(self, run_id: str) -> Run:
        """The run; raises JobNotFound (also for a string that is no run id, without asking Redis)."""
        if not _RUN_ID.match(run_id):
            raise JobNotFound("no such job: job ids look like prelabel-3f9a1c2b7d or train-3f9a1c2b7d")
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self._key(run_id)).items()}
        if "id" not in raw:  # absent, or only counters a worker still in flight added after Redis lost the run
            raise JobNotFound(f"no job {run_id!r} (unknown id, or Redis lost it: a restarted Redis keeps nothing)")
        errors = tuple(_text(e) for e in self.redis.lrange(self._key(run_id, ":errors"), 0, MAX_ERRORS - 1))
        return Run(
            id=raw["id"], kind=raw.get("kind", ""), project=int(raw.get("project", 0)),
            model_version=raw.get("model_version", ""), state=RunState(raw.get("state", "queued")),
            created_at=float(raw.get("created_at", 0)), started_at=_float(raw.get("started_at")),
            finished_at=_float(raw.get("finished_at")),
            counters={k: int(raw[k]) for k in _COUNTERS if k in raw},
            summary=raw.get("summary", ""), errors=errors, chunk_size=int(raw.get("chunk_size") or 0),
            info=json.loads(raw["info"]) if raw.get("info") else {},
        )

    def list(self, limit: int = 50) -> builtins.list[Run]:
        """The newest runs first (expired records are dropped from the index)."""
        ids = [_text(i) for i in self.redis.zrevrange(keys.RUNS_INDEX, 0, limit - 1)]
        found = []
        for run_id in ids:
            if self.exists(run_id):
                found.append(self.get(run_id))
            else:
                self.redis.zrem(keys.RUNS_INDEX, run_id)
        return found

    def set_state(self, run_id: str, state: RunState, **fields: Any) -> None:
        """Move the run to a state (a final state also stamps finished_at); never leaves a final state."""
        if self.get(run_id).state.final:
            return
        if state.final:
            fields.setdefault("finished_at", time.time())
        self.redis.hset(self._key(run_id), mapping={"state": state.value, **fields})

    def set_info(self, run_id: str, **fields: Any) -> None:
        """Merge fields into the run's JSON `info` (one writer per run: the job running it)."""
        raw = self.redis.hget(self._key(run_id), "info")
        info = {**(json.loads(raw) if raw else {}), **fields}
        self.redis.hset(self._key(run_id), "info", json.dumps(info))

    def mark_started(self, run_id: str) -> None:
        """Stamp started_at once (the first chunk to start does it)."""
        pipe = self.redis.pipeline()
        pipe.hsetnx(self._key(run_id), "started_at", time.time())
        pipe.expire(self._key(run_id), RUN_TTL_S)
        pipe.execute()

    def add(self, run_id: str, **amounts: int) -> None:
        """Add to counters atomically."""
        pipe = self.redis.pipeline()
        for name, amount in amounts.items():
            if amount:
                pipe.hincrby(self._key(run_id), name, amount)
        pipe.expire(self._key(run_id), RUN_TTL_S)  # a run Redis lost must not leave counters behind forever
        pipe.execute()

    def error(self, run_id: str, message: str) -> None:
        """Append an error line (the newest MAX_ERRORS are kept)."""
        pipe = self.redis.pipeline()
        pipe.lpush(self._key(run_id, ":errors"), message[:1000])
        pipe.ltrim(self._key(run_id, ":errors"), 0, MAX_ERRORS - 1)
        pipe.expire(self._key(run_id, ":errors"), RUN_TTL_S)
        pipe.execute()

    def save_chunks(self, run_id: str, chunks: Sequence[Sequence[int]]) -> None:
        """Record the planned chunks (index → task ids) and their totals."""
        pipe = self.redis.pipeline()
        if chunks:
            pipe.hset(self._key(run_id, ":chunks"), mapping={str(i): json.dumps(list(c)) for i, c in enumerate(chunks)})
            pipe.expire(self._key(run_id, ":chunks"), RUN_TTL_S)
        pipe.hset(self._key(run_id), mapping={"chunks_total": len(chunks), "total": sum(len(c) for c in chunks)})
        pipe.execute()

    def chunk(self, run_id: str, index: int) -> builtins.list[int]:
        """A planned chunk's task ids; raises JobNotFound when the run's plan is gone."""
        raw = self.redis.hget(self._key(run_id, ":chunks"), str(index))
        if raw is None:
            raise JobNotFound(f"chunk {index} of job {run_id} is not in Redis (the run expired or Redis lost it)")
        return [int(i) for i in json.loads(raw)]

    def finish_chunk(self, run_id: str, index: int, *, ok: bool, **amounts: int) -> bool:
        """Count a chunk's outcome once; True when this call was the one that finished the run's last chunk."""
        if not self.redis.sadd(self._key(run_id, ":finished"), index):
            return False  # counted before (a retried or duplicated execution)
        self.redis.expire(self._key(run_id, ":finished"), RUN_TTL_S)
        self.add(run_id, **amounts, **{"chunks_done" if ok else "chunks_failed": 1})
        run = self.get(run_id)
        return run.count("chunks_done") + run.count("chunks_failed") >= run.count("chunks_total")

    def is_cancelled(self, run_id: str) -> bool:
        """True once a cancel was asked for (or the run record is gone)."""
        state = self.redis.hget(self._key(run_id), "state")
        return state is None or _text(state) == RunState.CANCELLED.value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
