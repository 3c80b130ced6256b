"""Spane throughput and latency benchmark (run by hand, never in CI).

    python bench/bench.py [chain|fanout|latency|all|compare] [--executions 200] [--processes 2]
                          [--threads 8] [--broker redis|rabbitmq] [--probe] [--py-spy DIR]
                          [--traces FILE]
                          [--metrics] [--compare-metrics ROUNDS]

Self-contained: it creates its own PostgreSQL database (``spane_bench_<random>``,
dropped at the end), its own queue namespace (Redis keys / RabbitMQ queues removed at
the end), and its own ``python -m dramatiq spane.actors`` worker processes, which it
stops by process id (SIGTERM, then SIGKILL after a timeout) at the end, also on Ctrl-C
or error. Only 127.0.0.1 is touched, and every wait is bounded.

Scenarios:
  chain    N executions of a 10-node ``noop`` chain, enqueued at once; node and
           execution throughput from first enqueue to last completion.
  fanout   one 1 -> W -> 1 fan-out/fan-in of ``noop`` nodes; median wall time of R runs.
  latency  N sequential executions of a 3-node ``noop`` chain on an idle system; p50/p99
           from just before enqueue to completion (1 ms status polling), and from the
           database timestamps (``created_at`` -> ``finished_at``).

The results print as tables, then as one JSON line (the last line of output).

``--probe`` loads ``bench/probe.py`` into the workers and prints where the time of one
node transition goes (wall and CPU per call, SQL statement by statement).
``--py-spy DIR`` samples every worker process with py-spy during the chain run and
prints the hottest frames (needs ``pip install py-spy`` and ptrace permission).

``--metrics`` has the workers record metrics and serve them (``SPANE_METRICS_PORT``),
scraped every 5 s during the run as Prometheus would. ``--compare-metrics ROUNDS`` runs
the chain scenario ``2 x ROUNDS`` times, each on fresh workers and database, alternating
metrics off and on (off-on, on-off, ...: the machine's noise then falls on both alike),
and prints the median throughput and worker CPU per node of each, and the cost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BenchError,
    cpu_report,
    cpu_rows,
    cpu_snapshot,
    guarded,
    print_table,
    wait_execution,
    worker_children,
)
from spane.statuses import EXECUTION_TERMINAL, ExecutionStatus  # noqa: E402
from tests import faults  # noqa: E402
from tests.faults import client_runtime  # noqa: E402
from tests.services import (  # noqa: E402
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
from tests.workers import WorkerPool, WorkerProcess  # noqa: E402

# -- small helpers ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# -- the bench context: database, namespace, runtime, workers -------------------------------


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


# -- py-spy ----------------------------------------------------------------------------------


class Sampler:
    """py-spy ``record --format raw`` attached to every worker process during a phase."""

    def __init__(self, bench: Bench, folder: Path, label: str) -> None:
        self.bench = bench
        self.folder = folder
        self.label = label
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> Sampler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise BenchError("--py-spy needs py-spy: pip install py-spy")
        self.folder.mkdir(parents=True, exist_ok=True)
        assert self.bench.workers is not None
        for pid in worker_children(self.bench.workers.pid):
            out = self.folder / f"{self.label}-{pid}.txt"
            proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                    *(["--gil"] if self.bench.args.py_spy_gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.procs.append((proc, out))
        time.sleep(1.0)  # let py-spy attach
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def summary(self) -> dict[str, Any]:
        inclusive: Counter[str] = Counter()
        self_time: Counter[str] = Counter()
        total = 0
        for _, path in self.procs:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not count_text.isdigit():
                    continue
                count = int(count_text)
                total += count
                frames = stack.split(";")
                self_time[_short(frames[-1])] += count
                for name in {_short(f) for f in frames}:
                    inclusive[name] += count
        return {
            "mode": "the GIL-holding worker thread (Python CPU)"
            if self.bench.args.py_spy_gil
            else "non-idle worker threads (wall time, waits on sockets included)",
            "samples": total,
            "files": [str(p) for _, p in self.procs],
            "top_self": [(n, round(100 * c / total, 1)) for n, c in self_time.most_common(25)]
            if total
            else [],
            "top_inclusive_spane": [
                (n, round(100 * c / total, 1))
                for n, c in inclusive.most_common(400)
                if "spane/" in n or "bench/" in n
            ][:30]
            if total
            else [],
        }


def _short(frame: str) -> str:
    """``fn (path/to/site-packages/pkg/mod.py:12)`` -> ``fn (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def print_sampler(summary: dict[str, Any]) -> None:
    print()
    print(f"== py-spy: {summary['samples']} samples of {summary['mode']} ==")
    print("  hottest frames (self):")
    for name, pct in summary["top_self"]:
        print(f"    {pct:5.1f}%  {name}")
    print("  spane frames (inclusive):")
    for name, pct in summary["top_inclusive_spane"]:
        print(f"    {pct:5.1f}%  {name}")
    print("  raw stacks: " + ", ".join(summary["files"]))


# -- workflows -------------------------------------------------------------------------------


def chain(workflow_id: str, length: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "type": "noop"}]
    nodes += [{"id": f"n{i}", "type": "noop", "after": [f"n{i - 1}"]} for i in range(1, length)]
    return {"id": workflow_id, "nodes": nodes}


