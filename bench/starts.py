"""Starting work: batch starts against one-by-one starts, and how late schedule ticks
fire (run by hand, never in CI).

    python bench/starts.py [--executions 1000] [--ticks 10]

Like ``bench/faults.py`` it creates its own PostgreSQL database and queue namespace and
removes both at the end, and stops exactly the two ``dramatiq spane.actors`` workers it
started (by process id).

  enqueue   client side only: ``enqueue_workflow`` called N times, then one
            ``enqueue_many`` of N inputs (best of 3 each); 2-node ``noop`` workflow.
  ticks     a 1 s ``every`` schedule on two workers (sweep interval 0.2 s) for T ticks:
            how long after its instant each tick fired (p50, max), doubles and gaps.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import spane  # noqa: E402
from spane.runtime import Runtime  # noqa: E402
from spane.settings import Settings  # noqa: E402
from spane.store.schema import schedule_ticks  # noqa: E402
from tests import faults  # noqa: E402
from tests.services import REDIS_URL, private_database, private_namespace  # noqa: E402
from tests.workers import WorkerPool  # noqa: E402

WORKFLOW = {
    "id": "bench-starts",
    "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "after": ["a"]}],
}


def enqueue(count: int) -> None:
    def one_by_one() -> None:
        for i in range(count):
            spane.enqueue_workflow("bench-starts", {"i": i})

    def batch() -> None:
        spane.enqueue_many("bench-starts", [{"i": i} for i in range(count)])

    for label, run in (
        (f"enqueue_workflow x{count}", one_by_one),
        (f"enqueue_many({count})", batch),
    ):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        best = min(times)
        print(f"{label:28} best of 3: {best * 1000:8.0f} ms  ({count / best:,.0f} starts/s)")


def ticks(rt: Runtime, pool: WorkerPool, count: int) -> None:
    for _ in range(2):
        pool.start(rt.settings, threads=4, SPANE_SWEEP_INTERVAL="0.2")
    spane.schedule("bench-starts", None, every="1s", overlap="allow", schedule_id="bench")
    deadline = time.monotonic() + count + 60
    while len(rt.store.schedule_ticks("bench")) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    spane.pause_schedule("bench")
    with rt.engine.connect() as conn:
        rows = conn.execute(
            schedule_ticks.select().where(schedule_ticks.c.schedule_id == "bench")
        ).all()
    late = sorted(r.fired_at - r.tick_ms / 1000 for r in rows)
    instants = sorted(r.tick_ms for r in rows)
    gaps = sum(1 for a, b in itertools.pairwise(instants) if b - a != 1000)
    print(
        f"{len(rows)} ticks on 2 workers: fired {statistics.median(late) * 1000:.0f} ms "
        f"after the tick (p50), {late[-1] * 1000:.0f} ms (max); gaps {gaps}, "
        f"executions {len({r.execution_id for r in rows})}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=10)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="spane-bench-starts-") as folder,
        private_database("spane_bench_starts") as url,
        private_namespace("spanebenchs") as ns,
    ):
        settings = Settings(
            broker_url=REDIS_URL,
            database_url=url,
            blob_url=str(Path(folder) / "blobs"),
            namespace=ns,
            log_level="warning",
        )
        with faults.client_runtime(settings) as rt, WorkerPool(Path(folder)) as pool:
            spane.register_workflow(WORKFLOW)
            enqueue(args.executions)
            ticks(rt, pool, args.ticks)


if __name__ == "__main__":
    main()
