"""Logging set-up for the processes the CLI starts: every record is one line, with secrets masked.

The one formatter on the root handler does it for every call site, so no code that logs needs to care:

* the message (arguments merged in) has control characters escaped visibly (`\\n`, `\\x1b`, `\\u2028`), so a
  request value such as the path `/jobs/x%0AINFO forged` can never start a forged log line;
* configured secret values (BASIC_AUTH_PASS, WEBHOOK_SECRET, LABEL_STUDIO_API_KEY, passwords inside REDIS_URL
  and LABEL_STUDIO_URL), `scheme://user:pass@` and token-like query values become `***`;
* a traceback (`exc_info`) or stack (`stack_info`) stays multi-line, masked the same way, with every line
  indented so that none of it reads as a record of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from backend.config import Settings
from backend.redaction import MASK, mask_url, url_password

REDACTED = MASK
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACEBACK_INDENT = "  "

# C0, DEL, C1 and the Unicode line and paragraph separators: everything str.splitlines() breaks on, and more
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` on one line: each control character written as a visible escape (`\\n`, `\\x1b`, `\\u2028`)."""
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class SafeFormatter(logging.Formatter):
    """Formats records as the module docstring says: one escaped, masked line, then an indented masked traceback."""

    def __init__(self, fmt: str = LOG_FORMAT, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        # longest first, so a secret containing another is masked whole; very short values would mask noise
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """`text` with every configured secret, URL credential and token-like query value masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return mask_url(text)

    def format(self, record: logging.LogRecord) -> str:
        """The masked one-line message, then any traceback and stack as indented masked lines."""
        record.message = escape_controls(self.scrub(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [self.formatMessage(record)]
        if record.exc_info:
            parts.append(self._block(self.formatException(record.exc_info)))
        elif record.exc_text:
            parts.append(self._block(record.exc_text))
        if record.stack_info:
            parts.append(self._block(self.formatStack(record.stack_info)))
        return "\n".join(parts)

    def _block(self, text: str) -> str:
        """A traceback or stack: masked, control characters other than line ends escaped, every line indented."""
        lines = self.scrub(text).rstrip("\n").split("\n")
        return "\n".join(TRACEBACK_INDENT + escape_controls(line) for line in lines)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, in clear, for the formatter (URL passwords included)."""
    values = [settings.basic_auth_pass, settings.webhook_secret, settings.label_studio_api_key]
    found = [v.get_secret_value() for v in values if v is not None]
    found += [p for p in (url_password(settings.redis_url), url_password(settings.label_studio_url)) if p]
    return found


def configure_logging(settings: Settings) -> None:
    """One stream handler on the root logger at LOG_LEVEL with the SafeFormatter; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(LOG_FORMAT, secret_values(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
