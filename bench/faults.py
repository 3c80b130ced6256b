"""Spane fault-recovery benchmark (run by hand, never in CI).

    python bench/faults.py [kill|flush|pgkill|all|backlog] [--executions 50] [--length 4]
                           [--seconds 0.3] [--threads 8] [--lease S] [--sweep S]
                           [--backlog 5000]

Runs at Spane's default settings (lease and sweep interval) unless ``--lease`` or
``--sweep`` say otherwise.

Scenarios (each on two ``python -m dramatiq spane.actors tests.nodes`` workers):
  kill   N executions of a chain of ``slow_add`` nodes; once half the nodes ran and the
         first worker certainly holds running attempts, it gets SIGKILL (its whole process
         group). Its attempts are recovered when their lease runs out.
  flush  N executions of ``slow_add -> delay 1s -> slow_add -> slow_add`` on a private
         ``redis-server``; while timers are parked and node messages queued, the private
         Redis is flushed (FLUSHALL). Lost messages are sent again after their lease,
         timers fire from the database.
  backlog (not a fault; not in ``all``) ``--backlog`` single-node executions queued at once
         behind two busy workers, so most wait in the broker far longer than the lease;
         prints how many lost-message re-sends recovery made (from the workers' logs:
         every one is a second message for a node that was only waiting) and the
         longest wait. Nothing is lost, so the goal is 0.
  pgkill N executions of the ``kill`` chain; once half the nodes ran, every PostgreSQL
         connection to the benchmark's own database is terminated, five times over a
         second (``pg_terminate_backend``, filtered by database name): claims and
         completions in flight fail on a dead connection and are retried.

For each it prints the time from the fault until every execution completed (from the
database: the latest ``finished_at`` minus the moment of the fault), executions lost
(not completed), nodes completed twice (more than one completion event), how many node
attempts ran more than once (``started`` events per node, minus one, summed), and the
result of the same checks the tests make (every execution completed, every node
finished exactly once, nothing left queued, running or waiting). Before each, a
baseline run without the fault measures from the same moment (``--no-baseline`` skips
it): the difference is what the fault cost. The last line of the output is the results
as one JSON object.

Self-contained: its own PostgreSQL database on 127.0.0.1:5432 (``spane_bench_faults_*``,
dropped at the end), its own queue namespace (its Redis keys removed at the end), a
private ``redis-server`` for the flush scenario, its own worker processes; everything
it started is stopped by process id at the end, also on Ctrl-C or error. Every wait is
bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import spane  # noqa: E402
import tests.nodes  # noqa: E402, F401  (registers slow_add in this client)
from bench.harness import guarded, print_table  # noqa: E402
from spane.runtime import Runtime  # noqa: E402
from spane.settings import Settings  # noqa: E402
from spane.statuses import ExecutionStatus, NodeStatus  # noqa: E402
from tests import faults  # noqa: E402
from tests.services import REDIS_URL, pg_admin_dsn, private_database, private_namespace  # noqa: E402
from tests.workers import WorkerPool, WorkerProcess  # noqa: E402


@dataclass
class Options:
    executions: int
    length: int
    seconds: float
    threads: int
    lease: float | None
    sweep: float | None

    def settings(self, **values: Any) -> Settings:
        """Settings at Spane's defaults, but for what the command line overrides."""
        settings = Settings(**values)
        if self.lease is not None:
            settings = settings.with_(lease_seconds=self.lease)
        if self.sweep is not None:
            settings = settings.with_(sweep_interval=self.sweep)
        return settings


@dataclass
class Result:
    scenario: str
    executions: int
    recovery_s: float
    run_s: float
    repeated_attempts: int
    lease_expired: int
    lost: int
    completed_twice: int
    problems: list[str]

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("executions", str(self.executions)),
            ("fault (or same moment) -> all completed", f"{self.recovery_s:.2f} s"),
            ("executions lost (not completed)", str(self.lost)),
            ("nodes completed twice", str(self.completed_twice)),
            ("whole run (enqueue -> all completed)", f"{self.run_s:.2f} s"),
            ("node attempts that ran more than once", str(self.repeated_attempts)),
            ("attempts superseded by lease expiry", str(self.lease_expired)),
            ("checks", "ok" if not self.problems else f"{len(self.problems)} problem(s)"),
        ]


