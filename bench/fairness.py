"""Noisy neighbours: tenant turns in a busy lane and a per-key concurrency limit (run by
hand; prints, asserts nothing).

    python bench/fairness.py [--flood 2000] [--steady 40] [--per-tenant 300] [--keyed 30]

Each scenario runs embedded (in-process broker and worker threads) on a fresh SQLite
database, or on ``--database-url`` (a PostgreSQL URL; each scenario empties nothing, so
give it a fresh database). It prints:

- tenant B's p50/p99 queue wait (queued to started) at a modest rate, with tenant A idle
  and with A's flood of ready nodes waiting in the same lane;
- the throughput shares of three backlogged tenants weighted 1:1:2 while all have work;
- the most attempts of one concurrency key seen running at once under ``max: 1``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import spane  # noqa: E402
from spane import runtime as runtime_module  # noqa: E402
from spane.runtime import Runtime  # noqa: E402
from spane.settings import Settings  # noqa: E402

WEIGHTS = (("a", 1.0), ("b", 1.0), ("c", 2.0))
_lock = threading.Lock()
_in_flight: dict[str, int] = {}
_most: dict[str, int] = {}


@spane.node_type("bench_step")
def bench_step(ctx: spane.NodeContext) -> Any:
    """Sleep ``seconds``, counting how many attempts of the same key run meanwhile."""
    key = str((ctx.input or {}).get("key", ""))
    with _lock:
        _in_flight[key] = _in_flight.get(key, 0) + 1
        _most[key] = max(_most.get(key, 0), _in_flight[key])
    try:
        time.sleep(float(ctx.config.get("seconds", 0.005)))
    finally:
        with _lock:
            _in_flight[key] -= 1
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def runtime(args: argparse.Namespace, **changes: Any) -> Runtime:
    folder = Path(tempfile.mkdtemp(prefix="spane-fairness-"))
    settings = Settings(
        database_url=args.database_url or f"sqlite:///{folder / 'spane.db'}",
        blob_url=str(folder / "blobs"),
        log_level="warning",
        embedded_threads=args.threads,
        fair_queue_depth=args.depth,
    ).with_(**changes)
    rt = Runtime(settings)
    runtime_module.install(rt)
    return rt


def step(workflow_id: str, seconds: float, **fields: Any) -> dict[str, Any]:
    node = {"id": "s", "type": "bench_step", "config": {"seconds": seconds}, **fields}
    return {"id": workflow_id, "nodes": [node]}


def queue_wait(execution_id: str) -> float:
    events = {e.kind: e.at for e in spane.history(execution_id) if e.node_id == "s"}
    return events["started"] - events["queued"]


def wait_all(ids: list[str]) -> None:
    for execution_id in ids:
        spane.wait(execution_id, timeout=600)


def tenant_wait(args: argparse.Namespace, flood: int) -> tuple[float, float]:
    """B's p50 and p99 queue wait, with ``flood`` of A's nodes ready in the same lane."""
    rt = runtime(args)
    try:
        spane.register_workflow(step("work", args.seconds))
        flooded = spane.enqueue_many("work", [{}] * flood, tenant="a") if flood else []
        steady = []
        for _ in range(args.steady):
            steady.append(spane.enqueue_workflow("work", {}, tenant="b"))
            time.sleep(args.gap)
        wait_all(steady)
        waits = [queue_wait(e) for e in steady]
        wait_all(flooded)
        return percentile(waits, 0.5), percentile(waits, 0.99)
    finally:
        rt.close()


def shares(args: argparse.Namespace) -> dict[str, float]:
    """Shares of the releases of three backlogged tenants weighted 1:1:2."""
    rt = runtime(args, tenant_weights=WEIGHTS)
    try:
        spane.register_workflow(step("shares", args.seconds))
        spane.wait(spane.enqueue_workflow("shares", {}), timeout=60)  # the worker is up
        # Every backlog is in place before the worker takes any of it.
        worker = rt._worker
        assert worker is not None
        worker.pause()
        ids = {
            tenant: spane.enqueue_many("shares", [{}] * args.per_tenant, tenant=tenant)
            for tenant, _ in WEIGHTS
        }
        worker.resume()
        wait_all([e for group in ids.values() for e in group])
        started = sorted(
            (e.at, tenant)
            for tenant, group in ids.items()
            for execution_id in group
            for e in spane.history(execution_id)
            if e.kind == "started"
        )
        # While every tenant has work waiting: until the heaviest one would run out.
        window = [
            tenant for _, tenant in started[args.depth : args.depth + args.per_tenant * 4 // 3]
        ]
        return {tenant: window.count(tenant) / len(window) for tenant, _ in WEIGHTS}
    finally:
        rt.close()


def keyed(args: argparse.Namespace) -> int:
    """The most attempts of one key running at once under ``concurrency: {max: 1}``."""
    rt = runtime(args)
    try:
        limit = {"key": "input.key", "max": 1}
        spane.register_workflow(step("keyed", args.seconds * 4, concurrency=limit))
        wait_all([spane.enqueue_workflow("keyed", {"key": "k1"}) for _ in range(args.keyed)])
        return _most.get("k1", 0)
    finally:
        rt.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=2000, help="A's ready nodes")
    parser.add_argument("--steady", type=int, default=40, help="B's executions")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between B's starts")
    parser.add_argument("--per-tenant", type=int, default=300, help="backlog per tenant")
    parser.add_argument("--keyed", type=int, default=30, help="executions on one key")
    parser.add_argument("--seconds", type=float, default=0.005, help="node duration")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--depth", type=int, default=16, help="SPANE_FAIR_QUEUE_DEPTH")
    parser.add_argument("--database-url", default="", help="instead of a fresh SQLite")
    args = parser.parse_args(argv)

    idle = tenant_wait(args, 0)
    busy = tenant_wait(args, args.flood)
    print("tenant B queue wait (ms)      p50      p99")
    print(f"  A idle                 {idle[0] * 1000:8.1f} {idle[1] * 1000:8.1f}")
    print(f"  A flooding ({args.flood:>6})   {busy[0] * 1000:8.1f} {busy[1] * 1000:8.1f}")
    print(f"  p99 ratio              {busy[1] / idle[1] if idle[1] else float('nan'):8.2f}")
    got = shares(args)
    print("shares of 3 backlogged tenants (weights 1:1:2)")
    for tenant, weight in WEIGHTS:
        print(f"  {tenant}: {got[tenant]:.3f} (expected {weight / 4:.3f})")
    print(f"per-key limit max 1: most seen in flight {keyed(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
