"""py-spy sampling of the worker processes during a phase (``bench.py --py-spy DIR``)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.harness import BenchError, worker_children


class Sampler:
    """py-spy ``record --format raw`` attached to every worker process during a phase."""

    def __init__(self, bench: Bench, folder: Path, label: str) -> None:
        self.bench = bench
        self.folder = folder
        self.label = label
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> Sampler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise BenchError("--py-spy needs py-spy: pip install py-spy")
        self.folder.mkdir(parents=True, exist_ok=True)
        assert self.bench.workers is not None
        for pid in worker_children(self.bench.workers.pid):
            out = self.folder / f"{self.label}-{pid}.txt"
            proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                    *(["--gil"] if self.bench.args.py_spy_gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.procs.append((proc, out))
        time.sleep(1.0)  # let py-spy attach
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def summary(self) -> dict[str, Any]:
        inclusive: Counter[str] = Counter()
        self_time: Counter[str] = Counter()
        total = 0
        for _, path in self.procs:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not count_text.isdigit():
                    continue
                count = int(count_text)
                total += count
                frames = stack.split(";")
                self_time[_short(frames[-1])] += count
                for name in {_short(f) for f in frames}:
                    inclusive[name] += count
        return {
            "mode": "the GIL-holding worker thread (Python CPU)"
            if self.bench.args.py_spy_gil
            else "non-idle worker threads (wall time, waits on sockets included)",
            "samples": total,
            "files": [str(p) for _, p in self.procs],
            "top_self": [(n, round(100 * c / total, 1)) for n, c in self_time.most_common(25)]
            if total
            else [],
            "top_inclusive_spane": [
                (n, round(100 * c / total, 1))
                for n, c in inclusive.most_common(400)
                if "spane/" in n or "bench/" in n
            ][:30]
            if total
            else [],
        }


def _short(frame: str) -> str:
    """``fn (path/to/site-packages/pkg/mod.py:12)`` -> ``fn (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def print_sampler(summary: dict[str, Any]) -> None:
    print()
    print(f"== py-spy: {summary['samples']} samples of {summary['mode']} ==")
    print("  hottest frames (self):")
    for name, pct in summary["top_self"]:
        print(f"    {pct:5.1f}%  {name}")
    print("  spane frames (inclusive):")
    for name, pct in summary["top_inclusive_spane"]:
        print(f"    {pct:5.1f}%  {name}")
    print("  raw stacks: " + ", ".join(summary["files"]))
