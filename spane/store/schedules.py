"""Schedules and their ticks. The row of a tick (schedule, instant) is inserted in the
transaction that starts its execution: whichever worker inserts it first fires the tick,
and a second worker's insert fails, so each tick fires exactly once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..statuses import EXECUTION_ACTIVE
from ..statuses import ExecutionStatus as X
from .base import retry_conflicts
from .delayed import START_PENDING
from .execution_row import ExecutionRow
from .records import Dispatch
from .schema import delayed_starts as DS
from .schema import executions as E
from .schema import schedule_ticks as T
from .schema import schedules as SC
from .starts import NewExecution, Starts


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule (its input packed)."""

    id: str
    workflow_id: str
    origin: str
    cron: str | None
    every: float | None
    timezone: str
    input: str
    tenant: str
    overlap: str
    catch_up: str
    paused: bool
    next_at: float | None
    last_execution_id: str | None = None
    last_fired_at: float | None = None


@dataclass
class Fired:
    """What firing one tick did.

    Attributes:
        outcome: ``started``, ``skipped`` (overlap) or ``refused`` (invalid input);
            None when another worker fired the tick first.
        execution_id: The execution started.
        dispatches: Its entry-node messages.
    """

    outcome: str | None
    execution_id: str | None = None
    dispatches: list[Dispatch] = field(default_factory=list)


