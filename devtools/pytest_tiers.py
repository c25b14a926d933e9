"""pytest plugin (`pytest -p devtools.pytest_tiers`, used by `make test`): a per-tier table at the end of a run.

A test's tier is its first marker among unit, api, security, redis, e2e, browser, slow, container. Time is
setup + call + teardown, so the session fixtures (Label Studio start, backend start, image build) count in the
tier of the first test that needs them.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

TIERS = ("unit", "api", "security", "redis", "e2e", "browser", "slow", "container")
OUTCOMES = ("passed", "failed", "error", "skipped")

_tier_of: dict[str, str] = {}
_outcome_of: dict[str, str] = {}
_seconds: defaultdict[str, float] = defaultdict(float)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Remember each collected test's tier."""
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        _tier_of[item.nodeid] = next((t for t in TIERS if t in names), "unmarked")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold the setup/call/teardown reports of a test into one outcome and its time."""
    tier = _tier_of.get(report.nodeid, "unmarked")
    _seconds[tier] += report.duration
    outcome: str
    if report.when == "call":
        outcome = "failed" if report.failed else report.outcome
    elif report.failed:
        outcome = "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "passed"
    if _outcome_of.get(report.nodeid, "passed") == "passed":
        _outcome_of[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Write `tier  passed failed error skipped  seconds` rows."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for nodeid, outcome in _outcome_of.items():
        counts[_tier_of.get(nodeid, "unmarked")][outcome] += 1
    if not counts:
        return
    tr = terminalreporter
    tr.section("tests per tier")
    tr.write_line(f"{'tier':<10}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'seconds':>10}")
    for tier in (*TIERS, "unmarked"):
        if tier in counts:
            row = counts[tier]
            tr.write_line(f"{tier:<10}" + "".join(f"{row[o]:>9}" for o in OUTCOMES) + f"{_seconds[tier]:>10.1f}")
