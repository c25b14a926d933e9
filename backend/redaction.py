"""Masking credentials in text that is shown: URLs from the settings, error messages, log lines.

`mask_url` is the one way to show a URL (REDIS_URL, LABEL_STUDIO_URL, a URL inside an error message): the
`user:password@` part and the values of token-like query parameters (`?token=`, `&api_key=`, ...) become `***`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

# query parameter names that carry credentials: token, access_token, api_key, apikey, password, secret, sig, ...
_SENSITIVE_NAME = r"[\w.\-]*(?:token|key|secret|pass|pwd|auth|sig|credential|session)[\w.\-]*"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/?#@]+@")
_QUERY_SECRET = re.compile(rf"(?P<name>[?&;]{_SENSITIVE_NAME}=)[^&;\s#\"'<>]+", re.IGNORECASE)


def mask_url(text: str) -> str:
    """`text` (one URL, or any message holding URLs) with every `scheme://user:pass@` and token-like query value
    replaced by `***`."""
    masked = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    return _QUERY_SECRET.sub(rf"\g<name>{MASK}", masked)


def url_password(url: str) -> str | None:
    """The password (or lone user part) a URL carries in `user:pass@`, for the log scrubber; None when none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.password or parts.username or None
