"""mask_url: the one way a URL (or a message holding URLs) is shown."""

from __future__ import annotations

import pytest

from backend.redaction import mask_url, url_password

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cr3t-pass@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://default:s3cr3t-pass@redis:6379/0", "redis://***@redis:6379/0"),
        ("rediss://s3cr3t-pass@cache.internal/1", "rediss://***@cache.internal/1"),
        ("http://admin:pw@ls.example:8080/api", "http://***@ls.example:8080/api"),
        ("http://ls:8080/api/tasks?project=3&token=abc123&page=2", "http://ls:8080/api/tasks?project=3&token=***&page=2"),
        ("https://x/?access_token=a.b.c", "https://x/?access_token=***"),
        ("https://x/p?API_KEY=k&Signature=s", "https://x/p?API_KEY=***&Signature=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://ls:8080/p?page=2&email=a@b.c", "http://ls:8080/p?page=2&email=a@b.c"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_url_finds_urls_inside_a_message() -> None:
    text = "GET /predict?token=abc HTTP/1.1; Redis at redis://u:pw@r:6379 refused; see http://ls/x?a=1"
    assert mask_url(text) == "GET /predict?token=*** HTTP/1.1; Redis at redis://***@r:6379 refused; see http://ls/x?a=1"


def test_url_password() -> None:
    assert url_password("redis://:s3cr3t@r:6379/0") == "s3cr3t"
    assert url_password("redis://u:s3cr3t@r") == "s3cr3t"
    assert url_password("redis://lone-secret@r") == "lone-secret"
    assert url_password("http://ls:8080") is None
