"""Bulk-job metrics kept in Redis (so every worker on every machine adds to the same numbers) and a Prometheus
collector that the API's /metrics exposes with the queue depths read from rq."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from backend import keys

log = logging.getLogger(__name__)

STATS_KEY = keys.STATS
# where a chunk's time goes; "write" overlaps "infer" (backend.jobs.prelabel), "write_wait" is the part it did not
PHASES = ("read", "infer", "write", "write_wait")


def record_chunk(redis: Any, outcome: Any, seconds: float) -> None:
    """Add one finished chunk: predictions written, duplicates removed, rows failed and where its time went."""
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.hincrby(STATS_KEY, "predictions_written", outcome.written)
        pipe.hincrby(STATS_KEY, "duplicates_removed", outcome.deduped)
        pipe.hincrby(STATS_KEY, "rows_failed", outcome.failed)
        pipe.hincrby(STATS_KEY, "chunks", 1)
        pipe.hincrbyfloat(STATS_KEY, "chunk_seconds", seconds)
        for phase in PHASES:
            pipe.hincrbyfloat(STATS_KEY, f"{phase}_seconds", getattr(outcome, f"{phase}_s"))
        pipe.execute()
    except Exception as exc:  # metrics never fail a chunk
        log.warning("could not record chunk metrics: %s", exc)


def record_failure(redis: Any, *, final: bool) -> None:
    """Count a failed chunk attempt (final: no retry left)."""
    try:
        redis.hincrby(STATS_KEY, "chunk_failures_final" if final else "chunk_failures_retried", 1)
    except Exception as exc:
        log.warning("could not record a failure metric: %s", exc)


def read_stats(redis: Any) -> dict[str, float]:
    """The stats hash as numbers."""
    return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in redis.hgetall(STATS_KEY).items()}


class JobsCollector(Collector):
    """Prometheus metrics of the bulk jobs, read from Redis at scrape time."""

    def __init__(self, redis_factory: Any) -> None:
        self._redis_factory = redis_factory

    def collect(self) -> Iterator[Any]:
        from backend.jobs.queues import queue_depths  # rq: only when scraped

        try:
            redis = self._redis_factory()
            stats = read_stats(redis)
            depths = queue_depths(redis)
        except Exception as exc:
            log.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            up = GaugeMetricFamily("sentiment_jobs_redis_up", "1 when Redis answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("sentiment_jobs_redis_up", "1 when Redis answered the scrape")
        up.add_metric([], 1)
        yield up
        for name, help_text in (
            ("predictions_written", "predictions written to Label Studio by pre-labeling"),
            ("duplicates_removed", "duplicate predictions of one version removed by the chunk repair"),
            ("rows_failed", "rows left without a prediction (no text, dropped by Label Studio)"),
        ):
            counter = CounterMetricFamily(f"sentiment_prelabel_{name}", help_text)
            counter.add_metric([], stats.get(name, 0.0))
            yield counter
        failures = CounterMetricFamily("sentiment_prelabel_chunk_failures", "failed chunk attempts", labels=["final"])
        failures.add_metric(["false"], stats.get("chunk_failures_retried", 0.0))
        failures.add_metric(["true"], stats.get("chunk_failures_final", 0.0))
        yield failures
        latency = SummaryMetricFamily("sentiment_prelabel_chunk_seconds", "wall time of finished chunks")
        latency.add_metric([], count_value=int(stats.get("chunks", 0)), sum_value=stats.get("chunk_seconds", 0.0))
        yield latency
        phases = CounterMetricFamily("sentiment_prelabel_phase_seconds", "chunk time by phase", labels=["phase"])
        for phase in PHASES:
            phases.add_metric([phase], stats.get(f"{phase}_seconds", 0.0))
        yield phases
        depth = GaugeMetricFamily("sentiment_queue_jobs", "rq jobs per queue and state", labels=["queue", "state"])
        for queue, states in depths.items():
            for state, count in states.items():
                depth.add_metric([queue, state], count)
        yield depth
