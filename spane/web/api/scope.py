"""What a caller may see: its own tenant's executions and schedules, or everything with an
admin token."""

from __future__ import annotations

from ... import errors, runtime, schedules
from ...schedules import ScheduleInfo
from ...store import ExecutionSummary
from ..errors import HttpError
from ..routing import Call


def execution(call: Call, execution_id: str) -> ExecutionSummary:
    """Return an execution the caller may see.

    Raises:
        UnknownExecution: If there is none, or it belongs to another tenant (the two are
            answered alike, so ids of other tenants cannot be probed).
    """
    summary = runtime.get().store.summary(execution_id)
    if not call.principal.sees(summary.tenant):
        raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
    return summary


def schedule(call: Call, schedule_id: str) -> ScheduleInfo:
    """Return a schedule the caller may see.

    Raises:
        UnknownSchedule: If there is none, or it belongs to another tenant (answered alike).
    """
    rt = runtime.get()
    row = rt.store.get_schedule(schedule_id)
    if row is None or not call.principal.sees(row.tenant):
        raise errors.UnknownSchedule(
            f"no schedule has id {schedule_id!r}; GET /api/v1/schedules lists them"
        )
    return schedules.describe(rt, row)


def tenant(call: Call, asked: str | None) -> str | None:
    """Return the tenant to filter on: the caller's own, or ``asked`` for an admin.

    Raises:
        HttpError: 403 when a tenant token asks for another tenant.
    """
    own = call.principal.tenant
    if own is None:
        return asked
    if asked is not None and asked != own:
        raise HttpError(403, f"this token belongs to tenant {own!r}; it cannot see {asked!r}")
    return own
