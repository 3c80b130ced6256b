"""``spane workers`` and ``spane metrics``: what is running, and how it is doing."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from .. import runtime
from ..monitoring.state import exposition
from ..store import WorkerInfo
from ..workers import workers as live_workers
from .commands import Streams, show_rows


def table(rows: Sequence[WorkerInfo], now: float | None = None) -> Table:
    """The table of ``spane workers``."""
    now = time.time() if now is None else now
    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for name in ("host", "pid", "version", "lanes", "threads", "in flight", "heartbeat"):
        grid.add_column(name, no_wrap=True, justify="right" if name == "pid" else "left")
    grid.add_column("node types", overflow="fold")
    for w in rows:
        beat = Text(f"{max(0.0, now - w.heartbeat_at):.0f}s ago")
        if w.draining:
            beat.append(" draining", style="yellow")
        grid.add_row(
            w.host,
            str(w.pid),
            w.version,
            ",".join(w.lanes),
            str(w.threads),
            str(w.inflight),
            beat,
            ", ".join(w.node_types),
        )
    return grid


def workers(args: argparse.Namespace, io: Streams) -> int:
    """List live workers."""
    return show_rows(args, io, live_workers(), table, "no live workers")


def metrics(args: argparse.Namespace, io: Streams) -> int:
    """Print the cluster state gauges once, in Prometheus text format."""
    sys.stdout.write(exposition(runtime.get()).decode())
    return 0
