"""Real worker subprocesses for integration tests and ``bench/``.

Each worker leads its own process group and is stopped by that group's id, so a pool
stops exactly the processes it started (and their children), never anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spane.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: What each ready Dramatiq worker process prints once.
READY = "is ready for action"


class WorkerError(RuntimeError):
    """A worker exited early or was not ready in time."""


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the starting process dies (Linux), so a killed test
    run or benchmark leaves no orphan workers."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class WorkerProcess:
    """One started worker master, leading its own process group, and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path
    #: How many ready markers mean the whole worker serves.
    processes: int = 1
    ready_marker: str = READY

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def check(self) -> None:
        """Raise ``WorkerError`` if the worker has exited."""
        if self.proc.poll() is not None:
            raise WorkerError(f"worker exited (code {self.proc.returncode}):\n{self.tail()}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(self.ready_marker) >= self.processes:
                return
            self.check()
            time.sleep(0.1)
        raise WorkerError(f"worker not ready after {timeout:g}s:\n{self.tail()}")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the worker's process group (its forked children too)."""
        if self.proc.poll() is None:
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the group and wait; SIGKILL it if it does not stop in time.

        Whatever is left in the group afterwards (a child whose master died first) is
        ours and is killed too.
        """
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def launch(
    command: list[str],
    log: Path,
    env: dict[str, str],
    *,
    processes: int = 1,
    ready_marker: str = READY,
) -> WorkerProcess:
    """Start ``command`` from the repository root in a new session, output to ``log``."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return WorkerProcess(proc, log, processes, ready_marker)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker needs to reach the same services as ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(
        SPANE_BROKER_URL=settings.broker_url,
        SPANE_DATABASE_URL=settings.database_url,
        SPANE_BLOB_URL=settings.blob_url,
        SPANE_NAMESPACE=settings.namespace,
        SPANE_CLAIM_CHECK_BYTES=str(settings.claim_check_bytes),
        SPANE_MAX_PAYLOAD_BYTES=str(settings.max_payload_bytes),
        SPANE_SWEEP_INTERVAL=str(settings.sweep_interval),
        SPANE_LEASE_SECONDS=str(settings.lease_seconds),
        SPANE_DRAIN_SECONDS=str(settings.drain_seconds),
        SPANE_LOG_FORMAT="json",
        SPANE_LOG_LEVEL=settings.log_level,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerPool:
    """Starts ``dramatiq spane.actors`` workers and stops exactly the ones it started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[WorkerProcess] = []

    def start(
        self,
        settings: Settings,
        *,
        modules: tuple[str, ...] = ("tests.nodes",),
        processes: int = 1,
        threads: int = 4,
        queues: tuple[str, ...] = (),
        wait: bool = True,
        **extra_env: str,
    ) -> WorkerProcess:
        """Start ``dramatiq spane.actors MODULES`` and wait until it serves."""
        command = [sys.executable, "-m", "dramatiq", "spane.actors", *modules]
        command += ["--processes", str(processes), "--threads", str(threads)]
        if queues:
            command += ["--queues", *queues]
        log = self.folder / f"worker-{len(self.started)}.log"
        worker = launch(command, log, worker_env(settings, **extra_env), processes=processes)
        self.started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def signal(self, worker: WorkerProcess, sig: int) -> None:
        """Send ``sig`` to the worker's process group (its forked children too)."""
        worker.signal(sig)

    def stop(self, worker: WorkerProcess, timeout: float = 30) -> None:
        """SIGTERM the worker and wait; SIGKILL it if it does not stop in time."""
        worker.stop(timeout)

    def stop_all(self) -> None:
        for worker in self.started:
            self.stop(worker)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
