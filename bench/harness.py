"""What the benchmarks share: CPU accounting per party and worker process groups.

CPU seconds are read from ``/proc`` so each party (workers, PostgreSQL, Redis, RabbitMQ,
the client, the rest of the machine) is counted the same way for Spane and its peers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


# -- worker processes ------------------------------------------------------------------------


def child_setup() -> None:
    """In the worker: die with the bench (Linux), so a killed bench leaves no orphans."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Workers:
    """One worker master process this bench started (and its children), in its own group."""

    proc: subprocess.Popen[bytes]
    log: Path
    processes: int
    #: What each ready worker process prints once.
    ready_marker: str = "is ready for action"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def group_members(self) -> list[int]:
        """Pids of the processes in our worker's process group (it leads its own session)."""
        members = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                stat = read_stat(pid)
                if stat is not None and stat[2] == self.pid:
                    members.append(int(pid))
        return members

    def worker_children(self) -> list[int]:
        """Pids of the worker processes (the dramatiq master's children)."""
        found = []
        for pid in self.group_members():
            stat = read_stat(str(pid))
            if pid != self.pid and stat is not None and stat[1] == self.pid:
                found.append(pid)
        return sorted(found)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(self.ready_marker) >= self.processes:
                return
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise BenchError(f"workers exited early (code {code}):\n{self.tail()}")
            time.sleep(0.1)
        raise BenchError(f"workers not ready after {timeout:g}s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our process group; SIGKILL it after ``timeout``; reap every member."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"workers did not stop within {timeout:g}s; sending SIGKILL", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
        # Anything left in our group (a worker whose master died first) is ours: kill it.
        deadline = time.monotonic() + 10
        while (left := self.group_members()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