def fanout(workflow_id: str, width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "src", "type": "noop"}]
    nodes += [{"id": f"p{i}", "type": "noop", "after": ["src"]} for i in range(width)]
    nodes.append({"id": "sink", "type": "noop", "after": [f"p{i}" for i in range(width)]})
    return {"id": workflow_id, "nodes": nodes}


# -- scenarios -------------------------------------------------------------------------------


def warm_up(bench: Bench) -> None:
    """A few executions first, so connection pools, caches and imports are warm."""
    import spane

    spane.register_workflow(chain("bench-warmup", 3))
    ids = [spane.enqueue_workflow("bench-warmup", {"i": i}) for i in range(20)]
    bench.wait_all("bench-warmup", len(ids), timeout=60)


def run_chain(bench: Bench) -> dict[str, Any]:
    import spane

    n, length = bench.args.executions, 10
    workflow_id = "bench-chain"
    spane.register_workflow(chain(workflow_id, length))
    probe_before = bench.probe_snapshot()
    sampler = Sampler(bench, Path(bench.args.py_spy), "chain") if bench.args.py_spy else None
    scraper = Scraper(bench.metrics_port) if bench.metrics_port else None
    with sampler or contextlib.nullcontext(), scraper or contextlib.nullcontext():
        cpu_before = bench.cpu()
        first = time.time()
        p0 = time.perf_counter()
        ids = [spane.enqueue_workflow(workflow_id, {"i": i}) for i in range(n)]
        enqueue_s = time.perf_counter() - p0
        detected = bench.wait_all(workflow_id, n, timeout=bench.args.timeout)
        cpu_after = bench.cpu()
    counts = bench.status_counts(workflow_id)
    row = bench.sql(
        "SELECT max(finished_at) AS last FROM spane_executions WHERE workflow_id = :w",
        w=workflow_id,
    )[0]
    elapsed = row.last - first
    nodes = n * length
    result: dict[str, Any] = {
        "executions": n,
        "nodes_per_execution": length,
        "completed": counts[ExecutionStatus.COMPLETED],
        "failed": counts[ExecutionStatus.FAILED] + counts[ExecutionStatus.CANCELLED],
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_per_s": round(n / enqueue_s, 1),
        "elapsed_s": round(elapsed, 3),
        "nodes_per_s": round(nodes / elapsed, 1),
        "executions_per_s": round(n / elapsed, 1),
        "elapsed_to_poll_detect_s": round(detected - first, 3),
        "cpu": cpu_report(cpu_before, cpu_after, detected - first),
    }
    print_table(
        f"chain: {n} executions x {length} noop nodes, all enqueued at once",
        [
            ("completed / failed", f"{result['completed']} / {result['failed']}"),
            ("enqueue (all)", f"{enqueue_s:.3f} s  ({result['enqueue_per_s']:.0f} executions/s)"),
            ("first enqueue -> last completion", f"{elapsed:.3f} s  (DB finished_at)"),
            ("node throughput", f"{result['nodes_per_s']:.0f} nodes/s"),
            ("execution throughput", f"{result['executions_per_s']:.1f} executions/s"),
            ("(poll-detected end)", f"{detected - first:.3f} s"),
            *cpu_rows(result["cpu"]),
        ],
    )
    bench.add_probe(result, probe_before, "chain")
    if sampler is not None:
        result["py_spy"] = sampler.summary()
        print_sampler(result["py_spy"])
    if scraper is not None:
        result["metrics"] = {"scrapes": scraper.scrapes, "last_scrape_bytes": scraper.size}
        print_table("metrics", [("scrapes of /metrics during the run", scraper.scrapes)])
    assert len(ids) == n
    return result


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


