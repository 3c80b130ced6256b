"""Noisy neighbours inside a lane, on real workers: tenant turns and a per-key
concurrency limit (run by hand; prints, asserts nothing).

    python bench/fairness.py [--flood 20000] [--steady 100] [--gap 0.02]
                             [--per-tenant 1500] [--keyed 40] [--seconds 0.005]
                             [--processes 2] [--threads 8] [--depth N]

Each scenario gets a fresh PostgreSQL database, Redis namespace and ``--processes`` x
``--threads`` worker processes (``bench.neighbours.services``), all removed at the end.
Times come from the history each node leaves (``spane_events``), whatever process ran it:

- tenant B's p50/p99 queue wait (queued -> started) at a modest rate (one execution every
  ``--gap`` s), with tenant A idle, and with ``--flood`` of A's nodes ready in the same
  lane (queued while the workers were stopped);
- the throughput shares of three tenants weighted 1:1:2 (``SPANE_TENANT_WEIGHTS``), each
  with ``--per-tenant`` nodes queued while the workers were stopped, counted over the
  nodes that waited their turn, while every tenant still had some waiting;
- the most attempts of one concurrency key (``max: 1``) seen running at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import spane  # noqa: E402
from bench.harness import BenchError, percentile  # noqa: E402
from bench.neighbours import services  # noqa: E402
from spane.admission import RELEASE_DEPTH  # noqa: E402
from spane.broker import queue_name, ready_count  # noqa: E402
from spane.runtime import Runtime  # noqa: E402
from tests import faults  # noqa: E402
from tests.admission_nodes import most_at_once  # noqa: E402
from tests.workers import WorkerPool  # noqa: E402

WEIGHTS = (("a", 1.0), ("b", 1.0), ("c", 2.0))
EVENTS = """SELECT e.execution_id, x.tenant, e.kind, e.at FROM spane_events e
    JOIN spane_executions x ON x.id = e.execution_id
    WHERE e.node_id = 's' AND e.kind IN ('queued', 'started', 'completed')"""


def step(workflow_id: str, seconds: float, **fields: Any) -> dict[str, Any]:
    node = {"id": "s", "type": "sleep", "config": {"seconds": seconds}, **fields}
    return {"id": workflow_id, "nodes": [node]}


def events(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Per execution: its tenant and the moment of each kind of event of its node."""
    found: dict[str, dict[str, Any]] = {}
    for execution_id, tenant, kind, at in faults.sql(rt.engine, EVENTS):
        found.setdefault(execution_id, {"tenant": tenant})[kind] = at
    return found


def wait_all(ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    for execution_id in ids:
        left = max(1.0, deadline - time.monotonic())
        if spane.wait(execution_id, timeout=left).status != "completed":
            raise BenchError(f"execution {execution_id} did not complete")


def ready(rt: Runtime, tenant: str) -> int:
    return sum(load.ready for load in rt.store.lane_load(tenant=tenant))


def settled(rt: Runtime) -> None:
    """Wait until the lane's broker queue is kept short by releases in turn: the nodes
    that went straight to the broker before the lane was busy (up to the fair depth)
    have been taken. (Until then a node of another tenant waits behind them.)"""
    queue, deadline = queue_name(rt.settings, "default"), time.monotonic() + 300
    while ready_count(rt.broker, queue) > RELEASE_DEPTH:
        if time.monotonic() > deadline:
            raise BenchError("the lane's queue stayed deep for 300 s")
        time.sleep(0.05)


class Scenario:
    """One scenario's services and ``--processes`` x ``--threads`` workers, with the
    tenant ``weights`` and the fair depth (``--depth``) in the client and the workers."""

    def __init__(self, args: argparse.Namespace, weights: tuple[tuple[str, float], ...] = ()):
        self.args = args
        self.changes: dict[str, Any] = {"tenant_weights": weights}
        self.env = {"SPANE_TENANT_WEIGHTS": ",".join(f"{t}={w:g}" for t, w in weights)}
        if args.depth:
            self.changes["fair_queue_depth"] = args.depth
            self.env["SPANE_FAIR_QUEUE_DEPTH"] = str(args.depth)

    def __enter__(self) -> Scenario:
        self.stack = contextlib.ExitStack()
        folder = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="spane-fair-")))
        self.rt = self.stack.enter_context(
            services("redis", folder, self.args.redis_url, **self.changes)
        )
        self.pool = self.stack.enter_context(WorkerPool(folder))
        return self

    def start(self) -> None:
        size = {"processes": self.args.processes, "threads": self.args.threads}
        self.pool.start(self.rt.settings, **size, **self.env)

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def tenant_wait(args: argparse.Namespace, flood: int) -> dict[str, Any]:
    """B's queue waits at a steady rate, with ``flood`` of A's nodes ready meanwhile."""
    with Scenario(args) as sc:
        spane.register_workflow(step("work", args.seconds))
        if flood:
            for start in range(0, flood, 1000):
                spane.enqueue_many("work", [{}] * min(1000, flood - start), tenant="a")
        sc.start()
        if flood:
            settled(sc.rt)
        steady = []
        for _ in range(args.steady):
            steady.append(spane.enqueue_workflow("work", {}, tenant="b"))
            time.sleep(args.gap)
        wait_all(steady)
        left = ready(sc.rt, "a")
        seen = events(sc.rt)
    waits = [seen[e]["started"] - seen[e]["queued"] for e in steady]
    # The lane's throughput meanwhile: nodes of either tenant ended while B's ran.
    began, ended = seen[steady[0]]["queued"], max(seen[e]["completed"] for e in steady)
    done = sum(1 for x in seen.values() if began <= x.get("completed", 0) <= ended)
    return {
        "p50_ms": round(percentile(waits, 50) * 1000, 1),
        "p99_ms": round(percentile(waits, 99) * 1000, 1),
        "a_ready_after": left,
        "nodes_per_s": round(done / (ended - began)),
        "ran_dry": bool(flood) and left == 0,
    }


