"""Schedules: start executions on the ticks of a cron expression or an interval.

Schedules come from workflow definitions (``triggers: [{schedule: ...}]``, kept in step
with the latest version at each registration) or from ``spane.schedule``. The sweep of
every worker fires due ticks; each tick fires exactly once, whatever the number of
workers, because the row recording it is inserted in the transaction that starts its
execution (see ``store/schedules.py``).

A tick fired within ``SPANE_SCHEDULE_GRACE`` of its time is on time and always fires.
Older ticks (no worker swept for a while) are missed, and ``catch_up`` decides: ``none``
skips them, ``latest`` fires the most recent one (unless an on-time tick fires now),
``all`` fires each of them, at most ``MAX_CATCH_UP``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from . import cron, starts, validation
from .definitions import MAX_CATCH_UP, Schedule, Workflow
from .errors import DefinitionError, Problem, SpaneError, UnknownSchedule
from .store.schedules import ScheduleRow

if TYPE_CHECKING:
    from .services import Services

log = structlog.get_logger("spane.schedules")


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as ``spane.list_schedules`` shows it (times in epoch seconds)."""

    id: str
    workflow_id: str
    origin: str
    cron: str | None
    every: float | None
    timezone: str
    input: Any
    tenant: str
    overlap: str
    catch_up: str
    paused: bool
    next_at: float | None
    last_execution_id: str | None
    last_fired_at: float | None


def check_inputs(workflow: Workflow) -> None:
    """Refuse schedule triggers whose input fails the workflow's ``input_schema``."""
    problems = []
    for index, trigger in enumerate(workflow.triggers):
        if trigger.schedule is None:
            continue
        try:
            validation.validate_input(workflow, trigger.schedule.input)
        except SpaneError as exc:
            problems.append(Problem(f"triggers[{index}].schedule.input", str(exc)))
    if problems:
        raise DefinitionError(problems, workflow.id)


def sync_definition(rt: Services, workflow: Workflow) -> None:
    """Make the definition's schedule triggers the workflow's schedules: the latest
    registered version takes them over, and a removed trigger removes its schedule."""
    keep = set()
    for index, trigger in enumerate(workflow.triggers):
        if trigger.schedule is not None:
            schedule_id = f"{workflow.id}:{index}"
            save(rt, schedule_id, workflow.id, trigger.schedule, origin="definition")
            keep.add(schedule_id)
    rt.store.drop_schedules(workflow.id, "definition", keep)


def save(rt: Services, schedule_id: str, workflow_id: str, spec: Schedule, *, origin: str) -> None:
    """Store a schedule; its first tick is the first one after now."""
    every = cron.check_every(spec.every) if spec.every is not None else None
    row = ScheduleRow(
        id=schedule_id,
        workflow_id=workflow_id,
        origin=origin,
        cron=spec.cron,
        every=every,
        timezone=spec.timezone,
        input=rt.payloads.pack(
            spec.tenant,
            spec.input,
            what=f"input of schedule {schedule_id}",
            fix="give the schedule a smaller input or raise the limit",
        ),
        tenant=spec.tenant,
        overlap=spec.overlap,
        catch_up=spec.catch_up,
        paused=False,
        next_at=_next_after(spec.cron, every, spec.timezone, time.time()),
    )
    rt.store.save_schedule(row)


def _next_after(expression: str | None, every: float | None, timezone: str, now: float) -> float:
    ticks = cron.ticks_after(int(now * 1000), cron=expression, every=every, timezone=timezone)
    return next(ticks) / 1000


