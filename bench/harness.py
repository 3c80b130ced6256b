"""What the benchmarks share beyond the test harness (``tests.workers``, ``tests.services``,
``tests.faults``): CPU accounting per party, worker process groups, a guarded run.

CPU seconds are read from ``/proc`` so each party (workers, PostgreSQL, Redis, RabbitMQ,
the client, the rest of the machine) is counted the same way for Spane and its peers.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/X.py``: make ``tests`` importable
    sys.path.insert(0, str(ROOT))

from spane.statuses import EXECUTION_TERMINAL  # noqa: E402
from tests.faults import FaultError  # noqa: E402
from tests.workers import WorkerError  # noqa: E402


class BenchError(Exception):
    """A benchmark could not run or did not finish in time."""


# -- CPU accounting (from /proc: who burns the CPU during a phase) --------------------------

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_stat(pid: str) -> tuple[str, int, int, float] | None:
    """(comm, ppid, pgrp, cpu seconds) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as source:
            text = source.read()
    except OSError:
        return None
    close = text.rfind(")")
    comm = text[text.find("(") + 1 : close]
    fields = text[close + 2 :].split()
    # fields[0] is state (field 3): ppid is field 4, pgrp 5, utime 14, stime 15.
    return comm, int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / _CLK


def _machine_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as source:
        parts = [int(x) for x in source.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return (total - idle) / _CLK, total / _CLK


def cpu_snapshot(worker_groups: list[int]) -> dict[str, float]:
    """CPU seconds used so far by: our workers, PostgreSQL, Redis, RabbitMQ, this client."""
    totals = {"workers": 0.0, "postgres": 0.0, "redis": 0.0, "rabbitmq": 0.0}
    if not os.path.isdir("/proc"):
        return totals
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        stat = read_stat(pid)
        if stat is None:
            continue
        comm, _ppid, pgrp, cpu = stat
        if pgrp in worker_groups:
            totals["workers"] += cpu
        elif comm == "postgres" or comm.startswith("postgres:"):
            totals["postgres"] += cpu
        elif comm.startswith("redis-server"):
            totals["redis"] += cpu
        elif comm in ("beam.smp", "erl_child_setup"):
            totals["rabbitmq"] += cpu
    times = os.times()
    totals["client (bench)"] = times.user + times.system
    busy, total = _machine_jiffies()
    totals["_machine_busy"] = busy
    totals["_machine_total"] = total
    return totals


def cpu_report(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """CPU seconds per party during a phase, and as a share of one core."""
    out: dict[str, Any] = {}
    for key in before:
        if key.startswith("_"):
            continue
        used = after[key] - before[key]
        out[key] = {"cpu_s": round(used, 2), "cores": round(used / wall, 2) if wall else 0.0}
    busy = after["_machine_busy"] - before["_machine_busy"]
    total = after["_machine_total"] - before["_machine_total"]
    # Whatever the machine did besides the parties above (other users' processes,
    # the kernel): a large value means the numbers are noisy.
    other = busy - sum(v["cpu_s"] for v in out.values())
    out["other (rest of machine)"] = {
        "cpu_s": round(max(0.0, other), 2),
        "cores": round(max(0.0, other) / wall, 2) if wall else 0.0,
    }
    out["machine_busy_pct"] = round(100.0 * busy / total, 1) if total else 0.0
    return out


def cpu_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in report.items():
        if key == "machine_busy_pct":
            rows.append(("machine CPU busy", f"{value:.1f}% of {os.cpu_count()} CPUs"))
        elif value["cpu_s"] > 0.005:
            rows.append((f"CPU {key}", f"{value['cpu_s']:.2f} s  ({value['cores']:.2f} cores)"))
    return rows


# -- worker process groups (started with ``tests.workers``) ----------------------------------


def group_members(group: int) -> list[int]:
    """Pids of the processes in process group ``group``."""
    members = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            stat = read_stat(pid)
            if stat is not None and stat[2] == group:
                members.append(int(pid))
    return members


def worker_children(leader: int) -> list[int]:
    """Pids of the worker processes: the children of the master ``leader`` in its group."""
    found = []
    for pid in group_members(leader):
        stat = read_stat(str(pid))
        if pid != leader and stat is not None and stat[1] == leader:
            found.append(pid)
    return sorted(found)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# -- running a benchmark --------------------------------------------------------------------


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max((len(label) for label, _ in rows), default=10)
    print()
    print(f"== {title} " + "=" * max(0, 70 - len(title)))
    for label, value in rows:
        if isinstance(value, float):
            value = f"{value:,.2f}"
        print(f"  {label.ljust(width)}  {value}")
    sys.stdout.flush()


def wait_execution(
    store: Any, execution_id: str, timeout: float, interval: float, check: Callable[[], None]
) -> str:
    """Poll an execution's status until it ended; ``check`` raises if the workers died."""
    deadline = time.monotonic() + timeout
    while True:
        status = store.execution_status(execution_id)
        if status in EXECUTION_TERMINAL:
            return str(status)
        if time.monotonic() > deadline:
            check()
            raise BenchError(f"execution {execution_id} still {status} after {timeout:g}s")
        time.sleep(interval)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def guarded(
    body: Callable[[], None],
    teardown: Callable[[], None],
    on_crash: Callable[[], None] = lambda: None,
) -> int:
    """Run ``body``, then always ``teardown`` (Ctrl-C cannot cut it short).

    Returns the exit code: 0, 1 when the bench failed, 130 when it was interrupted
    (Ctrl-C, SIGTERM or SIGHUP).
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    code = 0
    try:
        body()
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        code = 130
    except (BenchError, WorkerError, FaultError) as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        code = 1
    except Exception:
        traceback.print_exc()
        on_crash()
        code = 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        try:
            teardown()
        except Exception as exc:  # report; the exit code already says how the run went
            print(f"cleanup failed: {exc!r}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)
    return code