def shares(args: argparse.Namespace) -> dict[str, float]:
    """Shares of the starts of three backlogged tenants weighted 1:1:2."""
    with Scenario(args, WEIGHTS) as sc:
        spane.register_workflow(step("shares", args.seconds))
        for tenant, _ in WEIGHTS:
            for start in range(0, args.per_tenant, 1000):
                count = min(1000, args.per_tenant - start)
                spane.enqueue_many("shares", [{}] * count, tenant=tenant)
        # Only the nodes that waited their turn count: the first ones went straight to
        # the broker before the lane was busy.
        query = "SELECT execution_id, tenant FROM spane_admission WHERE kind = 'fair'"
        held = {row[0]: row[1] for row in faults.sql(sc.rt.engine, query)}
        if set(held.values()) != {t for t, _ in WEIGHTS}:
            raise BenchError(
                "some tenant had no node waiting its turn: raise --per-tenant above the "
                "fair depth (SPANE_FAIR_QUEUE_DEPTH, 1000) or lower --depth"
            )
        sc.start()
        deadline = time.monotonic() + 600
        while sum(ready(sc.rt, t) for t, _ in WEIGHTS):
            if time.monotonic() > deadline:
                raise BenchError("the tenants' backlogs did not drain in 600 s")
            time.sleep(0.2)
        seen = events(sc.rt)
    starts = sorted((seen[e]["started"], seen[e]["tenant"]) for e in held if "started" in seen[e])
    # While every tenant still has work waiting: until the first one runs out.
    end = min(max(at for at, t in starts if t == tenant) for tenant, _ in WEIGHTS)
    window = [t for at, t in starts if at < end]
    return {tenant: round(window.count(tenant) / len(window), 3) for tenant, _ in WEIGHTS}


def keyed(args: argparse.Namespace) -> int:
    """The most attempts of one key running at once under ``concurrency: {max: 1}``."""
    with Scenario(args) as sc:
        limit = {"key": "input.key", "max": 1}
        spane.register_workflow(step("keyed", args.seconds * 4, concurrency=limit))
        sc.start()
        ids = [spane.enqueue_workflow("keyed", {"key": "k1"}) for _ in range(args.keyed)]
        wait_all(ids)
        seen = events(sc.rt)
    return most_at_once([(seen[e]["started"], seen[e]["completed"], e, None) for e in ids])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario once; their results."""
    idle, busy = tenant_wait(args, 0), tenant_wait(args, args.flood)
    return {"b_idle": idle, "b_flooded": busy, "shares": shares(args), "key_max": keyed(args)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flood", type=int, default=20_000, help="A's ready nodes")
    parser.add_argument("--steady", type=int, default=100, help="B's executions")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between B's starts")
    parser.add_argument("--per-tenant", type=int, default=1500, help="backlog per tenant")
    parser.add_argument("--keyed", type=int, default=40, help="executions on one key")
    parser.add_argument("--seconds", type=float, default=0.005, help="node duration")
    parser.add_argument("--depth", type=int, default=0, help="SPANE_FAIR_QUEUE_DEPTH")


def main(argv: list[str] | None = None) -> int:
    from bench.neighbours import add_common

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    print(json.dumps({"fairness": run(args), "args": vars(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