def fire_due(rt: Services) -> int:
    """Fire the due ticks of every schedule (run by the sweep); return how many fired."""
    now = time.time()
    now_ms = int(now * 1000)
    grace_ms = int(rt.settings.schedule_grace * 1000)
    fired = 0
    for row in rt.store.due_schedules(now):
        due, next_ms = _due_ticks(row, now_ms, keep=MAX_CATCH_UP + 1000)
        on_time = [t for t in due if now_ms - t <= grace_ms]
        missed = [t for t in due if now_ms - t > grace_ms]
        chosen: list[int] = []
        if row.catch_up == "all":
            chosen = missed[-MAX_CATCH_UP:]
        elif row.catch_up == "latest" and not on_time:
            chosen = missed[-1:]
        if missed and len(chosen) < len(missed):
            log.info(
                "missed schedule ticks skipped", schedule_id=row.id, count=len(missed) - len(chosen)
            )
        ticks = chosen + on_time
        if not ticks:
            rt.store.advance_schedule(row.id, row.next_at or 0.0, next_ms / 1000)
        for tick in ticks:
            fired += _fire(rt, row, tick, next_ms / 1000)
    return fired


def _due_ticks(row: ScheduleRow, now_ms: int, *, keep: int) -> tuple[list[int], int]:
    """The most recent ``keep`` ticks from the schedule's next tick up to now, and the
    first tick after now."""
    first = round((row.next_at or 0.0) * 1000)
    after = first - 1
    if row.every is not None:
        # Long outages of short intervals: start near the end instead of walking it all.
        after = max(after, now_ms - keep * round(row.every * 1000))
    due: deque[int] = deque(maxlen=keep)
    for tick in cron.ticks_after(after, cron=row.cron, every=row.every, timezone=row.timezone):
        if tick > now_ms:
            return list(due), tick
        due.append(tick)
    raise AssertionError("ticks never end")


def _fire(rt: Services, row: ScheduleRow, tick_ms: int, next_at: float | None) -> int:
    """Fire one tick; 1 if this call fired it, 0 if another worker had."""
    new = None
    try:
        value = rt.payloads.unpack(row.tenant, row.input, what=f"input of schedule {row.id}")
        new = starts.prepare(rt, row.workflow_id, value, tenant=row.tenant)
    except SpaneError as exc:
        log.error("scheduled start refused", schedule_id=row.id, error=str(exc))
    fired = rt.store.fire_tick(row.id, tick_ms, next_at, new)
    if fired.outcome is None:
        return 0
    log.info(
        "schedule fired",
        schedule_id=row.id,
        tick=tick_ms / 1000,
        outcome=fired.outcome,
        execution_id=fired.execution_id,
    )
    rt.dispatch(fired.dispatches)
    return 1


def trigger_now(rt: Services, schedule_id: str) -> str | None:
    """Fire a schedule now, outside its ticks (its overlap policy applies); return the
    execution started, or None if the overlap policy skipped it."""
    row = _get(rt, schedule_id)
    new = starts.prepare(
        rt,
        row.workflow_id,
        rt.payloads.unpack(row.tenant, row.input, what=f"input of schedule {row.id}"),
        tenant=row.tenant,
    )
    fired = rt.store.fire_tick(row.id, int(time.time() * 1000), None, new)
    rt.dispatch(fired.dispatches)
    return fired.execution_id


def set_paused(rt: Services, schedule_id: str, paused: bool) -> None:
    """Pause a schedule, or resume it at its first tick after now (ticks of the pause
    are not caught up)."""
    row = _get(rt, schedule_id)
    next_at = _next_after(row.cron, row.every, row.timezone, time.time())
    rt.store.set_schedule_paused(schedule_id, paused, next_at)


def describe(rt: Services, row: ScheduleRow) -> ScheduleInfo:
    """The public view of a stored schedule."""
    fields = {k: v for k, v in row.__dict__.items() if k != "input"}
    value = rt.payloads.unpack(row.tenant, row.input, what=f"input of schedule {row.id}")
    return ScheduleInfo(input=value, **fields)


def _get(rt: Services, schedule_id: str) -> ScheduleRow:
    row = rt.store.get_schedule(schedule_id)
    if row is None:
        raise UnknownSchedule(f"no schedule has id {schedule_id!r}; `spane schedules` lists them")
    return row
