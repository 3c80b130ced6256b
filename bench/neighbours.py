"""Lanes under load: a high-lane workflow's latency, idle and behind a deep low-lane
backlog (run by hand, never in CI; prints, asserts nothing).

    python bench/neighbours.py [--broker redis|rabbitmq|both] [--backlog 50000]
                               [--runs 100] [--processes 2] [--threads 8]
                               [--low-seconds 0.01] [--dedicated]

For each broker, on ``--processes`` (2) ``dramatiq spane.actors tests.nodes`` worker
processes of ``--threads`` (8) threads each:
  idle      ``--runs`` high-lane 3-node ``noop`` chains, one after another, nothing else
            queued: latency p50/p99 from the database (created -> finished) and as the
            client saw it (enqueue -> seen finished, 2 ms polling), and the high nodes'
            queue wait (due -> started).
  backlog   ``--backlog`` single-node low-lane executions (a ``sleep`` of
            ``--low-seconds``) queued while the workers are stopped; once the restarted
            workers' threads are busy with them, the same high-lane runs again. The
            backlog left at the end is printed: if it ran dry, the run says so and its
            numbers do not count.
  dedicated (``--dedicated``) the workers restarted as SPANE_LANES=default,low beside one
            SPANE_LANES=high worker of 1 process x 4 threads, the same runs again behind
            what is left of the backlog.

The target (issue 13, SPEC §7): backlog p99 <= 2 x idle p99; a high-lane node waits for
at most one node already in flight. Numbers from a busy machine say nothing: the CPU
table shows how busy it was.

Self-contained: its own PostgreSQL database (dropped at the end), its own queue namespace
(Redis keys and RabbitMQ queues removed at the end), its own worker processes, stopped
by process id at the end, also on Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import spane  # noqa: E402
import tests.nodes  # noqa: E402, F401  (registers sleep in this client)
from bench.harness import BenchError, cpu_report, cpu_rows, cpu_snapshot, percentile  # noqa: E402
from spane.runtime import Runtime  # noqa: E402
from spane.settings import Settings  # noqa: E402
from tests import faults  # noqa: E402
from tests.services import (  # noqa: E402
    AMQP_URL,
    REDIS_URL,
    delete_rabbit_queues,
    private_database,
    private_namespace,
)
from tests.workers import WorkerPool, WorkerProcess  # noqa: E402

HIGH = {
    "id": "neighbours-high",
    "nodes": [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "noop", "after": ["a"]},
        {"id": "c", "type": "noop", "after": ["b"]},
    ],
}
TERMINAL = ("completed", "failed", "cancelled")


def low(seconds: float) -> dict[str, Any]:
    return {
        "id": "neighbours-low",
        "nodes": [{"id": "work", "type": "sleep", "config": {"seconds": seconds}}],
    }


def ms(values: list[float], q: int) -> float:
    """The q-th percentile of ``values`` (seconds) in milliseconds."""
    return round(percentile(values, q) * 1000, 1)


@dataclass
class Phase:
    name: str
    database: list[float]
    client: list[float]
    queue_wait: list[float]
    backlog_before: int
    backlog_after: int
    cpu: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "p50_ms": ms(self.database, 50),
            "p99_ms": ms(self.database, 99),
            "client_p50_ms": ms(self.client, 50),
            "client_p99_ms": ms(self.client, 99),
            "queue_wait_p50_ms": ms(self.queue_wait, 50),
            "queue_wait_p99_ms": ms(self.queue_wait, 99),
            "backlog_before": self.backlog_before,
            "backlog_after": self.backlog_after,
        }

    def rows(self) -> list[tuple[str, str]]:
        s = self.summary()
        rows = [
            ("latency p50 / p99 (database)", f"{s['p50_ms']} / {s['p99_ms']} ms"),
            ("latency p50 / p99 (client)", f"{s['client_p50_ms']} / {s['client_p99_ms']} ms"),
            (
                "high node queue wait p50 / p99",
                f"{s['queue_wait_p50_ms']} / {s['queue_wait_p99_ms']} ms",
            ),
        ]
        if self.backlog_before:
            ran_dry = " (ran dry: not under load)" if self.backlog_after == 0 else ""
            backlog = f"{self.backlog_before} -> {self.backlog_after}{ran_dry}"
            rows.append(("low-lane backlog ready", backlog))
        return rows + [(k, str(v)) for k, v in cpu_rows(self.cpu)]


def backlog(rt: Runtime) -> int:
    return sum(load.ready for load in rt.store.lane_load() if load.lane == "low")


def busy_threads(rt: Runtime) -> int:
    return sum(load.in_flight for load in rt.store.lane_load() if load.lane == "low")


def measure(name: str, rt: Runtime, pool: WorkerPool, runs: int) -> Phase:
    """Run ``runs`` high-lane chains one after another; time each."""
    before, started = backlog(rt), time.monotonic()
    cpu = cpu_snapshot([w.pid for w in pool.started])
    database_s, client_s, waits = [], [], []
    for i in range(runs):
        sent = time.time()
        execution_id = spane.enqueue_workflow("neighbours-high", i, priority="high")
        deadline = time.monotonic() + 60
        while rt.store.execution_status(execution_id) not in TERMINAL:
            if time.monotonic() > deadline:
                raise BenchError(f"high-lane execution {execution_id} not done after 60 s")
            time.sleep(0.002)
        client_s.append(time.time() - sent)
        ex = spane.get_execution(execution_id)
        if ex.status != "completed" or ex.finished_at is None:
            raise BenchError(f"high-lane execution {execution_id} ended {ex.status}")
        database_s.append(ex.finished_at - ex.created_at)
        for node in ex.nodes.values():
            if node.queued_at is not None and node.started_at is not None:
                waits.append(max(0.0, node.started_at - node.queued_at))
        time.sleep(0.02)  # runs apart, as sporadic urgent work arrives
    wall = time.monotonic() - started
    after = cpu_snapshot([w.pid for w in pool.started])
    return Phase(
        name, database_s, client_s, waits, before, backlog(rt), cpu_report(cpu, after, wall)
    )


def flood(rt: Runtime, count: int) -> None:
    """Enqueue ``count`` single-node low-lane executions, a thousand per transaction."""
    for start in range(0, count, 1000):
        inputs = list(range(start, min(count, start + 1000)))
        spane.enqueue_many("neighbours-low", inputs, priority="low")


def wait_busy(rt: Runtime, threads: int) -> None:
    """Wait until at least half of the workers' ``threads`` run low-lane nodes (the rest
    are between two nodes: claiming, recording, fetching)."""
    deadline = time.monotonic() + 120
    while busy_threads(rt) < max(1, threads // 2):
        if time.monotonic() > deadline or backlog(rt) == 0:
            raise BenchError(f"the low-lane backlog never kept {threads} threads busy")
        time.sleep(0.05)


@contextlib.contextmanager
def services(
    broker: str, folder: Path, redis_url: str = REDIS_URL, **changes: Any
) -> Iterator[Runtime]:
    """A database, a queue namespace and a client runtime (its settings with ``changes``),
    removed afterwards."""
    url = redis_url if broker == "redis" else AMQP_URL
    with (
        private_database("spane_bench_neighbours") as db,
        private_namespace("spanebenchn", redis_url) as ns,
    ):
        settings = Settings(
            broker_url=url,
            database_url=db,
            blob_url=str(folder / "blobs"),
            namespace=ns,
            log_level="warning",
        ).with_(**changes)
        with faults.client_runtime(settings) as rt:
            try:
                yield rt
            finally:
                if broker == "rabbitmq":
                    delete_rabbit_queues(rt.broker.channel, ns)  # type: ignore[attr-defined]


def run(broker: str, args: argparse.Namespace) -> dict[str, Any]:
    threads = args.processes * args.threads
    with (
        tempfile.TemporaryDirectory(prefix="spane-neighbours-") as folder,
        services(broker, Path(folder), args.redis_url) as rt,
        WorkerPool(Path(folder)) as pool,
    ):
        spane.register_workflow(HIGH)
        spane.register_workflow(low(args.low_seconds))

        def shared(lanes: str = "") -> WorkerProcess:
            """The 2 x 8 workers, of every lane unless ``lanes`` names some."""
            size = {"processes": args.processes, "threads": args.threads}
            if lanes:
                return pool.start(rt.settings, **size, SPANE_LANES=lanes)
            return pool.start(rt.settings, **size)

        workers = shared()
        measure("warm-up", rt, pool, 5)
        phases = [measure("idle", rt, pool, args.runs)]
        # The whole backlog is queued before any worker takes from it, so it is as deep
        # as asked however fast the workers would have drained it while it was sent.
        pool.stop(workers)
        flood(rt, args.backlog)
        workers = shared()
        wait_busy(rt, threads)
        measure("warm-up", rt, pool, 5)
        phases.append(measure("backlog", rt, pool, args.runs))
        if args.dedicated:
            pool.stop(workers)
            shared("default,low")
            pool.start(rt.settings, processes=1, threads=4, SPANE_LANES="high")
            wait_busy(rt, threads)
            measure("warm-up", rt, pool, 5)
            phases.append(measure("dedicated", rt, pool, args.runs))
    for phase in phases:
        print(f"\n== {broker}: {phase.name}")
        for label, value in phase.rows():
            print(f"  {label:34} {value}")
    results = {phase.name: phase.summary() for phase in phases}
    idle, loaded = results["idle"]["p99_ms"], results["backlog"]["p99_ms"]
    dry = (
        " (the backlog ran dry: raise --backlog)" if not results["backlog"]["backlog_after"] else ""
    )
    print(f"  backlog p99 / idle p99: {loaded / idle:.2f} (target <= 2){dry}")
    return results


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options every noisy-neighbours scenario shares: the workers and Redis."""
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--redis-url", default=REDIS_URL, help="Redis (and its database)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backlog", type=int, default=50_000, help="low-lane nodes queued")
    parser.add_argument("--runs", type=int, default=100, help="high-lane chains per phase")
    parser.add_argument("--low-seconds", type=float, default=0.01, help="low-lane node time")
    parser.add_argument("--dedicated", action="store_true", help="also a high-lane worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "both"], default="both")
    add_common(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    brokers = ["redis", "rabbitmq"] if args.broker == "both" else [args.broker]
    results = {broker: run(broker, args) for broker in brokers}
    print(json.dumps({"neighbours": results, "args": vars(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
