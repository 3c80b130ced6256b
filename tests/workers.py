"""Real ``dramatiq spane.actors`` worker subprocesses for integration tests.

Each pool starts and stops only its own processes, by process id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spane.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    """One started worker: its process and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker needs to reach the same services as ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(
        SPANE_BROKER_URL=settings.broker_url,
        SPANE_DATABASE_URL=settings.database_url,
        SPANE_BLOB_URL=settings.blob_url,
        SPANE_NAMESPACE=settings.namespace,
        SPANE_CLAIM_CHECK_BYTES=str(settings.claim_check_bytes),
        SPANE_SWEEP_INTERVAL=str(settings.sweep_interval),
        SPANE_LEASE_SECONDS=str(settings.lease_seconds),
        SPANE_DRAIN_SECONDS=str(settings.drain_seconds),
        SPANE_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerPool:
    """Starts workers and stops exactly the ones it started."""

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
        log = self.folder / f"worker-{len(self.started)}.log"
        command = [
            sys.executable,
            "-m",
            "dramatiq",
            "spane.actors",
            *modules,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ]
        if queues:
            command += ["--queues", *queues]
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=worker_env(settings, **extra_env),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(proc, log)
        self.started.append(worker)
        if wait:
            self.wait_ready(worker, processes)
        return worker

    def wait_ready(self, worker: WorkerProcess, processes: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = worker.output()
            if text.count("is ready for action") >= processes:
                return
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{text}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{worker.output()}")

    def signal(self, worker: WorkerProcess, sig: int) -> None:
        """Send ``sig`` to the worker's process group (its forked children too)."""
        if worker.proc.poll() is None:
            os.killpg(worker.pid, sig)

    def stop(self, worker: WorkerProcess, timeout: float = 30) -> None:
        """SIGTERM the worker and wait; SIGKILL it if it does not stop in time."""
        if worker.proc.poll() is not None:
            return
        self.signal(worker, signal.SIGTERM)
        try:
            worker.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(worker, signal.SIGKILL)
            worker.proc.wait(timeout=10)

    def stop_all(self) -> None:
        for worker in self.started:
            self.stop(worker)
