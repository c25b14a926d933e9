"""The one way a pure-ASGI middleware answers by itself: a JSON body with its length, plus any extra headers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Send


async def send_json(send: Send, status: int, content: dict[str, Any],
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a whole JSON response (content-type and content-length set, then `headers`)."""
    body = json.dumps(content).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
