"""How executions look in the terminal (rich) and on the wire (JSON)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..statuses import ExecutionStatus, NodeStatus
from ..store import Execution, ExecutionSummary, NodeState

# status -> (symbol, style); nodes and executions share the vocabulary.
STATUS: dict[str, tuple[str, str]] = {
    NodeStatus.PENDING: ("·", "dim"),
    NodeStatus.QUEUED: ("○", "blue"),
    NodeStatus.RUNNING: ("●", "yellow"),
    NodeStatus.WAITING: ("◷", "cyan"),
    ExecutionStatus.PAUSED: ("‖", "yellow"),
    NodeStatus.COMPLETED: ("✔", "green"),
    NodeStatus.FAILED: ("✘", "red"),
    NodeStatus.SKIPPED: ("↷", "dim"),
    NodeStatus.CANCELLED: ("⊘", "magenta"),
}
OUTPUT_MAX_LINES = 40
OUTPUT_MAX_CHARS = 4000
_ACTIVE_NODE = (NodeStatus.RUNNING, NodeStatus.WAITING)
#: Node states that have no running time to show.
_NOT_STARTED = (NodeStatus.PENDING, NodeStatus.QUEUED, NodeStatus.SKIPPED)


def to_json(value: Any) -> str:
    """Encode records (dataclasses) and plain values as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def status_text(status: str) -> Text:
    """Return ``status`` with its symbol, in its colour."""
    symbol, style = STATUS.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def duration(seconds: float | None) -> str:
    """Format seconds compactly: ``340ms``, ``2.41s``, ``3m05s``, ``1h02m``."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def timestamp(epoch: float | None) -> str:
    """Format an epoch time in local time."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def elapsed(execution: Execution, now: float | None = None) -> float:
    """Seconds from creation to the end (or to now, while it runs)."""
    end = execution.finished_at if execution.finished_at is not None else (now or time.time())
    return end - execution.created_at


def _node_time(node: NodeState, now: float) -> str:
    if node.started_at is None or node.status in _NOT_STARTED:
        return ""
    end = node.finished_at if node.finished_at is not None else now
    return duration(end - node.started_at)


def size(count: int) -> str:
    """Format a number of bytes: ``512 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _node_status(node: NodeState) -> Text:
    if node.status == NodeStatus.QUEUED and node.attempts > 1:
        return Text(f"retry {node.attempts - 1}", style="yellow")
    style = STATUS.get(node.status, ("", ""))[1]
    if node.status == NodeStatus.WAITING:
        # Parked: on a sub-workflow's child execution, or else on a durable timer.
        what = f"child {node.child_id}" if node.child_id else "timer"
        return Text(f"waiting for {what}", style=style)
    return Text(node.status, style=style)


def one_line(error: str | None, width: int) -> str:
    """The last line of ``error`` (where a traceback says what happened), cut to ``width``."""
    if not error:
        return ""
    line = error.strip().splitlines()[-1] if error.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def node_table(
    execution: Execution,
    *,
    now: float | None = None,
    spinners: dict[str, Spinner] | None = None,
    full_errors: bool = False,
) -> Table:
    """Return the table of an execution's nodes: id, type, status, attempts, time, error.

    Args:
        execution: The execution to show.
        now: The time running nodes are measured to.
        spinners: Spinners of running nodes, kept across refreshes of a live view.
        full_errors: Show whole error messages rather than their last line.
    """
    now = time.time() if now is None else now
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("", width=1, no_wrap=True)
    table.add_column("node", no_wrap=True)
    table.add_column("type", style="dim", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", style="red", overflow="fold")
    for node_id, node in execution.nodes.items():
        symbol, style = STATUS.get(node.status, ("?", ""))
        mark: RenderableType = Text(symbol, style=style)
        if spinners is not None and node.status in _ACTIVE_NODE:
            mark = spinners.setdefault(node_id, Spinner("dots", style=style))
        error = node.error if full_errors else one_line(node.error, 60)
        table.add_row(
            mark,
            Text(node_id, style="bold" if node.status in _ACTIVE_NODE else ""),
            node.type,
            _node_status(node),
            str(node.attempts) if node.attempts else "",
            _node_time(node, now),
            error or "",
        )
    return table


def header(execution: Execution, *, now: float | None = None) -> Text:
    """One line: workflow and version, execution id, status and time so far."""
    text = Text.assemble(
        (execution.workflow_id, "bold"),
        (f" v{execution.version}", "dim"),
        "  ",
        (execution.id, "dim"),
        "  ",
        status_text(execution.status),
        (f"  {duration(elapsed(execution, now))}", ""),
    )
    if execution.tenant != "default":
        text.append(f"  tenant {execution.tenant}", style="dim")
    return text


def value(data: Any, *, max_lines: int = OUTPUT_MAX_LINES) -> Text:
    """Pretty, highlighted JSON of ``data``, cut short if it is huge."""
    text = to_json(data)
    lines = text.splitlines()
    cut = len(lines) > max_lines or len(text) > OUTPUT_MAX_CHARS
    if cut:
        kept = "\n".join(lines[:max_lines])[:OUTPUT_MAX_CHARS]
        hidden = len(text) - len(kept)
        text = f"{kept}\n… {hidden} more characters (see --json for all)"
    rendered = Text(text)
    JSONHighlighter().highlight(rendered)
    return rendered


def summary(execution: Execution, *, now: float | None = None) -> Group:
    """The final view of an execution: header, nodes, then its output or error."""
    parts: list[RenderableType] = [header(execution, now=now), Text(), node_table(execution)]
    if execution.parent_id:
        of = f" (node {execution.parent_node_id})" if execution.parent_node_id else ""
        parts.insert(1, Text(f"parent {execution.parent_id}{of}", style="dim"))
    if execution.children:
        parts.append(Text(f"children: {', '.join(execution.children)}", style="dim"))
    for node_id, node in execution.nodes.items():
        if node.status == NodeStatus.FAILED and node.error and "\n" in node.error.strip():
            # A traceback: the table shows its last line, here it is whole.
            parts += [Text(), Text(f"node {node_id} failed", style="bold red"), Text(node.error)]
    parts.append(Text())
    if execution.status == ExecutionStatus.COMPLETED:
        parts += [Text("output", style="bold"), value(execution.output)]
    elif execution.error:
        parts.append(Text.assemble(("error ", "bold red"), (execution.error, "red")))
    if execution.done:
        symbol, style = STATUS.get(execution.status, ("?", ""))
        ended = (
            "was cancelled" if execution.status == ExecutionStatus.CANCELLED else execution.status
        )
        took = duration(elapsed(execution))
        parts.append(Text(f"{symbol} {ended} in {took}", style=f"bold {style}"))
    return Group(*parts)


def executions_table(rows: Sequence[ExecutionSummary]) -> Table:
    """The table of ``spane list``."""
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("id", no_wrap=True, min_width=36)  # whole, to be copied
    for name in ("workflow", "tenant", "status", "created", "duration"):
        table.add_column(name, no_wrap=True, justify="right" if name == "duration" else "left")
    for row in rows:
        took = None if row.finished_at is None else row.finished_at - row.created_at
        table.add_row(
            row.id,
            Text.assemble(row.workflow_id, (f" v{row.version}", "dim")),
            row.tenant,
            status_text(row.status),
            timestamp(row.created_at),
            duration(took),
        )
    return table
