"""Cost of large payloads with the claim check on and off (run by hand, never in CI).

    python bench/payloads.py [--sizes 10k,100k,1m,10m] [--runs N] [--chain 5]
                             [--processes 1] [--threads 4] [--blobs local|s3]

For each payload size, sequential executions of a ``--chain``-node ``noop`` chain run on
Redis + PostgreSQL in two modes side by side, each with its own workers, queue namespace and
blob location: claim check on (``SPANE_CLAIM_CHECK_BYTES=51200``: values rest in the blob
store, the database holds ``@``-references) and off (threshold and ``SPANE_MAX_PAYLOAD_BYTES``
raised to 2**31-1: values rest inline in the database). Executions of the two modes
alternate, so load from elsewhere on the machine weighs on both alike. Every run uses a
fresh random value (a JSON list of hex strings), so each blob is really written, not found
already stored; the last output of each mode is read back and compared byte for byte.
Reported per mode and size:

  node ms        median over executions of (execution finished_at - first node started_at)
                 / chain length: the whole per-node overhead (the nodes themselves do nothing)
  entry ms       median of execution created -> first node claimed; mostly Dramatiq's idle
                 Redis polling (it backs off up to the worker timeout while queues are empty)
  run ms         median of a node's claim -> completion (reading its input, writing its output)
  wait ms        median of a node's queued -> claimed (transport and scheduling)
  enqueue ms     median client-side ``enqueue_workflow`` (packing the input included)
  redis p50/max  rise of Redis ``used_memory`` at its peak during one execution over its
                 level just before (polled every 5 ms), median and largest over executions;
                 Redis is shared, so other clients on it add noise
  db max         longest stored text: execution input, execution output, node output
  blobs          bytes the mode's blob store holds after the size's runs (cumulative)

Self-contained: its own PostgreSQL database (``spane_payloads_<random>``, dropped at the
end), its own Redis namespaces (keys removed at the end), its own temporary blob folders (or
an in-process moto S3 server with ``--blobs s3``) and its own ``dramatiq spane.actors``
workers, stopped by process id (SIGTERM to their own process group, SIGKILL after 30 s), also
on Ctrl-C or error. Only 127.0.0.1 is touched; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
PG_USER = os.environ.get("SPANE_BENCH_PG_USER", "postgres")
REDIS_URL = f"redis://{HOST}:6379/0"
TERMINAL = ("completed", "failed", "cancelled")
ON, OFF = 51200, 2**31 - 1
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
DEFAULT_RUNS = {"10k": 30, "100k": 30, "1m": 10, "10m": 5}
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class BenchError(Exception):
    """The benchmark could not run or did not finish in time."""


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def make_value(size: int, seed: int) -> list[str]:
    """A random JSON list of hex strings about ``size`` bytes encoded."""
    rng = random.Random(seed)
    width = min(4000, max(16, size // 8))
    count = max(1, round(size / (width + 3)))
    return [rng.randbytes(width // 2).hex() for _ in range(count)]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class PeakMemory:
    """Polls Redis ``used_memory`` in a thread; ``delta`` is the peak over the baseline."""

    def __init__(self) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        self.baseline = self.peak = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            self._stop.wait(0.005)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()

    @property
    def delta(self) -> int:
        return self.peak - self.baseline


@dataclass
class Workers:
    """The ``dramatiq spane.actors`` master this bench started, leading its own group."""

    proc: subprocess.Popen[bytes]
    log: Path
    processes: int

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count("is ready for action") >= self.processes:
                return
            if self.proc.poll() is not None:
                raise BenchError(f"workers exited early:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise BenchError(f"workers not ready after {timeout:g}s:\n{self.output()[-3000:]}")

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"workers exited ({self.proc.returncode}):\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our own process group (by its leader's pid); SIGKILL it after ``timeout``."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)


class Mode:
    """One setting of the claim check: its client runtime and its own workers."""

    def __init__(self, name: str, threshold: int) -> None:
        self.name, self.threshold = name, threshold
        self.settings: Any = None
        self.rt: Any = None
        self.workers: Workers | None = None

    @property
    def workflow_id(self) -> str:
        return f"payload-chain-{self.name}"


class Bench:
    """Database, namespaces, folder, S3 server, client runtimes and workers of one run.

    Both modes run side by side, each with its own queue namespace, blob location and
    workers, and their executions alternate: load from elsewhere on the machine then
    weighs on both alike.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="spane-payloads-"))
        self.db_name = f"spane_payloads_{uuid.uuid4().hex[:10]}"
        self.namespace = f"spanepayloads{uuid.uuid4().hex[:8]}"
        self.db_created = False
        self.s3_server: Any = None
        self.bucket = f"spane-payloads-{uuid.uuid4().hex[:10]}"
        self.env: dict[str, str] = {}
        self.modes = [Mode("on", ON), Mode("off", OFF)]
        self.old_runtime: Any = None

    @property
    def admin_dsn(self) -> str:
        return f"host={HOST} port=5432 user={PG_USER} dbname=postgres connect_timeout=5"

    def setup(self) -> None:
        import psycopg

        from spane import runtime as runtime_module

        if not reachable(5432):
            raise BenchError(f"PostgreSQL is not listening on {HOST}:5432")
        if not reachable(6379):
            raise BenchError(f"Redis is not listening on {HOST}:6379")
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True
        if self.args.blobs == "s3":
            from moto.server import ThreadedMotoServer

            self.s3_server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
            self.s3_server.start()
            host, port = self.s3_server.get_host_and_port()
            self.env = {**FAKE_AWS, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
            os.environ.update(self.env)  # the client runtimes' S3 clients read them
            self.s3().create_bucket(Bucket=self.bucket)
        self.old_runtime = runtime_module.current()
        for mode in self.modes:
            self.start(mode)

    def s3(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"])

    def blob_bytes(self, mode: Mode) -> int:
        if self.args.blobs == "s3":
            prefix = f"{mode.name}/"
            pages = self.s3().get_paginator("list_objects_v2")
            return sum(
                item["Size"]
                for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            )
        root = Path(mode.settings.blob_url)
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

    def start(self, mode: Mode) -> None:
        """Build the mode's client runtime and start its workers."""
        from spane.runtime import Runtime
        from spane.settings import Settings

        blob_url = (
            f"s3://{self.bucket}/{mode.name}"
            if self.args.blobs == "s3"
            else str(self.folder / f"blobs-{mode.name}")
        )
        settings = mode.settings = Settings(
            broker_url=REDIS_URL,
            database_url=f"postgresql+psycopg://{PG_USER}@{HOST}:5432/{self.db_name}",
            blob_url=blob_url,
            namespace=f"{self.namespace}{mode.name}",
            claim_check_bytes=mode.threshold,
            max_payload_bytes=OFF,
            log_format="json",
            log_level="warning",
        )
        mode.rt = Runtime(settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
        env.update(
            SPANE_BROKER_URL=settings.broker_url,
            SPANE_DATABASE_URL=settings.database_url,
            SPANE_BLOB_URL=settings.blob_url,
            SPANE_NAMESPACE=settings.namespace,
            SPANE_CLAIM_CHECK_BYTES=str(settings.claim_check_bytes),
            SPANE_MAX_PAYLOAD_BYTES=str(settings.max_payload_bytes),
            SPANE_DRAIN_SECONDS="5",
            SPANE_LOG_FORMAT="json",
            SPANE_LOG_LEVEL="warning",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            **self.env,
        )
        command = [
            sys.executable,
            "-m",
            "dramatiq",
            "spane.actors",
            "--processes",
            str(self.args.processes),
            "--threads",
            str(self.args.threads),
        ]
        log = self.folder / f"workers-{mode.name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        mode.workers = Workers(proc, log, self.args.processes)
        mode.workers.wait_ready()

    def use(self, mode: Mode) -> Any:
        """Make ``mode``'s runtime the process runtime (what ``spane.*`` calls use)."""
        from spane import runtime as runtime_module

        runtime_module.install(mode.rt)
        return mode.rt

    def teardown(self) -> None:
        """Undo everything setup did, each step on its own (a failure does not stop the rest)."""
        from spane import runtime as runtime_module

        steps: list[Any] = [m.workers.stop for m in self.modes if m.workers is not None]
        steps.append(lambda: runtime_module.install(self.old_runtime))
        steps += [m.rt.close for m in self.modes if m.rt is not None]
        steps += [self._drop_database, self._clean_redis, self._stop_s3]
        for step in steps:
            try:
                step()
            except Exception as exc:  # report and go on cleaning
                print(f"cleanup step failed: {exc!r}", file=sys.stderr)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _drop_database(self) -> None:
        import psycopg

        if self.db_created:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def _clean_redis(self) -> None:
        if not reachable(6379):
            return
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            keys = list(client.scan_iter(f"{self.namespace}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def _stop_s3(self) -> None:
        if self.s3_server is not None:
            self.s3_server.stop()

    def sql(self, query: str, **params: Any) -> list[Any]:
        from sqlalchemy import bindparam, text

        statement = text(query)
        for name, value in params.items():
            if isinstance(value, list):
                statement = statement.bindparams(bindparam(name, expanding=True))
        with self.modes[0].rt.engine.connect() as conn:
            return list(conn.execute(statement, params))

    def wait(self, mode: Mode, execution_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = mode.rt.store.execution_status(execution_id)
            if status in TERMINAL:
                return str(status)
            if time.monotonic() > deadline:
                assert mode.workers is not None
                mode.workers.check()
                raise BenchError(f"execution {execution_id} still {status} after {timeout:g}s")
            time.sleep(0.002)


def chain(workflow_id: str, length: int) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "type": "noop", **({"after": [f"n{i - 1}"]} if i else {})}
        for i in range(length)
    ]
    return {"id": workflow_id, "nodes": nodes}


def warm_up(bench: Bench) -> None:
    import spane

    for mode in bench.modes:
        bench.use(mode)
        spane.register_workflow(chain(mode.workflow_id, bench.args.chain))
        for _ in range(5):  # connections, caches, imports
            bench.wait(mode, spane.enqueue_workflow(mode.workflow_id, [1]), timeout=60)


def run_size(bench: Bench, label: str, size: int, runs: int, seed: int) -> list[dict[str, Any]]:
    """Alternate executions of both modes on the same fresh values; one row per mode."""
    import spane
    from spane import codec

    ids: dict[str, list[str]] = {m.name: [] for m in bench.modes}
    enqueue_ms: dict[str, list[float]] = {m.name: [] for m in bench.modes}
    redis_peaks: dict[str, list[int]] = {m.name: [] for m in bench.modes}
    value: list[str] = []
    for i in range(runs):
        value = make_value(size, seed + i)
        order = bench.modes if i % 2 == 0 else bench.modes[::-1]
        for mode in order:
            bench.use(mode)
            with PeakMemory() as redis_memory:
                start = time.perf_counter()
                execution_id = spane.enqueue_workflow(mode.workflow_id, value)
                enqueue_ms[mode.name].append((time.perf_counter() - start) * 1000)
                status = bench.wait(mode, execution_id, timeout=120)
            if status != "completed":
                raise BenchError(f"{mode.name} {label}: execution {execution_id} ended {status}")
            ids[mode.name].append(execution_id)
            redis_peaks[mode.name].append(redis_memory.delta)
    sent = codec.encode(value)
    rows = []
    for mode in bench.modes:
        # The last execution is read back and compared, byte for byte.
        out = bench.use(mode).store.get_execution(ids[mode.name][-1]).output
        if codec.encode(out) != sent:
            raise BenchError(f"{mode.name} {label}: the output differs from the input")
        executions = bench.sql(
            "SELECT e.created_at, e.finished_at, n.started_at AS entry_started, "
            "length(e.input) AS li, length(e.output) AS lo "
            "FROM spane_executions e JOIN spane_nodes n "
            "ON n.execution_id = e.id AND n.node_id = 'n0' WHERE e.id IN :ids",
            ids=ids[mode.name],
        )
        nodes = bench.sql(
            "SELECT started_at - queued_at AS wait, finished_at - started_at AS run, "
            "length(output) AS lo FROM spane_nodes WHERE execution_id IN :ids",
            ids=ids[mode.name],
        )
        rows.append(
            {
                "claim_check": mode.name,
                "size": label,
                "bytes": len(sent),
                "runs": runs,
                "node_ms": statistics.median(
                    (r.finished_at - r.entry_started) * 1000 / bench.args.chain for r in executions
                ),
                "entry_ms": statistics.median(
                    (r.entry_started - r.created_at) * 1000 for r in executions
                ),
                "run_ms": statistics.median(n.run * 1000 for n in nodes),
                "wait_ms": statistics.median(n.wait * 1000 for n in nodes),
                "enqueue_ms": statistics.median(enqueue_ms[mode.name]),
                "redis_peak_delta_median": int(statistics.median(redis_peaks[mode.name])),
                "redis_peak_delta_max": max(redis_peaks[mode.name]),
                "db_max_execution_input": max(r.li for r in executions),
                "db_max_execution_output": max(r.lo for r in executions),
                "db_max_node_output": max(n.lo for n in nodes),
                "blob_bytes": bench.blob_bytes(mode),
            }
        )
    return rows


def print_results(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'claim check':<11} {'size':>5} {'runs':>4} {'node ms':>8} {'entry ms':>8} {'run ms':>7} "
        f"{'wait ms':>7} {'enqueue ms':>10} {'redis p50':>9} {'redis max':>9} {'db max input':>12} "
        f"{'db max ex out':>13} {'db max node out':>15} {'blobs':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['claim_check']:<11} {r['size']:>5} {r['runs']:>4} {r['node_ms']:>8.2f} "
            f"{r['entry_ms']:>8.1f} "
            f"{r['run_ms']:>7.2f} {r['wait_ms']:>7.2f} {r['enqueue_ms']:>10.2f} "
            f"{human(r['redis_peak_delta_median']):>9} {human(r['redis_peak_delta_max']):>9} "
            f"{r['db_max_execution_input']:>12,} "
            f"{r['db_max_execution_output']:>13,} {r['db_max_node_output']:>15,} "
            f"{human(r['blob_bytes']):>9}"
        )
    print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1m,10m", help="of " + ",".join(SIZES))
    parser.add_argument("--runs", type=int, default=0, help="executions per size (0: default)")
    parser.add_argument("--chain", type=int, default=5, help="nodes in the chain")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--blobs", choices=("local", "s3"), default="local")
    args = parser.parse_args(argv)
    args.size_list = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.size_list if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; use {', '.join(SIZES)}")
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    bench = Bench(args)
    rows: list[dict[str, Any]] = []
    code = 0
    try:
        print(
            f"setting up: database {bench.db_name}, namespace {bench.namespace}, "
            f"{args.blobs} blobs, {args.processes}x{args.threads} workers, "
            f"{args.chain}-node noop chain",
            flush=True,
        )
        bench.setup()
        warm_up(bench)
        for i, label in enumerate(args.size_list):
            runs = args.runs or DEFAULT_RUNS[label]
            print(f"  {label} x {runs} per mode ...", flush=True)
            rows += run_size(bench, label, SIZES[label], runs, seed=1000 * (i + 1))
        rows.sort(key=lambda r: (r["claim_check"] != "on", args.size_list.index(r["size"])))
        print_results(rows)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        code = 130
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        code = 1
    except Exception:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        try:
            bench.teardown()
        finally:
            signal.signal(signal.SIGINT, previous)
    print(json.dumps({"results": rows, "exit_code": code}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
