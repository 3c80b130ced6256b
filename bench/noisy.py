"""``python bench/bench.py neighbours``: every noisy-neighbours measurement in one run,
one table (run by hand, never in CI; prints, asserts nothing).

    python bench/bench.py neighbours [--broker both|redis|rabbitmq] [--backlog 50000]
        [--runs 100] [--flood 20000] [--steady 100] [--per-tenant 1500] [--keyed 40]
        [--processes 2] [--threads 8] [--redis-url URL] [--skip-lanes] [--skip-tenants]

On ``--processes`` x ``--threads`` real worker processes, PostgreSQL and Redis (the lanes
also on RabbitMQ), each part on its own database and queue namespace:

- lanes (``bench/neighbours.py``): a high-lane 3-node chain's latency p50/p99, idle and
  behind ``--backlog`` low-lane nodes;
- tenants (``bench/fairness.py``): tenant B's queue wait p50/p99 at a steady rate with
  tenant A idle and with ``--flood`` of A's nodes ready in the same lane; the shares of
  three backlogged tenants weighted 1:1:2; the most attempts of one key in flight under
  ``max: 1``.

Shrink it with ``--backlog 5000 --flood 3000 --runs 30 --per-tenant 1200`` (each
tenant's backlog must exceed the fair depth, 1000, for some of it to wait its turn).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench import fairness, neighbours
from bench.harness import print_table


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py neighbours", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "both"], default="both")
    parser.add_argument("--skip-lanes", action="store_true", help="only the tenant part")
    parser.add_argument("--skip-tenants", action="store_true", help="only the lanes part")
    neighbours.add_common(parser)
    neighbours.add_arguments(parser)
    fairness.add_arguments(parser)
    args = parser.parse_args(argv)
    for name in ("backlog", "runs", "flood", "steady", "per_tenant", "keyed", "processes"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def ratio(loaded: float, idle: float) -> str:
    return f"{loaded / idle:.2f}" if idle else "n/a"


def lane_rows(broker: str, got: dict[str, Any], backlog: int) -> list[tuple[str, str]]:
    idle, loaded = got["idle"], got["backlog"]
    dry = " (ran dry)" if not loaded["backlog_after"] else ""
    return [
        (f"{broker}: high lane p50 / p99, idle", f"{idle['p50_ms']} / {idle['p99_ms']} ms"),
        (
            f"{broker}: high lane p50 / p99, {backlog} low queued",
            f"{loaded['p50_ms']} / {loaded['p99_ms']} ms{dry}",
        ),
        (f"{broker}: p99 backlog / idle (target <= 2)", ratio(loaded["p99_ms"], idle["p99_ms"])),
    ]


def tenant_rows(got: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, str]]:
    idle, busy = got["b_idle"], got["b_flooded"]
    dry = " (ran dry)" if busy["ran_dry"] else ""
    shares = got["shares"]
    off = max(abs(shares[t] - w / 4) / (w / 4) for t, w in fairness.WEIGHTS)
    return [
        ("tenant B wait p50 / p99, A idle", f"{idle['p50_ms']} / {idle['p99_ms']} ms"),
        (
            f"tenant B wait p50 / p99, A {args.flood} ready",
            f"{busy['p50_ms']} / {busy['p99_ms']} ms{dry}",
        ),
        ("p99 flooding / idle (target <= 2)", ratio(busy["p99_ms"], idle["p99_ms"])),
        ("lane throughput while B ran (A flooding)", f"{busy['nodes_per_s']} nodes/s"),
        (
            "shares a / b / c (weights 1:1:2)",
            " / ".join(f"{shares[t]:.3f}" for t, _ in fairness.WEIGHTS)
            + f" (off by {off:.0%} at most; target 20%)",
        ),
        ("per-key limit max 1: most in flight", str(got["key_max"])),
    ]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    brokers = ["redis", "rabbitmq"] if args.broker == "both" else [args.broker]
    results: dict[str, Any] = {}
    rows: list[tuple[str, str]] = []
    if not args.skip_lanes:
        for broker in brokers:
            results[broker] = neighbours.run(broker, args)
            rows += lane_rows(broker, results[broker], args.backlog)
    if not args.skip_tenants:
        results["tenants"] = fairness.run(args)
        rows += tenant_rows(results["tenants"], args)
    print_table(f"noisy neighbours ({args.processes} x {args.threads} worker threads)", rows)
    print(json.dumps({"neighbours": results, "args": vars(args)}, default=str), flush=True)
    return 0
