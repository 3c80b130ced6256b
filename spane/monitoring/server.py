"""The HTTP endpoint of a ``dramatiq`` run: ``/metrics``, ``/livez``, ``/readyz``.

Runs in its own process, which Dramatiq forks beside the worker processes because
the ``Metrics`` middleware names ``serve`` in its ``forks``. It receives SIGTERM with
the workers: from then on ``/readyz`` answers 503 while the workers drain, and the
process keeps serving until Dramatiq's main process ends it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ..middleware.metric_files import remove_stale, run_folder
from ..services import Services
from ..settings import Settings, from_env
from .health import Verdict, liveness, readiness
from .state import StateCollector

log = structlog.get_logger("spane.metrics")

#: Repeats of one SIGTERM (a process group signalled, then the main process
#: forwarding it) arrive within this many seconds; a later one means "exit now".
_REPEAT = 0.5


class Endpoint:
    """What the three paths answer.

    Args:
        runtime: The database and broker to report on and to check.
        folder: The run's metric folder, written by the worker processes.
    """

    def __init__(self, runtime: Services, folder: Path) -> None:
        self.runtime = runtime
        self.folder = folder
        self.state = StateCollector(runtime)
        self.draining = threading.Event()

    def metrics(self) -> bytes:
        """Every worker process's metrics, merged, then the cluster state gauges."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.folder))  # type: ignore[no-untyped-call]
        registry.register(self.state)
        return generate_latest(registry)

    def livez(self) -> Verdict:
        return liveness(self.folder)

    def readyz(self) -> Verdict:
        return readiness(self.runtime, self.folder, draining=self.draining.is_set())

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """A request handler class bound to this endpoint."""
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, endpoint.metrics())
                elif path in ("/livez", "/readyz"):
                    verdict = endpoint.livez() if path == "/livez" else endpoint.readyz()
                    body = json.dumps({"ok": verdict.ok, "checks": verdict.checks}).encode()
                    self._send(200 if verdict.ok else 503, "application/json", body)
                else:
                    self._send(404, "text/plain", b"try /metrics, /livez or /readyz\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Probes hit every few seconds; their requests are not worth a line."""

        return Handler


def _orphaned(server: ThreadingHTTPServer) -> None:
    """Stop serving if Dramatiq's main process dies without stopping us (SIGKILL)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("the dramatiq main process is gone; metrics endpoint stopping")
    server.shutdown()


def serve(build: Callable[[Settings], Services]) -> int:
    """Serve the run's endpoint on ``SPANE_METRICS_PORT`` until Dramatiq stops us.

    Args:
        build: Builds this process's parts from the settings (without migrating).
    """
    settings = from_env()
    folder = run_folder(settings)
    remove_stale(folder)
    runtime = build(settings)
    endpoint = Endpoint(runtime, folder)
    try:
        server = ThreadingHTTPServer(
            (settings.metrics_host, settings.metrics_port), endpoint.handler()
        )
    except OSError as exc:
        log.error(
            "metrics endpoint not started: port unavailable",
            port=settings.metrics_port,
            error=str(exc),
        )
        return 1
    server.daemon_threads = True
    first: list[float] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if first and now - first[0] > _REPEAT:
            sys.exit(0)
        if not first:
            first.append(now)
            endpoint.draining.set()
            log.info("draining: /readyz now answers 503")

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=_orphaned, args=(server,), name="spane-parent", daemon=True).start()
    log.info("metrics and health endpoint serving", port=settings.metrics_port, folder=str(folder))
    try:
        server.serve_forever()
    finally:
        server.server_close()
        runtime.close()
    return 0
