"""The configured root logger: one line per message, control characters escaped, secrets masked everywhere."""

from __future__ import annotations

import logging
import re

import pytest

from backend.config import Settings
from backend.logs import escape_controls, secret_values
from tests.logcapture import configured_log

pytestmark = pytest.mark.unit

PASSWORD = "pw-unit-7Hq2mXv9"
WEBHOOK = "wh-unit-3Lz8kPq1"
API_KEY = "ls-key-unit-9Ft4bNc6"
REDIS_PASSWORD = "redis-pw-unit-5Rd2"
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def settings() -> Settings:
    return Settings(
        basic_auth_user="u", basic_auth_pass=PASSWORD, webhook_secret=WEBHOOK, label_studio_api_key=API_KEY,
        redis_url=f"redis://:{REDIS_PASSWORD}@redis:6379/0", log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("\t", "\\t"), ("\x1b[31m", "\\x1b[31m"), ("\x00", "\\x00"),
        ("\x7f", "\\x7f"), ("\x85", "\\x85"), ("\x9b", "\\x9b"), ("a\u2028b\u2029", "a\\u2028b\\u2029"),
        ("\x0b\x0c\x1c", "\\x0b\\x0c\\x1c"), ("plain é ü 日本", "plain é ü 日本"),
    ],
)
def test_escape_controls(raw: str, escaped: str) -> None:
    assert escape_controls(raw) == escaped
    assert len(escape_controls(raw).splitlines()) <= 1


def test_secret_values_include_url_passwords() -> None:
    assert set(secret_values(settings())) == {PASSWORD, WEBHOOK, API_KEY, REDIS_PASSWORD}


def test_a_forged_line_stays_one_escaped_line() -> None:
    with configured_log(settings()) as out:
        logging.getLogger("backend.test").info("GET %s -> 404", "/jobs/x\nINFO forged\u2028\x1b[2J")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and RECORD.match(lines[0])
    assert lines[0].endswith("INFO backend.test: GET /jobs/x\\nINFO forged\\u2028\\x1b[2J -> 404")


def test_secrets_in_messages_and_arguments_are_masked() -> None:
    with configured_log(settings()) as out:
        log = logging.getLogger("backend.test")
        log.warning(f"inline {PASSWORD} and {WEBHOOK}")
        log.warning("args %s %s %r", API_KEY, REDIS_PASSWORD, {"key": API_KEY})
        log.warning("url %s and %s", "http://admin:other-pass@ls:8080/x", "GET /predict?token=tok-123 HTTP/1.1")
    text = out.getvalue()
    for secret in (PASSWORD, WEBHOOK, API_KEY, REDIS_PASSWORD, "other-pass", "tok-123"):
        assert secret not in text
    assert text.count("***") == 7
    assert "url http://***@ls:8080/x and GET /predict?token=*** HTTP/1.1" in text


def test_tracebacks_and_stacks_are_masked_multi_line_and_indented() -> None:
    with configured_log(settings()) as out:
        log = logging.getLogger("backend.test")
        try:
            raise RuntimeError(f"cannot log in with {PASSWORD}\n2026-01-01 00:00:00,000 INFO forged {API_KEY}")
        except RuntimeError:
            log.exception("call failed for %s", "redis://:x-secret@r")
        log.debug("where %s", WEBHOOK, stack_info=True)
    text = out.getvalue()
    for secret in (PASSWORD, WEBHOOK, API_KEY, "x-secret"):
        assert secret not in text
    lines = text.splitlines()
    records = [line for line in lines if RECORD.match(line)]
    assert [r.split(": ", 1)[1] for r in records] == ["call failed for redis://***@r", "where ***"]
    assert "  Traceback (most recent call last):" in lines
    assert "  RuntimeError: cannot log in with ***" in lines
    assert "  2026-01-01 00:00:00,000 INFO forged ***" in lines, "a forged line inside a traceback is indented"
    assert "  Stack (most recent call last):" in lines
    assert all(line.startswith("  ") for line in lines if not RECORD.match(line))


def test_uvicorn_loggers_go_through_the_same_formatter() -> None:
    with configured_log(settings()) as out:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET",
                                                 "/predict?api_key=k-123", "1.1", 200)
    assert out.getvalue().splitlines()[0].endswith('"GET /predict?api_key=*** HTTP/1.1" 200')
