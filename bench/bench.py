"""Spane throughput and latency benchmark (run by hand, never in CI).

    python bench/bench.py neighbours [options: see bench/noisy.py]
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

  neighbours  lanes under a deep backlog, tenant turns and a per-key limit, on real
           workers (``bench/noisy.py``: its own options and table).

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
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.compare import compare_metrics, environment, print_comparison, run_peers  # noqa: E402
from bench.context import Bench  # noqa: E402
from bench.harness import (  # noqa: E402
    guarded,
    print_table,
)
from bench.scenarios import run_chain, run_fanout, run_latency, warm_up  # noqa: E402


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["neighbours"]:
        from bench import noisy

        return noisy.main(argv[1:])
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