class Schedules:
    """Schedules and the ticks they fired.

    Args:
        engine: The store's engine.
        row: Takes and ends a previous execution that a tick replaces.
        starts: Creates a tick's execution.
    """

    def __init__(self, engine: Engine, row: ExecutionRow, starts: Starts):
        self.engine = engine
        self.row = row
        self.starts = starts

    def save_schedule(self, row: ScheduleRow) -> None:
        """Create or replace a schedule. Unless its timing changed, it keeps its next
        tick and whether it is paused."""
        for _ in range(3):
            try:
                self._save_schedule(row)
                return
            except IntegrityError:
                continue  # created meanwhile by a concurrent registration: replace it
        raise errors.SpaneError(f"could not save schedule {row.id!r}: too much contention")

    def _save_schedule(self, row: ScheduleRow) -> None:
        now = time.time()
        values = {k: v for k, v in row.__dict__.items() if k != "id"}
        with self.engine.begin() as conn:
            old = conn.execute(select(SC).where(SC.c.id == row.id).with_for_update()).first()
            if old is None:
                conn.execute(insert(SC).values(id=row.id, created_at=now, updated_at=now, **values))
                return
            if (old.cron, old.every, old.timezone) == (row.cron, row.every, row.timezone):
                values["next_at"] = old.next_at
                values["paused"] = old.paused
            values["last_execution_id"] = old.last_execution_id
            values["last_fired_at"] = old.last_fired_at
            conn.execute(update(SC).where(SC.c.id == row.id).values(updated_at=now, **values))

    def drop_schedules(self, workflow_id: str, origin: str, keep: set[str]) -> int:
        """Delete the schedules of a workflow made by ``origin`` except ``keep``."""
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(SC).where(
                    SC.c.workflow_id == workflow_id,
                    SC.c.origin == origin,
                    SC.c.id.not_in(sorted(keep)),
                )
            )
            return int(done.rowcount)

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False if there is none with that id."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(SC).where(SC.c.id == schedule_id)).rowcount)

    def set_schedule_paused(self, schedule_id: str, paused: bool, next_at: float | None) -> bool:
        """Pause a schedule, or resume it from ``next_at``; False if there is none."""
        values: dict[str, Any] = {"paused": paused, "updated_at": time.time()}
        if not paused:
            values["next_at"] = next_at
        with self.engine.begin() as conn:
            done = conn.execute(update(SC).where(SC.c.id == schedule_id).values(**values))
            return bool(done.rowcount)

    def get_schedule(self, schedule_id: str) -> ScheduleRow | None:
        """Return one schedule, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(SC).where(SC.c.id == schedule_id)).first()
        return None if row is None else _schedule(row)

    def list_schedules(self, workflow_id: str | None = None) -> list[ScheduleRow]:
        """Return schedules ordered by id, optionally of one workflow."""
        query = select(SC).order_by(SC.c.id)
        if workflow_id is not None:
            query = query.where(SC.c.workflow_id == workflow_id)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def due_schedules(self, now: float, limit: int = 100) -> list[ScheduleRow]:
        """Schedules not paused whose next tick has come."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(SC)
                .where(SC.c.paused.is_(False), SC.c.next_at <= now)
                .order_by(SC.c.next_at)
                .limit(limit)
            ).all()
        return [_schedule(r) for r in rows]

    def advance_schedule(self, schedule_id: str, seen: float, next_at: float) -> None:
        """Move a schedule's next tick on (ticks skipped by its catch-up policy)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(SC)
                .where(SC.c.id == schedule_id, SC.c.next_at == seen)
                .values(next_at=next_at)
            )

    @retry_conflicts
    def fire_tick(
        self,
        schedule_id: str,
        tick_ms: int,
        next_at: float | None,
        new: NewExecution | None,
    ) -> Fired:
        """Fire one tick: record it, apply the overlap policy, start the execution.

        ``new`` None records the tick as refused (its input is invalid). With
        ``next_at`` (a tick of the sweep, not a trigger) the schedule's next tick moves
        on (never back), and nothing fires if the schedule was paused meanwhile.
        """
        now = time.time()
        try:
            with self.engine.begin() as conn:
                # The schedule row first: fires of one schedule queue up here, so the
                # overlap check below sees the previous fire's execution.
                sched = conn.execute(
                    update(SC)
                    .where(SC.c.id == schedule_id)
                    .values(updated_at=now)
                    .returning(SC.c.overlap, SC.c.last_execution_id, SC.c.next_at, SC.c.paused)
                ).first()
                # Paused (or deleted) meanwhile: once pause returns, no tick fires.
                if sched is None or (sched.paused and next_at is not None):
                    return Fired(outcome=None)
                fired = self._fire(conn, sched, new, now)
                conn.execute(
                    insert(T).values(
                        schedule_id=schedule_id,
                        tick_ms=tick_ms,
                        outcome=fired.outcome,
                        execution_id=fired.execution_id,
                        fired_at=now,
                    )
                )
                values: dict[str, Any] = {}
                if fired.execution_id is not None:
                    values.update(last_execution_id=fired.execution_id, last_fired_at=now)
                if next_at is not None and (sched.next_at is None or next_at > sched.next_at):
                    values["next_at"] = next_at
                if values:
                    conn.execute(update(SC).where(SC.c.id == schedule_id).values(**values))
                return fired
        except IntegrityError:
            return Fired(outcome=None)  # another worker fired this tick

    def _fire(self, conn: Connection, sched: Any, new: NewExecution | None, now: float) -> Fired:
        if new is None:
            return Fired(outcome="refused")
        previous = sched.last_execution_id
        running = (
            previous is not None
            and conn.execute(select(E.c.status).where(E.c.id == previous)).scalar()
            in EXECUTION_ACTIVE
        )
        if running and sched.overlap == "skip":
            return Fired(outcome="skipped")
        if running and sched.overlap == "cancel_previous":
            self.row.lock(conn, previous, now)
            error = "cancelled: a newer scheduled execution replaced it (overlap: cancel_previous)"
            # Ending it cancels its running children in the same transaction.
            self.row.end(conn, previous, X.CANCELLED, now, error=error)
        dispatches = self.starts.insert(conn, [new], now)
        return Fired("started", new.execution_id, dispatches)

    def schedule_ticks(
        self, schedule_id: str, limit: int = 1000
    ) -> list[tuple[int, str, str | None]]:
        """``(tick_ms, outcome, execution_id)`` of a schedule's ticks, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(T.c.tick_ms, T.c.outcome, T.c.execution_id)
                .where(T.c.schedule_id == schedule_id)
                .order_by(T.c.tick_ms.desc())
                .limit(limit)
            ).all()
        return [(r.tick_ms, r.outcome, r.execution_id) for r in reversed(rows)]

    def delete_start_history_before(self, cutoff: float) -> int:
        """Forget schedule ticks older than ``cutoff``, and delayed starts made before it
        that started or were cancelled (retention). Next ticks are never that old."""
        with self.engine.begin() as conn:
            ticks = conn.execute(delete(T).where(T.c.tick_ms < int(cutoff * 1000)))
            starts = conn.execute(
                delete(DS).where(DS.c.status != START_PENDING, DS.c.created_at < cutoff)
            )
            return int(ticks.rowcount) + int(starts.rowcount)


def _schedule(row: Any) -> ScheduleRow:
    fields = ScheduleRow.__dataclass_fields__
    return ScheduleRow(**{k: v for k, v in row._mapping.items() if k in fields})
