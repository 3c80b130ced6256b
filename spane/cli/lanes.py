"""``spane lanes``: per lane and tenant, the work ready, in flight and the oldest wait."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from ..lanes import Lane, lanes
from . import render
from .commands import Streams


def table(rows: Sequence[Lane]) -> Table:
    """The table of ``spane lanes``: a line per tenant with work, one for an idle lane."""
    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    grid.add_column("lane", no_wrap=True)
    grid.add_column("workers", no_wrap=True)
    grid.add_column("tenant", no_wrap=True)
    for name in ("ready", "in flight", "waiting on a limit", "oldest wait"):
        grid.add_column(name, no_wrap=True, justify="right")
    for lane in rows:
        served = f"{lane.workers} ({lane.threads} threads)"
        workers = Text(served) if lane.workers else Text("none", style="red")
        if not lane.tenants:
            grid.add_row(lane.lane, workers, Text("-", style="dim"), "0", "0", "0", "")
        for i, load in enumerate(lane.tenants):
            grid.add_row(
                lane.lane if i == 0 else "",
                workers if i == 0 else "",
                load.tenant,
                str(load.ready),
                str(load.in_flight),
                str(load.limited),
                render.duration(load.oldest_wait),
            )
    return grid


def list_(args: argparse.Namespace, io: Streams) -> int:
    """Show each lane's load per tenant and the workers serving it."""
    rows = lanes(args.tenant)
    if args.json:
        sys.stdout.write(render.to_json(rows) + "\n")
    else:
        io.out.print(table(rows))
    return 0
