"""Every Redis key the backend creates (besides rq's own, which rq expires), named once, with how it stays bounded.

| key | type | bound |
|---|---|---|
| `sentiment:run:<id>` (+ `:chunks`, `:finished`, `:errors`) | hash / hash / set / list | TTL RUN_TTL_S; errors capped |
| `sentiment:runs` | sorted set (index of runs) | trimmed to MAX_RUNS_INDEXED, entries older than RUN_TTL_S dropped |
| `sentiment:project:<id>:<kind>` | string (the active run of a kind) | TTL RUN_TTL_S; deleted by its run only |
| `sentiment:project:<id>:prelabel-again` | string | TTL FOLLOW_UP_TTL_S |
| `sentiment:project:<id>:annotation-ids-since-training` | set of annotation ids | TTL RUN_TTL_S, renewed by each add; |
|   |   | < TRAIN_AFTER_ANNOTATIONS + MAX_IDS_PER_EVENT members (taken whole at the threshold, trimmed on give-back) |
| `sentiment:events` | list | capped by the event log (LTRIM) |
| `sentiment:stats` | hash of a fixed set of counters | fixed size (Prometheus counters never expire) |

Every id in a key is checked first: project ids are ints (schemas bound them), run ids match RUN_ID_PATTERN.
"""

from __future__ import annotations

PREFIX = "sentiment:"
RUN_TTL_S = 30 * 24 * 3600  # finished runs stay listed for 30 days
FOLLOW_UP_TTL_S = 24 * 3600
MAX_RUNS_INDEXED = 10_000

RUNS_INDEX = f"{PREFIX}runs"
EVENTS = f"{PREFIX}events"
STATS = f"{PREFIX}stats"
# the prefixes test and operators can scan; every key under them follows the table above
ALL = f"{PREFIX}*"


def run(run_id: str, suffix: str = "") -> str:
    """A run's record (suffix "" for the hash, ":chunks", ":finished" or ":errors")."""
    return f"{PREFIX}run:{run_id}{suffix}"


def active_run(project: int, kind: str) -> str:
    """The project's active run id of a kind (one pre-labeling and one training at a time)."""
    return f"{PREFIX}project:{int(project)}:{kind}"


def prelabel_again(project: int) -> str:
    """Set while a project wants one more pre-labeling run after its active one."""
    return f"{PREFIX}project:{int(project)}:prelabel-again"


def annotations_since_training(project: int) -> str:
    """The distinct accepted annotation ids counted towards the project's next automatic training (a set; the
    string counter of earlier versions had another name, so an old key never meets SADD)."""
    return f"{PREFIX}project:{int(project)}:annotation-ids-since-training"
