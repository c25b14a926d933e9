"""Credentials: the Basic auth and webhook secret rules, per path."""

from __future__ import annotations

import base64

import pytest

from backend.api.auth import Credentials, exposure_warnings
from backend.config import Settings

pytestmark = pytest.mark.unit


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def headers(**values: bytes) -> dict[bytes, bytes]:
    return {name.replace("_", "-").encode(): value for name, value in values.items()}


BOTH = Credentials("ls", "pw", "wh")
BASIC_ONLY = Credentials("ls", "pw", None)
SECRET_ONLY = Credentials(None, None, "wh")
NOTHING = Credentials(None, None, None)


@pytest.mark.parametrize(
    "authorization",
    [
        basic("ls", "wrong"),
        basic("LS", "pw"),
        basic("ls", "pw "),
        basic("", ""),
        b"Basic " + base64.b64encode(b"lspw"),
        b"Basic not-base64!",
        b"Bearer " + base64.b64encode(b"ls:pw"),
        b"",
    ],
)
def test_wrong_basic_credentials(authorization: bytes) -> None:
    assert not BASIC_ONLY.basic_ok(authorization)


def test_right_basic_credentials() -> None:
    assert BASIC_ONLY.basic_ok(basic("ls", "pw"))
    assert BASIC_ONLY.basic_ok(b"basic " + base64.b64encode(b"ls:pw"))
    assert Credentials("ls", "p:w:é", None).basic_ok(basic("ls", "p:w:é"))


@pytest.mark.parametrize("path", ["/predict", "/setup", "/versions", "/anything"])
def test_basic_auth_guards_every_route(path: str) -> None:
    assert not BASIC_ONLY.allows("POST", path, {})
    assert not BASIC_ONLY.allows("POST", path, headers(authorization=basic("ls", "x")))
    assert BASIC_ONLY.allows("POST", path, headers(authorization=basic("ls", "pw")))


@pytest.mark.parametrize("path", ["/health", "/"])
def test_probes_without_credentials_pass_but_wrong_ones_do_not(path: str) -> None:
    assert BASIC_ONLY.allows("GET", path, {})
    assert not BASIC_ONLY.allows("GET", path, headers(authorization=basic("ls", "x")))
    assert BASIC_ONLY.allows("GET", path, headers(authorization=basic("ls", "pw")))
    assert not BASIC_ONLY.allows("POST", path, {})


def test_webhook_with_secret_and_basic_takes_either() -> None:
    assert not BOTH.allows("POST", "/webhook", {})
    assert BOTH.allows("POST", "/webhook", headers(x_webhook_secret=b"wh"))
    assert BOTH.allows("POST", "/webhook", headers(authorization=basic("ls", "pw")))
    assert not BOTH.allows("POST", "/webhook", headers(x_webhook_secret=b"wrong"))
    assert not BOTH.allows("POST", "/predict", headers(x_webhook_secret=b"wh")), "the secret opens /webhook only"


def test_webhook_with_basic_only_needs_basic() -> None:
    assert not BASIC_ONLY.allows("POST", "/webhook", headers(x_webhook_secret=b"wh"))
    assert BASIC_ONLY.allows("POST", "/webhook", headers(authorization=basic("ls", "pw")))


def test_secret_only_guards_the_webhook_alone() -> None:
    assert not SECRET_ONLY.allows("POST", "/webhook", {})
    assert SECRET_ONLY.allows("POST", "/webhook", headers(x_webhook_secret=b"wh"))
    assert SECRET_ONLY.allows("POST", "/predict", {})


def test_nothing_configured_is_open() -> None:
    assert not NOTHING.anything_enabled
    for path in ("/webhook", "/predict", "/health"):
        assert NOTHING.allows("POST", path, {})


def test_no_start_warning_with_basic_auth() -> None:
    assert exposure_warnings(Settings(basic_auth_user="ls", basic_auth_pass="pw-long-enough")) == []


def test_basic_auth_off_with_a_webhook_secret_warns_once() -> None:
    (warning,) = exposure_warnings(Settings(webhook_secret="wh-secret"))
    assert warning.startswith("Basic auth is off (BASIC_AUTH_USER and BASIC_AUTH_PASS unset)")
    assert "403" in warning and "wh-secret" not in warning


@pytest.mark.parametrize("secret", [None, ""])
def test_nothing_configured_warns_loudly_naming_the_port(secret: str | None) -> None:
    basic_off, loud = exposure_warnings(Settings(webhook_secret=secret, host="0.0.0.0", port=9191))
    assert basic_off.startswith("Basic auth is off")
    assert loud.startswith("NO AUTHENTICATION AT ALL: neither Basic auth nor WEBHOOK_SECRET is set")
    assert "0.0.0.0:9191 can post events to /webhook" in loud
