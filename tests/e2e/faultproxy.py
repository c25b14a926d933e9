"""A loopback HTTP proxy in front of Label Studio that fails or stalls chosen calls (the e2e tests' fault injector).

Rules match a method and a path regex. `fail` answers 502 without forwarding, for the next `times` matches;
`hang` forwards the request (so Label Studio does the work) and holds the reply back `seconds` before sending it:
what a worker sees when it dies, or times out, after Label Studio already acted.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass
class Rule:
    """One fault: what it matches, what it does, how many more times."""

    method: str
    path: str
    action: str  # "fail" or "hang"
    times: int = 1
    seconds: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class FaultProxy:
    """Forwards everything to `upstream`, applying the rules in order; `calls` logs (method, path, status)."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.times -= 1
                    rule.hits += 1
                    return rule
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy._take(self.command, self.path)
                if rule is not None and rule.action == "fail":
                    self._send(502, b'{"detail": "injected fault"}', {"Content-Type": "application/json"})
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                reply = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                         timeout=300, allow_redirects=False)
                if rule is not None and rule.action == "hang":
                    time.sleep(rule.seconds)
                out = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP}
                self._send(reply.status_code, reply.content, out)

            def _send(self, status: int, content: bytes, headers: dict[str, str]) -> None:
                proxy.calls.append((self.command, self.path, status))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out, or was killed) while we held the reply

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
