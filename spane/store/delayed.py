"""Delayed starts: a start that waits in the database until its time.

A delayed start rests in ``spane_delayed_starts`` under the id its execution will have,
so the id handed to the caller is valid before and after the start; the transaction
that creates the execution also marks the delayed start as started, so it starts once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from .base import retry_conflicts
from .records import Dispatch
from .schema import delayed_starts as S
from .schema import executions as E
from .starts import NewExecution, Starts

#: A delayed start's states: pending until it starts or is cancelled.
START_PENDING, START_STARTED, START_CANCELLED = "pending", "started", "cancelled"


@dataclass(frozen=True)
class DelayedStart:
    """A start that waits in the database until ``start_at``."""

    id: str
    workflow_id: str
    version: int
    tenant: str
    lane: str | None
    input: str
    idempotency_key: str | None
    start_at: float
    status: str
    on_finish: str | None = None


class DelayedStarts:
    """Starts kept until their time.

    Args:
        engine: The store's engine.
        starts: Creates the execution when its time comes.
    """

    def __init__(self, engine: Engine, starts: Starts):
        self.engine = engine
        self.starts = starts

    def add_delayed_start(self, new: NewExecution, start_at: float) -> str:
        """Keep ``new`` until ``start_at``; return its id (the execution's id to be).

        With an idempotency key already used by this tenant (by an execution or another
        delayed start), that id is returned and nothing is written.
        """
        key = new.idempotency_key
        if key is not None:
            existing = self.find_start_by_key(new.tenant, key)
            if existing is not None:
                return existing
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(S).values(
                        id=new.execution_id,
                        workflow_id=new.workflow_id,
                        version=new.version,
                        tenant=new.tenant,
                        lane=new.lane,
                        input=new.input,
                        idempotency_key=key,
                        on_finish=new.on_finish,
                        start_at=start_at,
                        status=START_PENDING,
                        created_at=time.time(),
                    )
                )
        except IntegrityError:
            existing = self.find_start_by_key(new.tenant, key) if key else None
            if existing is None:
                raise
            return existing
        return new.execution_id

    def find_start_by_key(self, tenant: str, key: str) -> str | None:
        """The execution or delayed start made with this tenant and idempotency key."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(E.c.id).where(E.c.tenant == tenant, E.c.idempotency_key == key)
            ).scalar()
            if found is None:
                found = conn.execute(
                    select(S.c.id).where(S.c.tenant == tenant, S.c.idempotency_key == key)
                ).scalar()
        return found

    def delayed_start(self, start_id: str) -> DelayedStart | None:
        """Return a delayed start, or None if there is none with that id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(S).where(S.c.id == start_id)).first()
        return None if row is None else DelayedStart(**_fields(row))

    def due_delayed_starts(self, now: float, limit: int = 100) -> list[DelayedStart]:
        """Delayed starts whose time has come, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(S)
                .where(S.c.status == START_PENDING, S.c.start_at <= now)
                .order_by(S.c.start_at)
                .limit(limit)
            ).all()
        return [DelayedStart(**_fields(r)) for r in rows]

    @retry_conflicts
    def start_delayed(self, start: DelayedStart, node_lanes: dict[str, str]) -> list[Dispatch]:
        """Create the execution of a due delayed start; [] if it started or was cancelled.

        Marking the start and creating the execution is one transaction: it happens once.
        """
        now = time.time()
        new = NewExecution(
            workflow_id=start.workflow_id,
            version=start.version,
            tenant=start.tenant,
            lane=start.lane or "default",
            node_lanes=node_lanes,
            input=start.input,
            idempotency_key=start.idempotency_key,
            execution_id=start.id,
            on_finish=start.on_finish,
        )
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(S)
                .where(S.c.id == start.id, S.c.status == START_PENDING)
                .values(status=START_STARTED)
            )
            if not taken.rowcount:
                return []
            return self.starts.insert(conn, [new], now)

    def cancel_delayed_start(self, start_id: str) -> str | None:
        """Cancel a delayed start that has not started; return its status before, or
        None if there is no delayed start with that id."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(S)
                .where(S.c.id == start_id, S.c.status == START_PENDING)
                .values(status=START_CANCELLED)
            )
            if done.rowcount:
                return START_PENDING
            status: str | None = conn.execute(select(S.c.status).where(S.c.id == start_id)).scalar()
            return status


def _fields(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k != "created_at"}
