"""A seeded property-based fuzz of the app's own OpenAPI schema with schemathesis: every route, schema-valid and
schema-invalid input, with and without credentials, against a real model store and a redis-server of its own.

What must hold for every answer: no 5xx (a 503 only where the route declares it: overload or a missing
dependency), every error a JSON {"detail": "<text>"}, and every answer conforming to the response schema the
route declares. The counts are written to test-artifacts/fuzz.json and printed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from backend.events import RedisEventLog
from tests.api.conftest import AUTH, Backend, MakeBackend
from tests.redisdb import RedisServer

pytestmark = pytest.mark.security

EXAMPLES_PER_OPERATION = 40
# not_a_server_error: the rule above replaces it (a declared 503 is allowed). positive_data_acceptance: a
# schema-valid label config can still lack a <Choices> on a <Text> (a 400 no JSON schema can express).
EXCLUDED_CHECKS = [checks.not_a_server_error, checks.positive_data_acceptance]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def declared(operation: Any) -> set[int]:
    """The statuses an operation's OpenAPI entry declares."""
    return {int(code) for code in operation.definition.raw.get("responses", {}) if str(code).isdigit()}


def problems_of(operation: Any, case: Any, response: Any) -> list[str]:
    """Why one answer breaks the rules of the module docstring (empty when it keeps them)."""
    status = response.status_code
    found = []
    if status >= 500 and not (status == 503 and 503 in declared(operation)):
        found.append(f"{status} from {operation.label}")
    if status >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
            found.append(f"{status} without a JSON detail from {operation.label}")
    try:
        case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
    except (Exception, FailureGroup) as exc:  # schemathesis raises a group of the checks that failed
        found.append(f"{operation.label} {status}: {str(exc).strip().splitlines()[-1][:300]}")
    return found


def fuzz(backend: Backend, credentials: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """Every operation of the app's schema, both generation modes, each credential set: the counts."""
    schema = schemathesis.openapi.from_dict(backend.client.app.openapi())  # type: ignore[attr-defined]
    schema.app = backend.client.app  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for label, headers in credentials:
                _fuzz_one(operation, mode, headers, label, statuses, problems)
    return {"operations": [op.label for op in operations], "requests": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())), "problems": problems}


def _fuzz_one(operation: Any, mode: GenerationMode, headers: dict[str, str], label: str,
              statuses: Counter[str], problems: list[str]) -> None:
    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call(headers={**(case.headers or {}), **headers})
        statuses[f"{label} {response.status_code}"] += 1
        problems.extend(problems_of(operation, case, response))

    try:
        run()
    except Unsatisfiable:  # no schema-invalid input exists for an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE, operation.label


def basic_header() -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()}


def test_fuzzing_every_route_finds_no_5xx_and_only_json_errors(
    make_backend: MakeBackend, redis_server: RedisServer
) -> None:
    open_backend = make_backend(redis_url=redis_server.url, events=RedisEventLog(redis_server.url))
    open_report = fuzz(open_backend, [("open", {})])
    secured = make_backend(redis_url=redis_server.url, events=RedisEventLog(redis_server.url),
                           basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    secured_report = fuzz(secured, [("no-credentials", {}), ("credentials", basic_header())])
    report = {"open": open_report, "secured": secured_report}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    total = open_report["requests"] + secured_report["requests"]
    print(f"\nfuzz: {total} requests over {len(open_report['operations'])} operations; "  # noqa: T201
          f"statuses {open_report['statuses']} {secured_report['statuses']}")
    assert len(open_report["operations"]) >= 14
    assert secured_report["statuses"].get("no-credentials 401", 0) > 0  # credentials really were left out
    assert secured_report["statuses"].get("credentials 200", 0) > 0  # and really were accepted
    assert open_report["problems"] == [] and secured_report["problems"] == []
