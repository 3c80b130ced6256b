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
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import BenchError, guarded, wait_execution  # noqa: E402
from bench.scenarios import chain  # noqa: E402
from spane.statuses import ExecutionStatus  # noqa: E402
from tests import faults  # noqa: E402
from tests.s3server import FAKE_CREDENTIALS, moto_server, s3_client  # noqa: E402
from tests.services import (  # noqa: E402
    HOST,
    PG_PORT,
    REDIS_PORT,
    REDIS_URL,
    PeakMemory,
    private_database,
    private_namespace,
    reachable,
)
from tests.workers import WorkerPool, WorkerProcess  # noqa: E402

ON, OFF = 51200, 2**31 - 1
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
DEFAULT_RUNS = {"10k": 30, "100k": 30, "1m": 10, "10m": 5}


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


class Mode:
    """One setting of the claim check: its client runtime and its own workers."""

    def __init__(self, name: str, threshold: int) -> None:
        self.name, self.threshold = name, threshold
        self.settings: Any = None
        self.rt: Any = None
        self.workers: WorkerProcess | None = None

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
        self.stack = contextlib.ExitStack()
        self.database_url = self.namespace = ""
        self.bucket = f"spane-payloads-{uuid.uuid4().hex[:10]}"
        self.env: dict[str, str] = {}
        self.modes = [Mode("on", ON), Mode("off", OFF)]

    def setup(self) -> None:
        from spane import runtime as runtime_module

        if not reachable(PG_PORT):
            raise BenchError(f"PostgreSQL is not listening on {HOST}:{PG_PORT}")
        if not reachable(REDIS_PORT):
            raise BenchError(f"Redis is not listening on {HOST}:{REDIS_PORT}")
        self.stack.callback(shutil.rmtree, self.folder, ignore_errors=True)
        self.database_url = self.stack.enter_context(private_database("spane_payloads"))
        self.namespace = self.stack.enter_context(private_namespace("spanepayloads"))
        if self.args.blobs == "s3":
            endpoint = self.stack.enter_context(moto_server())
            self.env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
            os.environ.update(self.env)  # the client runtimes' S3 clients read them
            s3_client(endpoint).create_bucket(Bucket=self.bucket)
        self.stack.callback(runtime_module.install, runtime_module.current())
        pool = self.stack.enter_context(WorkerPool(self.folder))
        for mode in self.modes:
            self.start(mode, pool)

    def blob_bytes(self, mode: Mode) -> int:
        if self.args.blobs == "s3":
            prefix = f"{mode.name}/"
            pages = s3_client(self.env["AWS_ENDPOINT_URL"]).get_paginator("list_objects_v2")
            return sum(
                item["Size"]
                for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            )
        root = Path(mode.settings.blob_url)
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

    def start(self, mode: Mode, pool: WorkerPool) -> None:
        """Build the mode's client runtime and start its workers."""
        from spane.runtime import Runtime
        from spane.settings import Settings

        blob_url = (
            f"s3://{self.bucket}/{mode.name}"
            if self.args.blobs == "s3"
            else str(self.folder / f"blobs-{mode.name}")
        )
        mode.settings = Settings(
            broker_url=REDIS_URL,
            database_url=self.database_url,
            blob_url=blob_url,
            namespace=f"{self.namespace}{mode.name}",
            claim_check_bytes=mode.threshold,
            max_payload_bytes=OFF,
            log_format="json",
            log_level="warning",
        )
        mode.rt = Runtime(mode.settings)
        self.stack.callback(mode.rt.close)
        mode.workers = pool.start(
            mode.settings,
            modules=(),
            processes=self.args.processes,
            threads=self.args.threads,
            SPANE_DRAIN_SECONDS="5",
            **self.env,
        )

    def use(self, mode: Mode) -> Any:
        """Make ``mode``'s runtime the process runtime (what ``spane.*`` calls use)."""
        from spane import runtime as runtime_module

        runtime_module.install(mode.rt)
        return mode.rt

    def teardown(self) -> None:
        """Undo everything setup did, last first."""
        self.stack.close()

    def sql(self, query: str, **params: Any) -> list[Any]:
        return faults.sql(self.modes[0].rt.engine, query, **params)

    def wait(self, mode: Mode, execution_id: str, timeout: float) -> str:
        assert mode.workers is not None
        return wait_execution(mode.rt.store, execution_id, timeout, 0.002, mode.workers.check)


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
            with PeakMemory(interval=0.005) as redis_memory:
                start = time.perf_counter()
                execution_id = spane.enqueue_workflow(mode.workflow_id, value)
                enqueue_ms[mode.name].append((time.perf_counter() - start) * 1000)
                status = bench.wait(mode, execution_id, timeout=120)
            if status != ExecutionStatus.COMPLETED:
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    rows: list[dict[str, Any]] = []

    def body() -> None:
        print(
            f"setting up: database, namespaces, {args.blobs} blobs, "
            f"{args.processes}x{args.threads} workers, {args.chain}-node noop chain",
            flush=True,
        )
        bench.setup()
        warm_up(bench)
        for i, label in enumerate(args.size_list):
            runs = args.runs or DEFAULT_RUNS[label]
            print(f"  {label} x {runs} per mode ...", flush=True)
            rows.extend(run_size(bench, label, SIZES[label], runs, seed=1000 * (i + 1)))
        rows.sort(key=lambda r: (r["claim_check"] != "on", args.size_list.index(r["size"])))
        print_results(rows)

    code = guarded(body, bench.teardown)
    print(json.dumps({"results": rows, "exit_code": code}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