@contextlib.contextmanager
def scenario(
    options: Options, folder: Path, name: str, redis_url: str = REDIS_URL
) -> Iterator[tuple[Runtime, WorkerPool, str]]:
    """A database, namespace and client runtime of the scenario's own, and a worker pool
    (empty); yields ``(runtime, pool, database URL)`` and undoes all of it afterwards."""
    with (
        private_database("spane_bench_faults") as db,
        private_namespace("spanebenchf", redis_url) as ns,
    ):
        settings = options.settings(
            broker_url=redis_url,
            database_url=db,
            blob_url=str(folder / f"blobs-{name}"),
            namespace=ns,
        )
        with faults.client_runtime(settings) as rt, WorkerPool(folder) as pool:
            yield rt, pool, db


def with_timer(seconds: float) -> dict[str, Any]:
    step = {"type": "slow_add", "config": {"seconds": seconds}}
    return {
        "id": "bench-flush",
        "nodes": [
            {"id": "a", **step},
            {"id": "wait", "type": "delay", "after": ["a"], "config": {"duration": "1s"}},
            {"id": "b", "after": ["wait"], **step},
            {"id": "c", "after": ["b"], **step},
        ],
    }


def measure(
    scenario: str,
    rt: Runtime,
    pool: WorkerPool,
    options: Options,
    workflow: dict[str, Any],
    ready: Callable[[], bool],
    fault: Callable[[WorkerProcess], None] | None,
) -> Result:
    """Start two workers, enqueue, wait for ``ready``, inject ``fault``, wait for the end.

    Without a fault (the baseline) the same moment is taken as the reference.
    """
    spane.register_workflow(workflow)
    first = pool.start(rt.settings, threads=options.threads)
    pool.start(rt.settings, threads=options.threads)
    started = time.time()
    for i in range(options.executions):
        spane.enqueue_workflow(workflow["id"], i)
    faults.wait_until(ready, 120, "the moment to inject the fault", interval=0.05)
    fault_at = time.time()
    if fault is not None:
        fault(first)
    try:
        faults.wait_all_ended(rt.engine, options.executions, timeout=300)
    except faults.FaultError as exc:
        print(f"  ! {exc}")
    rt.engine.dispose()  # connections the fault may have cut
    last = float(faults.scalar(rt.engine, "SELECT max(finished_at) FROM spane_executions"))
    done = ", ".join(f"'{k}'" for k in faults.DONE_EVENTS)
    twice = faults.scalar(
        rt.engine,
        "SELECT count(*) FROM (SELECT 1 FROM spane_events WHERE kind IN "
        f"({done}) GROUP BY execution_id, node_id HAVING count(*) > 1) AS t",
    )
    completed = faults.scalar(
        rt.engine,
        "SELECT count(*) FROM spane_executions WHERE status = :s",
        s=ExecutionStatus.COMPLETED,
    )
    return Result(
        scenario=scenario if fault is not None else f"{scenario} (baseline, no fault)",
        executions=options.executions,
        recovery_s=last - fault_at,
        run_s=last - started,
        repeated_attempts=faults.repeated_attempts(rt.engine),
        lease_expired=faults.event_count(rt.engine, "lease_expired"),
        lost=options.executions - int(completed),
        completed_twice=int(twice),
        problems=faults.problems(rt.engine, options.executions),
    )


def run_kill(options: Options, folder: Path, inject: bool) -> Result:
    with scenario(options, folder, "kill") as (rt, pool, _db):
        total = options.executions * options.length

        def ready() -> bool:
            return (
                faults.event_count(rt.engine, "completed") >= total // 2
                and faults.node_count(rt.engine, NodeStatus.RUNNING) > options.threads
            )

        def kill(worker: WorkerProcess) -> None:
            pool.signal(worker, signal.SIGKILL)
            worker.proc.wait(timeout=10)

        workflow = faults.slow_chain("bench-kill", options.length, options.seconds)
        return measure("kill", rt, pool, options, workflow, ready, kill if inject else None)


def run_flush(options: Options, folder: Path, inject: bool) -> Result:
    with (
        faults.private_redis(folder) as redis_url,
        scenario(options, folder, "flush", redis_url) as (rt, pool, _db),
    ):

        def ready() -> bool:
            return (
                faults.node_count(rt.engine, NodeStatus.WAITING) >= 5
                and faults.node_count(rt.engine, NodeStatus.QUEUED) >= 5
            )

        def flush(_: WorkerProcess) -> None:
            faults.flushall(redis_url)

        workflow = with_timer(options.seconds)
        return measure("flush", rt, pool, options, workflow, ready, flush if inject else None)


