"""Control commands: ``pause``, ``resume``, ``replay``, ``rerun``, ``history`` and ``gc``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

import spane

from .. import runtime
from ..store.history import Event
from . import render
from .commands import Streams, UsageError, embedded_note, follow

# Event kinds -> style, matched by substring (first match wins).
_KIND_STYLES = (
    ("failed", "red"),
    ("completed", "green"),
    ("cancelled", "magenta"),
    ("skipped", "dim"),
    ("retrying", "yellow"),
    ("lease_expired", "yellow"),
    ("handed_back", "yellow"),
    ("paused", "yellow"),
    ("waiting", "cyan"),
    ("woken", "cyan"),
    ("resumed", "cyan"),
    ("revived", "cyan"),
    ("queued", "blue"),
)


def _then(args: argparse.Namespace, io: Streams, execution_id: str, done: str) -> int:
    """After a control: follow the execution with ``--wait``, else say what was done."""
    if args.wait or args.timeout is not None:
        if not args.json:
            io.say(done)
        return follow(io, execution_id, args.timeout, args.json)
    if args.json:
        sys.stdout.write(render.to_json({"execution_id": execution_id}) + "\n")
    else:
        io.say(done)
    embedded_note(io, execution_id)
    return 0


def pause(args: argparse.Namespace, io: Streams) -> int:
    """Pause a running execution: no new node starts; running nodes finish."""
    spane.pause(args.execution_id)
    io.say(f"paused {args.execution_id}")
    io.err.print(
        f"running nodes finish, no new node starts; `spane resume {args.execution_id}` "
        "continues where it stopped",
        style="dim",
        soft_wrap=True,
        highlight=False,
    )
    return 0


def resume(args: argparse.Namespace, io: Streams) -> int:
    """Resume a paused execution exactly where it stopped."""
    spane.resume(args.execution_id)
    return _then(args, io, args.execution_id, f"resumed {args.execution_id}")


def replay(args: argparse.Namespace, io: Streams) -> int:
    """Run failed or cancelled nodes (or one node) and everything downstream again."""
    store = runtime.get().store
    if args.from_node is not None and args.from_node not in store.node_statuses(args.execution_id):
        nodes = spane.get_execution(args.execution_id).nodes  # in graph order
        raise UsageError(
            f"execution {args.execution_id} has no node {args.from_node!r} "
            f"(nodes: {', '.join(nodes)})"
        )
    spane.replay(args.execution_id, from_node=args.from_node)
    what = f"from node {args.from_node}" if args.from_node else "its failed and cancelled nodes"
    return _then(args, io, args.execution_id, f"replaying {args.execution_id}: {what}")


def rerun(args: argparse.Namespace, io: Streams) -> int:
    """Start a new execution with the same input, workflow version and tenant."""
    new_id = spane.rerun(args.execution_id)
    return _then(args, io, new_id, new_id)  # the id alone, for $(spane rerun ID)


def _kind_style(kind: str) -> str:
    return next((style for part, style in _KIND_STYLES if part in kind), "")


def _offset(seconds: float) -> str:
    return f"+{seconds:.3f}s" if seconds < 60 else f"+{render.duration(seconds)}"


def history_table(events: Sequence[Event], *, full: bool = False) -> Table:
    """The table of ``spane history``: time since the first event, node, kind, attempt."""
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("node", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    start = events[0].at if events else 0.0
    for event in events:
        detail = event.detail if full else render.one_line(event.detail, 80)
        style = _kind_style(event.kind)
        table.add_row(
            _offset(event.at - start),
            Text("execution", style="dim") if event.node_id is None else Text(event.node_id),
            Text(event.kind, style=style),
            "" if event.attempt is None else str(event.attempt),
            Text(detail or "", style="red" if style == "red" else ""),
        )
    return table


def history(args: argparse.Namespace, io: Streams) -> int:
    """Show every recorded state change of an execution and its nodes, in order."""
    events = spane.history(args.execution_id)
    if args.json:
        sys.stdout.write(render.to_json(events) + "\n")
        return 0
    if not events:
        io.out.print("no events", style="dim")
        return 0
    count = f"{len(events)} event{'s' if len(events) != 1 else ''}"
    io.out.print(
        Text.assemble(
            ("history ", "bold"),
            (args.execution_id, ""),
            (f"  {count} from {render.timestamp(events[0].at)}", "dim"),
        ),
        soft_wrap=True,
    )
    io.out.print(history_table(events, full=args.full))
    return 0


def gc(args: argparse.Namespace, io: Streams) -> int:
    """Delete executions that ended long ago, then blobs nothing refers to any more."""
    cutoff = time.time() - args.older_than
    collected = spane.collect_garbage(args.older_than, grace=args.grace)
    if args.json:
        fields = ("executions", "blobs", "blob_bytes")
        sys.stdout.write(render.to_json({f: getattr(collected, f) for f in fields}) + "\n")
        return 0
    executions = collected.executions
    blobs = collected.blobs
    io.out.print(
        Text.assemble(
            ("removed ", "bold"),
            (f"{executions} execution{'s' if executions != 1 else ''}", "bold"),
            (f" (ended before {render.timestamp(cutoff)})", "dim"),
            (" and ", "bold"),
            (f"{blobs} blob{'s' if blobs != 1 else ''}", "bold"),
            (f" ({render.size(collected.blob_bytes)})", ""),
        ),
        soft_wrap=True,
    )
    return 0
