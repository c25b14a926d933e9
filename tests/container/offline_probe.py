"""Serve from the image inside a network namespace with no interfaces, and probe it from the same namespace.

    unshare --net -- python -m tests.container.offline_probe CONTAINER PORT LOG_PATH REQUEST_JSON COMMAND_JSON

Run by tests/container/test_image.py. The new namespace has only a loopback device, down: it is brought up so the
probe can reach the server, and nothing else exists (no route, no DNS). Prints one JSON object: the interfaces seen
before, the errno of an outbound connect, and the /health and /predict answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.container.podman import Container

OUTSIDE = ("151.101.0.223", 443)  # pypi.org's address: reachable from the host, must not be from here


def outbound_errno() -> int:
    """connect_ex() to an outside address: 0 would mean the namespace has a network."""
    with socket.socket() as probe:
        probe.settimeout(3)
        return probe.connect_ex(OUTSIDE)


def wait_healthy(url: str, timeout: float = 120) -> dict[str, Any]:
    """The /health body once it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            reply = requests.get(url + "/health", timeout=2)
            if reply.status_code == 200:
                body: dict[str, Any] = reply.json()
                return body
        time.sleep(0.5)
    raise TimeoutError(f"{url}/health not 200 after {timeout} s")


def probe(container: str, command: list[str], port: int, log_path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Start command (the image's serve command), query it, stop it; what was seen."""
    interfaces = sorted(name for _, name in socket.if_nameindex())  # of this namespace (/sys shows the host's)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    seen: dict[str, Any] = {"interfaces": interfaces, "outbound_errno": outbound_errno()}
    server = Container("", name=container).start([*command, "--port", str(port)], log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        seen["health"] = wait_healthy(url)
        seen["predict"] = requests.post(url + "/predict", json=request, timeout=30).json()
    finally:
        server.stop()
    return seen


if __name__ == "__main__":
    name, port_text, log_file, request_json, command_json = sys.argv[1:6]
    result = probe(name, json.loads(command_json), int(port_text), Path(log_file), json.loads(request_json))
    sys.stdout.write(json.dumps(result) + "\n")
