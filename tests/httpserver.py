"""A small HTTP service on 127.0.0.1 that fails, slows down or answers 429 on demand.

Tests start it in their own process (worker subprocesses call it over real HTTP) and
script its behaviour per path; it records every request it receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Behaviour:
    """What a path answers: ``status`` (with ``retry_after``) for the next ``times``
    requests (-1: every request), after ``delay`` seconds; then 200."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    times: int = -1


@dataclass(frozen=True)
class Seen:
    """One request the service received."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Service:
    """The running service: its base URL, scripted behaviours, and what it received."""

    url: str = ""
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, path: str, **behaviour: Any) -> None:
        with self.lock:
            self.behaviours[path] = Behaviour(**behaviour)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if path is None or s.path.split("?")[0] == path]

    def answer(self, seen: Seen) -> tuple[Behaviour, bool]:
        """Record ``seen``; return the path's behaviour and whether it applies this time."""
        with self.lock:
            self.seen.append(seen)
            behaviour = self.behaviours.get(seen.path.split("?")[0], Behaviour())
            applies = behaviour.times != 0
            if behaviour.times > 0:
                behaviour.times -= 1
            return behaviour, applies


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(time.time(), self.command, self.path, dict(self.headers.items()), body)
            behaviour, applies = service.answer(seen)
            if behaviour.delay:
                time.sleep(behaviour.delay)
            status = behaviour.status if applies else 200
            payload = json.dumps(
                {"path": self.path, "method": self.command, "body": body.decode() or None}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Served-By", "test-service")
            if applies and behaviour.retry_after is not None:
                self.send_header("Retry-After", behaviour.retry_after)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def downstream() -> Iterator[Service]:
    """The service, listening on a free port of 127.0.0.1 until the test ends."""
    state = Service()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