def terminate_backends(url: str) -> int:
    """Terminate every connection to the database of ``url`` (ours alone), but this one."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def run_pgkill(options: Options, folder: Path, inject: bool) -> Result:
    with scenario(options, folder, "pgkill") as (rt, pool, db):
        total = options.executions * options.length

        def ready() -> bool:
            return faults.event_count(rt.engine, "completed") >= total // 2

        def kill(_: WorkerProcess) -> None:
            killed = 0
            for _round in range(5):
                killed += terminate_backends(db)
                time.sleep(0.2)
            print(f"  terminated {killed} PostgreSQL connections")

        workflow = faults.slow_chain("bench-kill", options.length, options.seconds)
        return measure("pgkill", rt, pool, options, workflow, ready, kill if inject else None)


def run_backlog(options: Options, folder: Path, count: int) -> dict[str, Any]:
    """Queue ``count`` single-node executions at once; count the second messages."""
    with scenario(options, folder, "backlog") as (rt, pool, _db):
        node = {"id": "n", "type": "slow_add", "config": {"seconds": options.seconds}}
        spane.register_workflow({"id": "bench-backlog", "nodes": [node]})
        workers = [pool.start(rt.settings, threads=options.threads) for _ in range(2)]
        started = time.time()
        for i in range(count):
            spane.enqueue_workflow("bench-backlog", i)
        faults.wait_all_ended(rt.engine, count, timeout=1200)
        run_s = time.time() - started
        resent = 0
        for worker in workers:
            for line in worker.output().splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "lost node messages sent again":
                        resent += int(entry["count"])
        return {
            "nodes": count,
            "lease_s": rt.settings.lease_seconds,
            "longest_wait_s": round(
                float(
                    faults.scalar(rt.engine, "SELECT max(started_at - queued_at) FROM spane_nodes")
                ),
                1,
            ),
            "run_s": round(run_s, 1),
            "second_messages": resent,
            "second_message_ratio": resent / count,
            "attempts_run_twice": faults.repeated_attempts(rt.engine),
            "problems": len(faults.problems(rt.engine, count)),
        }


SCENARIOS: dict[str, Callable[[Options, Path, bool], Result]] = {
    "kill": run_kill,
    "flush": run_flush,
    "pgkill": run_pgkill,
}


def print_result(result: Result) -> None:
    print_table(result.scenario, result.rows())
    for line in result.problems[:10]:
        print(f"    ! {line}")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario", nargs="?", default="all", choices=[*SCENARIOS, "all", "backlog"]
    )
    parser.add_argument("--backlog", type=int, default=5000, help="nodes queued (backlog)")
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--length", type=int, default=4, help="nodes per chain (kill)")
    parser.add_argument("--seconds", type=float, default=0.3, help="sleep of each node")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--lease", type=float, default=None, help="SPANE_LEASE_SECONDS")
    parser.add_argument("--sweep", type=float, default=None, help="SPANE_SWEEP_INTERVAL")
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the run without a fault (measured from the same moment) before each",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        executions=args.executions,
        length=args.length,
        seconds=args.seconds,
        threads=args.threads,
        lease=args.lease,
        sweep=args.sweep,
    )
    folder = Path(tempfile.mkdtemp(prefix="spane-bench-faults-"))
    if args.scenario == "backlog":
        found: dict[str, Any] = {}

        def backlog() -> None:
            found.update(run_backlog(options, folder, args.backlog))
            print_table("backlog", list(found.items()))

        code = guarded(backlog, lambda: shutil.rmtree(folder, ignore_errors=True))
        print(json.dumps({**found, "exit_code": code}))
        return code or (1 if found["problems"] or found["second_messages"] else 0)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    shown = options.settings()
    print(
        f"fault benchmark: {options.executions} executions, 2 workers x {options.threads} "
        f"threads, nodes sleep {options.seconds:g} s, lease {shown.lease_seconds:g} s, "
        f"sweep every {shown.sweep_interval:g} s"
        + ("" if options.lease is None and options.sweep is None else " (not the defaults)")
    )
    results: list[Result] = []

    def body() -> None:
        for name in names:
            for inject in (False, True) if args.baseline else (True,):
                where = folder / f"{name}-{'fault' if inject else 'baseline'}"
                where.mkdir()
                result = SCENARIOS[name](options, where, inject)
                print_result(result)
                results.append(result)

    code = guarded(body, lambda: shutil.rmtree(folder, ignore_errors=True))
    print(
        json.dumps(
            {
                r.scenario: {
                    "executions": r.executions,
                    "recovery_s": round(r.recovery_s, 3),
                    "run_s": round(r.run_s, 3),
                    "repeated_attempts": r.repeated_attempts,
                    "lease_expired": r.lease_expired,
                    "lost": r.lost,
                    "completed_twice": r.completed_twice,
                    "problems": len(r.problems),
                }
                for r in results
            }
        )
    )
    return code or (1 if any(r.problems for r in results) else 0)


if __name__ == "__main__":
    sys.exit(main())
