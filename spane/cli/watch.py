"""Follow an execution until it ends, with a live view of its nodes on a terminal."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

import spane

from .. import runtime
from ..store import Execution
from . import render

POLL_SECONDS = 0.1


def follow(console: Console, execution_id: str, *, timeout: float | None = None) -> Execution:
    """Wait for the execution to end and return it.

    On a terminal the node table is redrawn while the execution runs (the live view is
    then replaced by the final summary); elsewhere this simply waits.

    Raises:
        WaitTimeout: If ``timeout`` seconds pass first; the execution goes on.
    """
    if not console.is_interactive:
        return spane.wait(execution_id, timeout=timeout)
    runtime.get().ensure_worker()
    deadline = None if timeout is None else time.monotonic() + timeout
    spinners: dict[str, Spinner] = {}
    execution = spane.get_execution(execution_id)
    with Live(_view(execution, spinners), console=console, transient=True) as live:
        while not execution.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise spane.WaitTimeout(
                    f"execution {execution_id} did not end within {timeout:g}s; it is still running"
                )
            time.sleep(POLL_SECONDS)
            execution = spane.get_execution(execution_id)
            live.update(_view(execution, spinners))
    return execution


def _view(execution: Execution, spinners: dict[str, Spinner]) -> Group:
    now = time.time()
    return Group(
        render.header(execution, now=now),
        Text(),
        render.node_table(execution, now=now, spinners=spinners),
    )
