"""The Python API for starting work besides ``enqueue_workflow``: batches, schedules,
signals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from . import runtime, schedules, signals, starts
from .builtins.configs import SIGNAL_NAME
from .definitions import Schedule
from .errors import InputError, UnknownSchedule
from .schedules import ScheduleInfo


def enqueue_many(
    workflow_id: str,
    inputs: Sequence[Any],
    /,
    *,
    tenant: str = "default",
    priority: str | None = None,
    version: int | None = None,
) -> list[str]:
    """Start one execution per input in one transaction; return their ids in order.

    Every input is checked first; if any is refused, nothing starts and the error lists
    each refused input by its index.
    """
    return starts.enqueue_many(
        runtime.get(), workflow_id, inputs, tenant=tenant, priority=priority, version=version
    )


def schedule(
    workflow_id: str,
    input: Any = None,
    /,
    *,
    cron: str | None = None,
    every: str | float | None = None,
    timezone: str = "UTC",
    tenant: str = "default",
    overlap: str = "skip",
    catch_up: str = "latest",
    schedule_id: str | None = None,
) -> str:
    """Start ``workflow_id`` on every tick of ``cron`` (or ``every`` interval); return
    the schedule's id (``schedule_id``, by default ``WORKFLOW_ID:api``).

    Saving a schedule under an existing id replaces it. Workers fire it; each tick
    starts one execution whatever the number of workers.

    Raises:
        InputError: If the schedule or its input is not valid.
        UnknownWorkflow: If the workflow is not registered.
    """
    rt = runtime.get()
    try:
        spec = Schedule(
            cron=cron,
            every=every,
            timezone=timezone,
            input=input,
            tenant=tenant,
            overlap=overlap,
            catch_up=catch_up,
        )
    except (ValueError, msgspec.ValidationError) as exc:
        raise InputError(f"schedule of {workflow_id!r} is not valid: {exc}") from None
    starts.prepare(rt, workflow_id, input, tenant=tenant)  # the input must start it
    schedule_id = schedule_id or f"{workflow_id}:api"
    schedules.save(rt, schedule_id, workflow_id, spec, origin="api")
    rt.ensure_worker()
    return schedule_id


def unschedule(schedule_id: str) -> None:
    """Delete a schedule (one from a definition comes back when it is registered again)."""
    if not runtime.get().store.delete_schedule(schedule_id):
        raise UnknownSchedule(f"no schedule has id {schedule_id!r}; `spane schedules` lists them")


def pause_schedule(schedule_id: str) -> None:
    """Stop a schedule from firing until ``resume_schedule``."""
    schedules.set_paused(runtime.get(), schedule_id, True)


def resume_schedule(schedule_id: str) -> None:
    """Fire a paused schedule again from its next tick (ticks of the pause are skipped)."""
    rt = runtime.get()
    schedules.set_paused(rt, schedule_id, False)
    rt.ensure_worker()


def trigger_schedule(schedule_id: str) -> str | None:
    """Start a schedule's workflow now; return the execution id (None if its overlap
    policy skipped it)."""
    rt = runtime.get()
    execution_id = schedules.trigger_now(rt, schedule_id)
    rt.ensure_worker()
    return execution_id


def list_schedules(workflow_id: str | None = None) -> list[ScheduleInfo]:
    """Return schedules with their next tick and last execution."""
    rt = runtime.get()
    return [schedules.describe(rt, row) for row in rt.store.list_schedules(workflow_id)]


def signal(
    execution_id: str, name: str, payload: Any = None, /, *, signal_id: str | None = None
) -> bool:
    """Send signal ``name`` to an execution; a ``wait_for`` node waiting on it (now or
    later) outputs ``payload``.

    With ``signal_id``, sending the same signal again changes nothing.

    Returns:
        False if a signal with this ``signal_id`` was already sent.

    Raises:
        UnknownExecution: If there is no such execution.
        InvalidTransition: If the execution has ended.
    """
    rt = runtime.get()
    if not SIGNAL_NAME.fullmatch(name):
        raise InputError(f"signal name {name!r}: use 1-100 characters of A-Z a-z 0-9 _ . : -")
    rt.ensure_worker()
    return signals.send(rt, execution_id, name, payload, signal_id=signal_id)
