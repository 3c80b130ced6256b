"""The scenarios of ``bench.py``: chain, fan-out and latency runs on Spane."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench.context import Bench, Scraper
from bench.harness import BenchError, cpu_report, cpu_rows, ms, percentile, print_table
from bench.pyspy import Sampler, print_sampler
from spane.statuses import ExecutionStatus

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
