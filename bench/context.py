"""The bench context: its database, queue namespace, client runtime and workers, set up
and torn down as one; the probe's per-node breakdown; the metrics scraper."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import BenchError, cpu_snapshot, wait_execution
from spane.statuses import EXECUTION_TERMINAL
from tests import faults
from tests.faults import client_runtime
from tests.services import (
    AMQP_PORT,
    AMQP_URL,
    HOST,
    PG_PORT,
    REDIS_PORT,
    REDIS_URL,
    Poller,
    delete_rabbit_queues,
    free_port,
    private_database,
    private_namespace,
    reachable,
)
from tests.workers import WorkerPool, WorkerProcess


@dataclass
class Bench:
    args: argparse.Namespace
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spane-bench-")))
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    db_name: str = ""
    namespace: str = ""
    rt: Any = None
    workers: WorkerProcess | None = None
    metrics_port: int = 0

    @property
    def broker_url(self) -> str:
        return REDIS_URL if self.args.broker == "redis" else AMQP_URL

    def setup(self) -> None:
        """Database, namespace, client runtime, workers: each undone by ``teardown``."""
        import spane  # noqa: F401  (registers the built-in node types)
        from spane.settings import Settings

        if not reachable(PG_PORT):
            raise BenchError(f"PostgreSQL is not listening on {HOST}:{PG_PORT}")
        if not reachable(REDIS_PORT if self.args.broker == "redis" else AMQP_PORT):
            raise BenchError(f"the {self.args.broker} broker is not listening on {HOST}")
        self.stack.callback(self._remove_folder)
        database_url = self.stack.enter_context(private_database("spane_bench"))
        self.db_name = database_url.rsplit("/", 1)[1]
        self.namespace = self.stack.enter_context(private_namespace("spanebench"))
        if self.args.broker == "rabbitmq":
            self.stack.callback(self._delete_rabbit_queues)
        settings = Settings(
            broker_url=self.broker_url,
            database_url=database_url,
            blob_url=str(self.folder / "blobs"),
            namespace=self.namespace,
            log_format="json",
            log_level="warning",
        )
        # The workers log at the default level, as the results so far were measured.
        modules, env = [], {"SPANE_DRAIN_SECONDS": "5", "SPANE_LOG_LEVEL": "info"}
        if self.args.traces:
            settings = settings.with_(traces_exporters=("console",), traces_file=self.args.traces)
            env.update(OTEL_TRACES_EXPORTER="console", SPANE_TRACES_FILE=self.args.traces)
        self.rt = self.stack.enter_context(client_runtime(settings))
        if self.args.metrics:
            self.metrics_port = free_port()
            env.update(
                SPANE_METRICS_PORT=str(self.metrics_port),
                SPANE_METRICS_HOST=HOST,
                SPANE_METRICS_DIR=str(self.folder / "metrics"),
            )
        if self.args.probe:
            modules.append("bench.probe")
            (self.folder / "probe").mkdir()
            env["SPANE_BENCH_PROBE_DIR"] = str(self.folder / "probe")
        pool = self.stack.enter_context(WorkerPool(self.folder))
        self.workers = pool.start(
            settings,
            modules=tuple(modules),
            processes=self.args.processes,
            threads=self.args.threads,
            **env,
        )
        if self.metrics_port:
            self.wait_metrics_endpoint()

    def wait_metrics_endpoint(self, timeout: float = 60.0) -> None:
        """Wait until the metrics endpoint serves, so its start-up is not in the run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/livez", timeout=5):
                    return
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"the metrics endpoint did not answer within {timeout:g}s")

    def teardown(self) -> None:
        """Undo everything setup did, last first: workers, runtime, namespace, database."""
        self.stack.close()

    def _delete_rabbit_queues(self) -> None:
        import pika

        params = pika.URLParameters(AMQP_URL + "?socket_timeout=5&blocked_connection_timeout=5")
        connection = pika.BlockingConnection(params)
        try:
            delete_rabbit_queues(connection.channel(), self.namespace)
        finally:
            connection.close()

    def _remove_folder(self) -> None:
        if self.args.keep_logs:
            print(f"worker log and probe files kept in {self.folder}", file=sys.stderr)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- queries ------------------------------------------------------------------------

    def sql(self, text: str, **params: Any) -> list[Any]:
        return faults.sql(self.rt.engine, text, **params)

    def status_counts(self, workflow_id: str) -> Counter[str]:
        rows = self.sql(
            "SELECT status, count(*) AS n FROM spane_executions WHERE workflow_id = :w "
            "GROUP BY status",
            w=workflow_id,
        )
        return Counter({r.status: r.n for r in rows})

    def wait_all(self, workflow_id: str, count: int, timeout: float) -> float:
        """Poll one count query every 50 ms until ``count`` executions ended; return when."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.status_counts(workflow_id)
            if sum(counts[s] for s in EXECUTION_TERMINAL) >= count:
                return time.time()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{workflow_id}: not finished after {timeout:g}s; statuses {dict(counts)}"
                )
            self.check_workers()
            time.sleep(0.05)

    def wait_one(self, execution_id: str, timeout: float, interval: float) -> str:
        return wait_execution(self.rt.store, execution_id, timeout, interval, self.check_workers)

    def check_workers(self) -> None:
        if self.workers is not None:
            self.workers.check()

    def cpu(self) -> dict[str, float]:
        return cpu_snapshot([self.workers.pid] if self.workers else [])

    # -- probe ------------------------------------------------------------------------------

    def add_probe(self, result: dict[str, Any], before: dict[str, list[float]], name: str) -> None:
        """With ``--probe``: add and print the per-node breakdown since ``before``."""
        if self.args.probe:
            time.sleep(1.2)  # the probe writes its counters every 0.5 s
            result["probe"] = probe_diff(before, self.probe_snapshot())
            print_probe(f"probe, {name}", result["probe"])

    def probe_snapshot(self) -> dict[str, list[float]]:
        """Cumulative probe counters summed over the worker processes."""
        total: dict[str, list[float]] = {}
        folder = self.folder / "probe"
        if not folder.is_dir():
            return total
        for path in folder.glob("probe-*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for name, (count, wall, cpu) in data.items():
                entry = total.setdefault(name, [0, 0.0, 0.0])
                entry[0] += count
                entry[1] += wall
                entry[2] += cpu
        return total


def probe_diff(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, Any]:
    nodes = (
        after.get("executor.run_node (total)", [0])[0]
        - before.get("executor.run_node (total)", [0])[0]
    )
    rows = {}
    for name, (count, wall, cpu) in after.items():
        b = before.get(name, [0, 0.0, 0.0])
        c, w, u = count - b[0], wall - b[1], cpu - b[2]
        if c <= 0 or name == "_process":
            continue
        rows[name] = {
            "calls": int(c),
            "calls_per_node": round(c / nodes, 2) if nodes else None,
            "wall_ms_per_node": round(1000 * w / nodes, 3) if nodes else None,
            "cpu_ms_per_node": round(1000 * u / nodes, 3) if nodes else None,
            "wall_ms_per_call": round(1000 * w / c, 3),
        }
    proc = after.get("_process", [0, 0.0, 0.0])[1] - before.get("_process", [0, 0.0, 0.0])[1]
    return {
        "nodes": int(nodes),
        "worker_process_cpu_ms_per_node": round(1000 * proc / nodes, 3) if nodes else None,
        "calls": dict(sorted(rows.items(), key=lambda kv: -(kv[1]["wall_ms_per_node"] or 0))),
    }


def print_probe(title: str, report: dict[str, Any]) -> None:
    print()
    print(
        f"== {title}: per node message, summed over worker threads "
        f"({report['nodes']} node messages) =="
    )
    print(f"  worker process CPU per node: {report['worker_process_cpu_ms_per_node']} ms")
    print(
        f"  {'call':58} {'calls/node':>10} {'wall ms/node':>13} {'cpu ms/node':>12} "
        f"{'wall ms/call':>13}"
    )
    for name, row in report["calls"].items():
        print(
            f"  {name[:58]:58} {row['calls_per_node']:>10} {row['wall_ms_per_node']:>13} "
            f"{row['cpu_ms_per_node']:>12} {row['wall_ms_per_call']:>13}"
        )
    sys.stdout.flush()


class Scraper(Poller):
    """Scrapes the workers' ``/metrics`` every ``interval`` seconds, as Prometheus would."""

    def __init__(self, port: int, interval: float = 5.0) -> None:
        super().__init__(interval)
        self.url = f"http://{HOST}:{port}/metrics"
        self.scrapes = 0
        self.size = 0

    def poll(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                self.size = len(response.read())
            self.scrapes += 1
        except OSError:
            pass  # the endpoint starts a moment after the workers; try again
