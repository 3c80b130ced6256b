"""Comparisons: metrics off against on, Spane against its peers; the environment of a run."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.harness import print_table
from bench.scenarios import run_chain, warm_up
from tests.services import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


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
