"""Regression tests through the real app and the real logging set-up: no forged log lines, no secrets in the
log, no paths or exception text in what clients (open probes, error bodies, /models) receive."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.api.served import Classifier
from backend.config import Settings
from backend.store import ModelStore, ModelVersion
from tests.api.conftest import AUTH, PASSWORD, USER, WEBHOOK_SECRET, Backend, MakeBackend, ls_payload
from tests.logcapture import configured_log

pytestmark = pytest.mark.security

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
REDIS_PASSWORD = "redis-pw-Qx7Lm2Ns9"


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """What the root handler of configure_logging writes while the test runs (these settings' secrets known)."""
    settings = Settings(basic_auth_user=USER, basic_auth_pass=PASSWORD, webhook_secret=WEBHOOK_SECRET,
                        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0")
    with configured_log(settings) as out:
        yield out


def lines_with(out: io.StringIO, needle: str) -> list[str]:
    return [line for line in out.getvalue().splitlines() if needle in line]


def assert_no_forged_line(out: io.StringIO) -> None:
    """No line of the log starts with the attacker's text: each record is one line beginning with a timestamp,
    and traceback lines are indented."""
    for line in out.getvalue().splitlines():
        assert RECORD.match(line) or line.startswith("  "), line


def test_a_forged_path_is_one_escaped_line_in_the_refused_log(secured: Backend, log: io.StringIO) -> None:
    reply = secured.client.get("/jobs/x%0AINFO%20forged%0D%1B[2J")
    assert reply.status_code == 401
    assert reply.json() == {"detail": "authentication required"}
    (line,) = lines_with(log, "refused")
    assert line.endswith("refused GET /jobs/x\\nINFO forged\\r\\x1b[2J: missing or wrong credentials")
    assert_no_forged_line(log)


def test_a_forged_path_is_one_escaped_line_in_the_error_log(backend: Backend, log: io.StringIO) -> None:
    reply = backend.client.get("/jobs/x%0AINFO%20forged%1B%E2%80%A8")  # not a job id: refused before Redis
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("invalid request: path.job_id: String should match pattern")
    (line,) = lines_with(log, "-> 422")
    # request.url.path has lost the newline already (urllib drops it); the other controls are escaped here
    assert "GET /jobs/xINFO forged\\x1b\\u2028 -> 422 path.job_id: String should match" in line
    assert_no_forged_line(log)


def test_a_forged_body_field_in_a_validation_error_stays_one_line(secured: Backend, log: io.StringIO) -> None:
    reply = secured.client.post("/models/rollback", json={"x\nINFO forged": 1}, auth=AUTH)  # extras are refused
    assert reply.status_code == 422
    (line,) = lines_with(log, "-> 422")
    assert "body.x\\nINFO forged: Extra inputs are not permitted" in line
    assert_no_forged_line(log)


def test_a_crash_traceback_is_masked_and_the_client_sees_no_exception_text(
    secured: Backend, log: io.StringIO
) -> None:
    secured.classifier.error = RuntimeError(f"boom with {PASSWORD} and redis://:{REDIS_PASSWORD}@r:6379\nINFO forged")
    reply = secured.client.post("/predict", json=ls_payload("predict_request_one_task.json"), auth=AUTH)
    assert reply.status_code == 500 and reply.json() == {"detail": "internal error"}
    text = log.getvalue()
    assert PASSWORD not in text and REDIS_PASSWORD not in text
    assert "  RuntimeError: boom with *** and redis://***@r:6379" in text.splitlines()
    assert "  INFO forged" in text.splitlines(), "the traceback stays multi-line, indented"
    assert_no_forged_line(log)


def test_redis_url_password_never_reaches_a_body_or_the_log(make_backend: MakeBackend, log: io.StringIO) -> None:
    app = make_backend(redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", basic_auth_user=AUTH[0],
                       basic_auth_pass=AUTH[1])
    app.client.auth = AUTH
    for reply in (app.client.get("/jobs"), app.client.post("/jobs/prelabel", json={"project": 3})):
        assert reply.status_code == 503
        assert REDIS_PASSWORD not in reply.text and "127.0.0.1" not in reply.text and "Error 111" not in reply.text
    assert REDIS_PASSWORD not in log.getvalue()
    assert lines_with(log, "Redis at redis://***@127.0.0.1:1/0 is unreachable"), "the detail stays in the log"


def test_a_failed_load_shows_no_path_or_exception_text(make_backend: MakeBackend, log: io.StringIO) -> None:
    def broken_loader(version: ModelVersion) -> Classifier:
        raise OSError(f"cannot read {version.path}/config.json")

    app = make_backend(loader=broken_loader)
    root = str(app.store.root)
    health = app.client.get("/health")
    probe = app.client.get("/")
    predict = app.client.post("/predict", json=ls_payload("predict_request_one_task.json"))
    for reply in (health, probe):
        assert reply.status_code == 503
        assert reply.json() == {"status": "ERROR", "detail": "the model failed to load; see the server log"}
    assert predict.status_code == 503 and predict.json() == {"detail": "the model failed to load; see the server log"}
    for reply in (health, probe, predict):
        assert root not in reply.text and "OSError" not in reply.text and "config.json" not in reply.text
    assert f"  OSError: cannot read {root}" in log.getvalue(), "the operator still gets the cause"


def test_an_empty_store_probe_shows_no_path(
    make_backend: MakeBackend, store: ModelStore, log: io.StringIO, tmp_path: Path
) -> None:
    (store.root / "lines" / "default" / "CURRENT").unlink()
    app = make_backend()
    reply = app.client.get("/health")
    assert reply.status_code == 503 and str(tmp_path) not in reply.text
    assert reply.json()["detail"] == (
        "the model failed to load: the model store has no current version; see the server log"
    )
    assert lines_with(log, f"the model store {app.store.root} has no current version")


def test_an_unknown_version_names_no_store_path(secured: Backend) -> None:
    reply = secured.client.post("/models/no-such-version/promote", json={"default": True}, auth=AUTH)
    assert reply.status_code == 404
    assert reply.json() == {"detail": "model version 'no-such-version' is not in the model store"}
    assert str(secured.store.root) not in reply.text


def test_models_and_versions_show_no_checkpoint_path(make_backend: MakeBackend, store: ModelStore,
                                                     tmp_path: Path) -> None:
    source = tmp_path / "private-mount" / "checkpoints" / "sst2-ft"
    staged = tmp_path / "staged"
    shutil.copytree(store.get(store.current_version() or "").path, staged)
    store.publish(staged, {"source": str(source), "kind": "import"}, name="imported", make_current=False)
    app = make_backend()
    models = app.client.get("/models")
    versions = app.client.get("/versions")
    assert models.status_code == 200 and versions.status_code == 200
    for reply in (models, versions):
        assert str(tmp_path) not in reply.text and "private-mount" not in reply.text
    sources = {row["version"].split("-")[0]: row["source"] for row in models.json()["models"]}
    assert sources == {"tiny": "tests/modelfactory tiny", "imported": "sst2-ft"}


def test_a_webhook_reply_carries_no_exception_text(make_backend: MakeBackend) -> None:
    app = make_backend(train_after_annotations=5)  # counting needs Redis, which is not there
    reply = app.client.post("/webhook", json=ls_payload("webhook_annotation_created.json"))
    assert reply.status_code == 200
    assert reply.json()["training"] == {
        "error": "the annotation count was not updated (JobQueueUnavailable); see the server log"
    }
    assert "127.0.0.1" not in reply.text
