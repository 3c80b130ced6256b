"""Spane's peers on Spane's benchmark shapes: raw Dramatiq pipelines and Celery canvas.

``bench.py compare`` runs the same chain and fan-out shapes on each peer, on the same
Redis, in the same invocation, and prints Spane's ratio to each. A peer's workers are
started here in their own process group (``tests.workers.launch``) and stopped by process id;
its messages and results live in one Redis database of the bench's own
(``SPANE_BENCH_PEER_DB``, default 11), emptied before and after each peer runs.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import BenchError, cpu_report, cpu_snapshot
from tests.workers import ROOT, WorkerProcess, launch

PEER_DB = int(os.environ.get("SPANE_BENCH_PEER_DB", "11"))
PEER_URL = f"redis://127.0.0.1:6379/{PEER_DB}"


@dataclass(frozen=True)
class Peer:
    """How to start one peer's workers and what they print once ready."""

    name: str
    module: str
    ready_marker: str

    def command(self, queue: str, processes: int, threads: int) -> list[str]:
        if self.name == "celery":
            # Prefork with one process per core: Celery's recommended pool for CPU-bound
            # task overhead; its thread pool is slower here.
            return [
                sys.executable,
                "-m",
                "celery",
                "-A",
                self.module,
                "worker",
                "--pool",
                "prefork",
                "-c",
                str(processes),
                "-Q",
                f"{queue}-celery",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        return [
            sys.executable,
            "-m",
            "dramatiq",
            self.module,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            queue,
        ]


PEERS = {
    "dramatiq": Peer("dramatiq", "bench.peer_dramatiq", "is ready for action"),
    "celery": Peer("celery", "bench.peer_celery", "ready."),
}


def _empty_peer_db() -> None:
    import redis

    client = redis.Redis.from_url(PEER_URL, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def _wait_count(
    client: Any, key: str, target: int, timeout: float, workers: WorkerProcess
) -> float:
    """Poll ``key`` every 2 ms until it reaches ``target``; return when (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = client.get(key)
        if value is not None and int(value) >= target:
            return time.time()
        if time.monotonic() > deadline:
            raise BenchError(f"{key}: {value!r} of {target} after {timeout:g}s")
        workers.check()
        time.sleep(0.002)


def run_peer(
    name: str,
    *,
    folder: Path,
    processes: int,
    threads: int,
    executions: int,
    length: int,
    width: int,
    runs: int,
    timeout: float,
) -> dict[str, Any]:
    """Run the chain and fan-out shapes on one peer; return their numbers."""
    import redis

    peer = PEERS[name]
    queue = f"peer{uuid.uuid4().hex[:8]}"
    os.environ["PEER_REDIS_URL"] = PEER_URL
    os.environ["PEER_QUEUE"] = queue
    _empty_peer_db()
    module = importlib.import_module(peer.module)
    module = importlib.reload(module)  # pick up this run's queue name
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    workers = launch(
        peer.command(queue, processes, threads),
        folder / f"{name}.log",
        env,
        processes=1 if name == "celery" else processes,
        ready_marker=peer.ready_marker,
    )
    client = redis.Redis.from_url(PEER_URL)
    try:
        workers.wait_ready()
        for i in range(20):  # warm-up, not counted
            module.send_chain(f"{queue}:warm", 3)
            if i % 10 == 0:
                module.send_fanout(f"{queue}:warmfan{i}", 10)
        _wait_count(client, f"{queue}:warm", 20, timeout, workers)

        before = cpu_snapshot([workers.pid])
        first = time.time()
        for _ in range(executions):
            module.send_chain(f"{queue}:chain", length)
        last = _wait_count(client, f"{queue}:chain", executions, timeout, workers)
        chain_cpu = cpu_report(before, cpu_snapshot([workers.pid]), last - first)
        chain_s = last - first

        walls = []
        before = cpu_snapshot([workers.pid])
        started = time.time()
        for run in range(runs):
            key = f"{queue}:fan{run}"
            p0 = time.time()
            module.send_fanout(key, width)
            walls.append(_wait_count(client, key, 1, timeout, workers) - p0)
        fan_cpu = cpu_report(before, cpu_snapshot([workers.pid]), time.time() - started)
    finally:
        client.close()
        workers.stop()
        _empty_peer_db()
    nodes = executions * length
    return {
        "system": name,
        "chain_nodes_per_s": round(nodes / chain_s, 1),
        "chain_s": round(chain_s, 3),
        "chain_cpu": chain_cpu,
        "chain_nodes": nodes,
        "fanout_wall_s": [round(w, 3) for w in walls],
        "fanout_median_s": round(statistics.median(walls), 3),
        "fanout_cpu": fan_cpu,
        "fanout_nodes": (width + 2) * runs,
    }