def compare_metrics(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate chain runs with metrics off and on; return each run and the medians."""
    runs: dict[str, list[float]] = {"off": [], "on": []}
    #: Worker CPU per node: the machine's other load slows both modes, but hardly this.
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for round_ in range(args.compare_metrics):
        # off-on, then on-off: a drift of the machine's load over time hits both alike.
        for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            one = argparse.Namespace(**vars(args))
            one.metrics = mode == "on"
            bench = Bench(one)
            try:
                bench.setup()
                warm_up(bench)
                chain_result = run_chain(bench)
            finally:
                bench.teardown()
            runs[mode].append(chain_result["nodes_per_s"])
            nodes = chain_result["executions"] * chain_result["nodes_per_execution"]
            cpu[mode].append(1000 * chain_result["cpu"]["workers"]["cpu_s"] / nodes)
            print(
                f"round {round_ + 1}, metrics {mode}: {runs[mode][-1]:.0f} nodes/s, "
                f"{cpu[mode][-1]:.2f} worker CPU ms/node",
                flush=True,
            )
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    result = {
        "runs_nodes_per_s": runs,
        "runs_worker_cpu_ms_per_node": cpu,
        "median_off": off,
        "median_on": on,
        "cost_percent": round(100 * (off - on) / off, 1),
        "cpu_cost_percent": round(100 * (cpu_on - cpu_off) / cpu_off, 1),
    }
    print_table(
        f"metrics cost: chain, {args.compare_metrics} alternating rounds",
        [
            ("metrics off, nodes/s", " ".join(f"{v:.0f}" for v in runs["off"])),
            ("metrics on, nodes/s", " ".join(f"{v:.0f}" for v in runs["on"])),
            ("median off / on", f"{off:.0f} / {on:.0f}"),
            ("throughput cost", f"{result['cost_percent']} %"),
            ("worker CPU ms/node off / on", f"{cpu_off:.2f} / {cpu_on:.2f}"),
            ("worker CPU cost", f"{result['cpu_cost_percent']} %"),
        ],
    )
    return result


def run_fanout(bench: Bench) -> dict[str, Any]:
    import spane

    width, runs = bench.args.fanout_width, bench.args.fanout_runs
    workflow_id = "bench-fanout"
    spane.register_workflow(fanout(workflow_id, width))
    walls, dbs, statuses = [], [], []
    probe_before = bench.probe_snapshot()
    cpu_before = bench.cpu()
    p_all = time.perf_counter()
    for _ in range(runs):
        p0 = time.perf_counter()
        execution_id = spane.enqueue_workflow(workflow_id, {"x": 1})
        status = bench.wait_one(execution_id, timeout=bench.args.timeout, interval=0.005)
        walls.append(time.perf_counter() - p0)
        statuses.append(status)
        row = bench.sql(
            "SELECT created_at, finished_at FROM spane_executions WHERE id = :i", i=execution_id
        )[0]
        dbs.append(row.finished_at - row.created_at)
    cpu_after = bench.cpu()
    nodes = width + 2
    median = statistics.median(walls)
    result = {
        "width": width,
        "nodes": nodes,
        "runs": runs,
        "statuses": statuses,
        "wall_s": [round(w, 3) for w in walls],
        "wall_median_s": round(median, 3),
        "db_median_s": round(statistics.median(dbs), 3),
        "nodes_per_s": round(nodes / median, 1),
        "cpu": cpu_report(cpu_before, cpu_after, time.perf_counter() - p_all),
    }
    print_table(
        f"fanout: 1 -> {width} -> 1 noop nodes, {runs} runs one after another",
        [
            ("statuses", ", ".join(statuses)),
            ("wall times", ", ".join(f"{w:.3f} s" for w in walls)),
            (
                "median wall start -> finish",
                f"{median:.3f} s  ({result['nodes_per_s']:.0f} nodes/s)",
            ),
            ("median DB created_at -> finished_at", f"{result['db_median_s']:.3f} s"),
            *cpu_rows(result["cpu"]),
        ],
    )
    bench.add_probe(result, probe_before, "fanout")
    return result


def run_latency(bench: Bench) -> dict[str, Any]:
    import spane

    n = bench.args.executions
    workflow_id = "bench-latency"
    spane.register_workflow(chain(workflow_id, 3))
    polled, enqueue, before_enqueue = [], [], []
    ids = []
    probe_before = bench.probe_snapshot()
    cpu_before = bench.cpu()
    p_all = time.perf_counter()
    for i in range(n):
        wall0 = time.time()
        p0 = time.perf_counter()
        execution_id = spane.enqueue_workflow(workflow_id, {"i": i})
        p1 = time.perf_counter()
        status = bench.wait_one(execution_id, timeout=30, interval=0.001)
        p2 = time.perf_counter()
        if status != ExecutionStatus.COMPLETED:
            raise BenchError(f"latency execution {execution_id} ended {status}")
        polled.append(p2 - p0)
        enqueue.append(p1 - p0)
        before_enqueue.append(wall0)
        ids.append(execution_id)
    cpu_after = bench.cpu()
    rows = {
        r.id: r
        for r in bench.sql(
            "SELECT id, created_at, finished_at FROM spane_executions WHERE workflow_id = :w",
            w=workflow_id,
        )
    }
    db = [rows[i].finished_at - rows[i].created_at for i in ids]
    db_from_call = [rows[i].finished_at - t for i, t in zip(ids, before_enqueue, strict=True)]
    # Per hop: how long a queued node waits for a worker, and how long a node attempt
    # takes from claim to completion commit (node rows of the same executions).
    node_rows = bench.sql(
        "SELECT n.node_id, n.queued_at, n.started_at, n.finished_at "
        "FROM spane_nodes n JOIN spane_executions e ON e.id = n.execution_id "
        "WHERE e.workflow_id = :w",
        w=workflow_id,
    )
    queue_wait = [r.started_at - r.queued_at for r in node_rows]
    attempt = [r.finished_at - r.started_at for r in node_rows]

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": ms(percentile(values, 50)),
            "p99_ms": ms(percentile(values, 99)),
            "mean_ms": ms(statistics.fmean(values)),
            "max_ms": ms(max(values)),
        }

    result = {
        "executions": n,
        "nodes_per_execution": 3,
        "poll_interval_ms": 1,
        "polled": stats(polled),
        "db_created_to_finished": stats(db),
        "db_before_enqueue_to_finished": stats(db_from_call),
        "enqueue_call": stats(enqueue),
        "node_queue_wait": stats(queue_wait),
        "node_claim_to_complete": stats(attempt),
        "cpu": cpu_report(cpu_before, cpu_after, time.perf_counter() - p_all),
    }

    def line(s: dict[str, float]) -> str:
        return (
            f"p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   "
            f"mean {s['mean_ms']:7.2f} ms   max {s['max_ms']:7.2f} ms"
        )

    print_table(
        f"latency: {n} sequential 3-node noop chains on an idle system",
        [
            ("before enqueue -> seen completed (1 ms poll)", line(result["polled"])),
            ("DB created_at -> finished_at", line(result["db_created_to_finished"])),
            ("before enqueue -> DB finished_at", line(result["db_before_enqueue_to_finished"])),
            ("enqueue_workflow call", line(result["enqueue_call"])),
            ("per node: queued -> claimed", line(result["node_queue_wait"])),
            ("per node: claimed -> completed", line(result["node_claim_to_complete"])),
            *cpu_rows(result["cpu"]),
        ],
    )
    bench.add_probe(result, probe_before, "latency")
    return result


# -- main ------------------------------------------------------------------------------------


def run_peers(bench: Bench) -> dict[str, Any]:
    """The same chain and fan-out shapes on raw Dramatiq and Celery canvas; ratios to Spane."""
    from bench.peers import run_peer

    args = bench.args
    peers = {}
    for name in ("dramatiq", "celery"):
        peers[name] = run_peer(
            name,
            folder=bench.folder,
            processes=args.processes,
            threads=args.threads,
            executions=args.executions,
            length=10,
            width=args.fanout_width,
            runs=args.fanout_runs,
            timeout=args.timeout,
        )
    return peers


def print_comparison(results: dict[str, Any]) -> dict[str, Any]:
    """One table: node/s and seconds per system, CPU ms per node per party, Spane's ratios."""
    spane_row = {
        "system": "spane",
        "chain_nodes_per_s": results["chain"]["nodes_per_s"],
        "chain_cpu": results["chain"]["cpu"],
        "chain_nodes": results["chain"]["executions"] * results["chain"]["nodes_per_execution"],
        "fanout_median_s": results["fanout"]["wall_median_s"],
        "fanout_cpu": results["fanout"]["cpu"],
        "fanout_nodes": results["fanout"]["nodes"] * results["fanout"]["runs"],
    }
    rows = [spane_row, *results["peers"].values()]
    parties = ("workers", "postgres", "redis", "client (bench)")
    print()
    print("== compare: same shapes, same Redis, same run " + "=" * 24)
    header = f"  {'system':<10}{'chain node/s':>14}{'fan-out s':>11}   chain CPU ms/node: "
    print(header + "  ".join(p.split()[0] for p in parties))
    for row in rows:
        cpu = "  ".join(
            f"{1000 * row['chain_cpu'][p]['cpu_s'] / row['chain_nodes']:.2f}" for p in parties
        )
        print(
            f"  {row['system']:<10}{row['chain_nodes_per_s']:>14,.0f}"
            f"{row['fanout_median_s']:>11.3f}   {cpu}"
        )
    ratios: dict[str, Any] = {}
    for peer in results["peers"].values():
        name = peer["system"]
        ratios[name] = {
            "chain_throughput_ratio": round(
                spane_row["chain_nodes_per_s"] / peer["chain_nodes_per_s"], 2
            ),
            "fanout_time_ratio": round(spane_row["fanout_median_s"] / peer["fanout_median_s"], 2),
        }
        print(
            f"  spane / {name}: chain throughput x{ratios[name]['chain_throughput_ratio']:.2f}, "
            f"fan-out time x{ratios[name]['fanout_time_ratio']:.2f} (lower is faster)"
        )
    sys.stdout.flush()
    return ratios


def environment(bench: Bench) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    env: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "spane": version("spane"),
        "dramatiq": version("dramatiq"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
        "redis_py": version("redis"),
        "pika": version("pika"),
        "celery": version("celery"),
        "broker": bench.args.broker,
        "workers": f"{bench.args.processes} processes x {bench.args.threads} threads",
        "database": bench.db_name,
        "namespace": bench.namespace,
        "tracing": f"console exporter to {bench.args.traces}" if bench.args.traces else "off",
    }
    with contextlib.suppress(Exception):
        env["postgresql"] = bench.sql("SHOW server_version")[0][0]
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        env["redis_server"] = client.info("server")["redis_version"]
        client.close()
    # The engine changes under active development: fingerprint the source that ran.
    digest = hashlib.sha256()
    for path in sorted((ROOT / "spane").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    env["spane_source_sha256"] = digest.hexdigest()[:12]
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        env["git_commit"] = commit or "-"
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenario",
        nargs="?",
        default="all",
        choices=("chain", "fanout", "latency", "all", "compare"),
    )
    parser.add_argument(
        "--executions",
        type=int,
        default=200,
        help="executions of the chain and latency scenarios (default 200)",
    )
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--fanout-width", type=int, default=500)
    parser.add_argument("--fanout-runs", type=int, default=3)
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a chain or fan-out run may take before the bench gives up",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="instrument the workers (bench/probe.py); print a per-node breakdown",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        default="",
        help="sample the worker processes with py-spy during the chain run",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (Python CPU), "
        "instead of every non-idle thread (wall time incl. waiting on I/O)",
    )
    parser.add_argument(
        "--traces",
        metavar="FILE",
        default="",
        help="trace the client and the workers with the console exporter, spans appended "
        "to FILE (OTEL_TRACES_EXPORTER=console, SPANE_TRACES_FILE=FILE)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker log folder")
    parser.add_argument(
        "--metrics", action="store_true", help="workers record and serve metrics, scraped every 5 s"
    )
    parser.add_argument(
        "--compare-metrics",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="alternate chain runs with metrics off and on, ROUNDS of each; print the cost",
    )
    args = parser.parse_args(argv)
    for name in ("executions", "processes", "threads", "fanout_width", "fanout_runs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare_metrics:
        found: dict[str, Any] = {}
        code = guarded(lambda: found.update(compare_metrics(args)), lambda: None)
        print(json.dumps({"compare_metrics": found, "exit_code": code}, default=str), flush=True)
        return code
    bench = Bench(args)
    results: dict[str, Any] = {}

    def body() -> None:
        print(
            f"setting up: database, namespace, {args.processes}x{args.threads} workers "
            f"on {args.broker} ...",
            flush=True,
        )
        bench.setup()
        results["environment"] = env = environment(bench)
        print_table("environment", list(env.items()))
        warm_up(bench)
        scenarios = {
            "all": ("chain", "fanout", "latency"),
            "compare": ("chain", "fanout", "peers"),
        }.get(args.scenario, (args.scenario,))
        for name in scenarios:
            runner = {
                "chain": run_chain,
                "fanout": run_fanout,
                "latency": run_latency,
                "peers": run_peers,
            }[name]
            results[name] = runner(bench)

    def worker_log() -> None:
        if bench.workers is not None:
            print(f"--- worker log (tail) ---\n{bench.workers.tail()}", file=sys.stderr)

    code = guarded(body, bench.teardown, worker_log)
    if code == 0 and "peers" in results:
        results["ratios"] = print_comparison(results)
    if code == 0:
        summary = {"target_nodes_per_s": 700}
        if "chain" in results:
            summary["chain_nodes_per_s"] = results["chain"]["nodes_per_s"]
            summary["meets_target"] = results["chain"]["nodes_per_s"] >= 700
        results["summary"] = summary
        print_table("summary", list(summary.items()))
    results["exit_code"] = code
    print(json.dumps(results, default=str), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
