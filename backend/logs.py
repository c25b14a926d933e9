"""Logging set-up for the processes the CLI starts, with secret values scrubbed from every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from backend.config import Settings

REDACTED = "***"


class SecretScrubber(logging.Filter):
    """Replaces any configured secret value that reaches a log record (defence in depth, not the first line)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = message
        for secret in self.secrets:
            scrubbed = scrubbed.replace(secret, REDACTED)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, in clear, for the scrubber."""
    values = [settings.basic_auth_pass, settings.webhook_secret, settings.label_studio_api_key]
    return [v.get_secret_value() for v in values if v is not None]


def configure_logging(settings: Settings) -> None:
    """One stream handler on the root logger at LOG_LEVEL, scrubbing secrets; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretScrubber(secret_values(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
