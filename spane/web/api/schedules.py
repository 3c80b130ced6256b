"""Schedules: list, get, create, delete, pause, resume, trigger now. A schedule belongs to
the tenant its executions run for; a tenant token sees and changes only its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from ... import runtime, starting
from ...schedules import ScheduleInfo
from ..errors import HttpError
from ..routing import Call, Operation
from . import scope


class ScheduleList(msgspec.Struct):
    """Schedules, by id."""

    items: list[ScheduleInfo]


class ScheduleQuery(msgspec.Struct):
    """Which schedules to list (unset: all the caller may see)."""

    workflow_id: str | None = None
    tenant: str | None = None


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Start ``workflow_id`` on every tick of ``cron`` or ``every`` (as ``spane.schedule``).

    Saving under an existing ``schedule_id`` (by default ``WORKFLOW_ID:api``) replaces it.
    """

    workflow_id: str
    input: Any = None
    cron: str | None = None
    every: str | float | None = None
    timezone: str = "UTC"
    tenant: str | None = None
    overlap: Literal["skip", "allow", "cancel_previous"] = "skip"
    catch_up: Literal["none", "latest", "all"] = "latest"
    schedule_id: Annotated[str, msgspec.Meta(pattern="^[^/]{1,200}$")] | None = None


class Triggered(msgspec.Struct):
    """The execution a trigger started; None when the overlap policy skipped it."""

    schedule_id: str
    execution_id: str | None


def list_(call: Call) -> ScheduleList:
    q: ScheduleQuery = call.query
    tenant = scope.tenant(call, q.tenant)
    found = starting.list_schedules(q.workflow_id)
    return ScheduleList([s for s in found if tenant is None or s.tenant == tenant])


def get(call: Call) -> ScheduleInfo:
    return scope.schedule(call, call.path["schedule_id"])


def create(call: Call) -> ScheduleInfo:
    body: ScheduleRequest = call.body
    tenant = scope.tenant(call, body.tenant) or "default"
    schedule_id = body.schedule_id or f"{body.workflow_id}:api"  # spane.schedule's default
    existing = runtime.get().store.get_schedule(schedule_id)
    if existing is not None and not call.principal.sees(existing.tenant):
        raise HttpError(409, f"schedule id {schedule_id!r} is taken; give another schedule_id")
    starting.schedule(
        body.workflow_id,
        body.input,
        cron=body.cron,
        every=body.every,
        timezone=body.timezone,
        tenant=tenant,
        overlap=body.overlap,
        catch_up=body.catch_up,
        schedule_id=schedule_id,
    )
    return scope.schedule(call, schedule_id)


def delete(call: Call) -> None:
    starting.unschedule(scope.schedule(call, call.path["schedule_id"]).id)


def _control(action: Callable[[str], None]) -> Callable[[Call], ScheduleInfo]:
    """A handler that runs ``action`` on the caller's schedule and returns it afterwards."""

    def handle(call: Call) -> ScheduleInfo:
        info = scope.schedule(call, call.path["schedule_id"])
        action(info.id)
        return scope.schedule(call, info.id)

    return handle


def trigger(call: Call) -> Triggered:
    info = scope.schedule(call, call.path["schedule_id"])
    return Triggered(info.id, starting.trigger_schedule(info.id))


_ID = "/schedules/{schedule_id}"
TAG = "schedules"

OPERATIONS = [
    Operation(
        "GET",
        "/schedules",
        "listSchedules",
        "Schedules with their next tick",
        list_,
        TAG,
        query=ScheduleQuery,
        response=ScheduleList,
    ),
    Operation(
        "POST",
        "/schedules",
        "createSchedule",
        "Create (or replace) a schedule",
        create,
        TAG,
        body=ScheduleRequest,
        response=ScheduleInfo,
        status=201,
    ),
    Operation("GET", _ID, "getSchedule", "A schedule", get, TAG, response=ScheduleInfo),
    Operation("DELETE", _ID, "deleteSchedule", "Delete a schedule", delete, TAG),
    Operation(
        "POST",
        _ID + "/pause",
        "pauseSchedule",
        "Stop firing until resumed",
        _control(starting.pause_schedule),
        TAG,
        response=ScheduleInfo,
    ),
    Operation(
        "POST",
        _ID + "/resume",
        "resumeSchedule",
        "Fire again from the next tick",
        _control(starting.resume_schedule),
        TAG,
        response=ScheduleInfo,
    ),
    Operation(
        "POST",
        _ID + "/trigger",
        "triggerSchedule",
        "Start the workflow now (the overlap policy applies)",
        trigger,
        TAG,
        response=Triggered,
    ),
]
