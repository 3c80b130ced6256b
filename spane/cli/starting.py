"""Commands that start work: ``schedules``, ``signal`` and ``clock``."""

from __future__ import annotations

import argparse
import signal as os_signal
import threading
from collections.abc import Sequence
from datetime import datetime
from types import FrameType

from rich.table import Table

import spane

from .. import clock, runtime
from ..schedules import ScheduleInfo
from . import render
from .commands import Streams, parse_input, show_rows


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``schedules``, ``signal`` and ``clock`` on the ``spane`` parser."""
    schedules = sub.add_parser("schedules", help="list schedules, or pause/resume/trigger one")
    schedules.set_defaults(handler=list_schedules, json=False, workflow=None)
    schedules_sub = schedules.add_subparsers(dest="schedules_command", metavar="COMMAND")
    listing = schedules_sub.add_parser("list", help="schedules with next tick and last execution")
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(handler=list_schedules)
    for name, handler, text in (
        ("pause", pause, "stop a schedule from firing"),
        ("resume", resume, "fire a paused schedule again from its next tick"),
        ("trigger-now", trigger_now, "start the schedule's workflow now; print the id"),
    ):
        command = schedules_sub.add_parser(name, help=text)
        command.add_argument("schedule_id", metavar="SCHEDULE_ID")
        command.set_defaults(handler=handler)

    send = sub.add_parser("signal", help="send a signal to an execution (wait_for nodes)")
    send.add_argument("execution_id", metavar="ID")
    send.add_argument("name", metavar="NAME")
    send.add_argument(
        "--payload", metavar="JSON", help="the signal's value as JSON, or @FILE (default: null)"
    )
    send.add_argument("--signal-id", metavar="SID", help="send at most once per SID")
    send.set_defaults(handler=signal)

    run = sub.add_parser(
        "clock", help="fire schedules and delayed starts in this process (workers do it too)"
    )
    run.set_defaults(handler=run_clock)


def start_at(text: str) -> datetime:
    """Parse ``--at``: an ISO 8601 time with its offset (``Z`` for UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time with an offset, e.g. 2026-01-31T09:00:00+01:00 or "
            f"2026-01-31T08:00:00Z, got {text!r}"
        )
    return moment


def list_schedules(args: argparse.Namespace, io: Streams) -> int:
    """List schedules with their next tick and last execution."""
    return show_rows(args, io, spane.list_schedules(args.workflow), _table, "no schedules")


def _table(rows: Sequence[ScheduleInfo]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("schedule", "workflow", "when", "tenant", "next", "last execution", "state"):
        table.add_column(column)
    for row in rows:
        when = f"{row.cron} ({row.timezone})" if row.cron else f"every {row.every:g}s"
        table.add_row(
            row.id,
            row.workflow_id,
            when,
            row.tenant,
            "-" if row.paused else render.timestamp(row.next_at),
            row.last_execution_id or "-",
            "paused" if row.paused else "active",
        )
    return table


def pause(args: argparse.Namespace, io: Streams) -> int:
    """Pause a schedule."""
    spane.pause_schedule(args.schedule_id)
    io.say(f"paused {args.schedule_id}")
    return 0


def resume(args: argparse.Namespace, io: Streams) -> int:
    """Resume a schedule."""
    spane.resume_schedule(args.schedule_id)
    io.say(f"resumed {args.schedule_id}")
    return 0


def trigger_now(args: argparse.Namespace, io: Streams) -> int:
    """Start a schedule's workflow now and print the execution id."""
    execution_id = spane.trigger_schedule(args.schedule_id)
    if execution_id is None:
        io.err.print("skipped: the previous execution still runs (overlap: skip)", style="yellow")
        return 1
    io.say(execution_id)
    return 0


def signal(args: argparse.Namespace, io: Streams) -> int:
    """Send a signal; a repeated ``--signal-id`` is reported and changes nothing."""
    payload = parse_input(args.payload)
    sent = spane.signal(args.execution_id, args.name, payload, signal_id=args.signal_id)
    note = "sent" if sent else "already sent (same --signal-id); nothing changed"
    io.say(f"{note}: {args.name} -> {args.execution_id}")
    return 0


def run_clock(args: argparse.Namespace, io: Streams) -> int:
    """Fire due schedule ticks and delayed starts until SIGINT or SIGTERM."""
    rt = runtime.get()
    stop = threading.Event()

    def halt(signum: int, frame: FrameType | None) -> None:
        stop.set()

    os_signal.signal(os_signal.SIGTERM, halt)
    os_signal.signal(os_signal.SIGINT, halt)
    io.err.print(
        f"clock: firing schedules and delayed starts every {rt.settings.sweep_interval:g}s",
        soft_wrap=True,
    )
    clock.run(rt, stop)
    return 0
