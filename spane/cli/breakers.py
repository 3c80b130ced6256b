"""``spane breakers``: the circuit breakers every worker shares, and resetting one."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

import spane

from .. import runtime
from . import render
from .commands import Streams, UsageError, show_rows

_STATE_STYLES = {"closed": "green", "open": "red", "half-open": "yellow"}


def table(breakers: Sequence[spane.BreakerStatus]) -> Table:
    """The table of ``spane breakers``."""
    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for column in ("breaker", "state", "failures", "reset timeout", "opened", "may close"):
        grid.add_column(column, no_wrap=True)
    now = time.time()
    for b in breakers:
        closes = ""
        if b.closes_at is not None:
            closes = f"in {b.closes_at - now:.0f}s" if b.closes_at > now else "at the next attempt"
        grid.add_row(
            b.name,
            Text(b.state, style=_STATE_STYLES.get(b.state, "")),
            f"{b.failures}/{b.fail_max}",
            f"{b.reset_timeout:g}s",
            render.timestamp(b.opened_at) if b.opened_at is not None else "",
            closes,
        )
    return grid


def list_(args: argparse.Namespace, io: Streams) -> int:
    """List every circuit breaker with its state, failures and when it may close."""
    note = " (embedded: breakers live in the process running the workflows)"
    empty = "no circuit breakers yet" + (note if runtime.get().shared.where == "memory" else "")
    return show_rows(args, io, spane.breakers(), table, empty)


def reset(args: argparse.Namespace, io: Streams) -> int:
    """Close a circuit breaker now, for every worker."""
    try:
        spane.reset_breaker(args.name)
    except spane.UnknownBreaker as exc:
        raise UsageError(str(exc)) from None
    io.out.print(f"circuit breaker {args.name} is closed", highlight=False)
    return 0
