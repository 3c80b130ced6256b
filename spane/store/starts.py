"""Writing new executions: one, a batch in one transaction, and delayed starts.

A delayed start rests in ``spane_delayed_starts`` under the id its execution will have,
so the id handed to the caller is valid before and after the start; the transaction
that creates the execution also marks the delayed start as started, so it starts once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from .base import retry_conflicts
from .records import Claim, Dispatch
from .recovery import Recovery
from .schema import delayed_starts as S
from .schema import executions as E
from .schema import nodes as N


@dataclass(frozen=True)
class NewExecution:
    """What starting one execution needs, checked and packed by the caller.

    Attributes:
        workflow_id: The workflow to run.
        version: Its pinned version.
        tenant: Who it runs for.
        lane: The execution's lane.
        node_lanes: The lane of each node.
        input: The packed input.
        idempotency_key: At most one execution per tenant and key.
        execution_id: The id to use (a new one when empty).
        on_finish: The completion callback, as JSON (None: none).
    """

    workflow_id: str
    version: int
    tenant: str
    lane: str
    node_lanes: dict[str, str]
    input: str
    idempotency_key: str | None = None
    execution_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    on_finish: str | None = None


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


class Starts(Recovery):
    """Layer of ``Store`` that writes executions and keeps delayed starts."""

    def _insert_execution(
        self, conn: Connection, new: NewExecution, now: float, parent: Claim | None = None
    ) -> list[Dispatch]:
        """Insert an execution with its nodes, entry nodes queued; return their messages."""
        return self._insert_executions(conn, [new], now, parent)

    def _insert_executions(
        self,
        conn: Connection,
        batch: list[NewExecution],
        now: float,
        parent: Claim | None = None,
    ) -> list[Dispatch]:
        """Insert executions with their nodes in three statements, whatever their number."""
        execution_rows, node_rows, dispatches = [], [], []
        events: list[tuple[str, str | None, str, int | None]] = []
        for new in batch:
            graph = self.graph(new.workflow_id, new.version)
            execution_id = new.execution_id
            events.append((execution_id, None, "execution_started", None))
            for node_id in graph.order:
                entry = not graph.parents[node_id]
                node_type = graph.nodes[node_id].type
                lane = new.node_lanes[node_id]
                node_rows.append(
                    {
                        "execution_id": execution_id,
                        "node_id": node_id,
                        "type": node_type,
                        "lane": lane,
                        "status": "queued" if entry else "pending",
                        "attempt": 1 if entry else 0,
                        "waiting_on": len(graph.parents[node_id]),
                        "live_parents": 0,
                        "queued_at": now if entry else None,
                        "lease_until": now + self.lease_seconds if entry else None,
                    }
                )
                if entry:
                    dispatches.append(Dispatch(execution_id, node_id, 1, node_type, lane))
                    events.append((execution_id, node_id, "queued", 1))
            # The root span marks the execution's creation; every span of its nodes
            # descends from the traceparent stored here, in whatever process they run.
            with self.trace_execution(
                execution_id=execution_id,
                workflow_id=new.workflow_id,
                version=new.version,
                tenant=new.tenant,
                lane=new.lane,
                parent=parent,
            ) as traceparent:
                pass
            execution_rows.append(
                {
                    "traceparent": traceparent,
                    "id": execution_id,
                    "workflow_id": new.workflow_id,
                    "version": new.version,
                    "tenant": new.tenant,
                    "lane": new.lane,
                    "status": "running",
                    "input": new.input,
                    "remaining": len(graph.order),
                    "parent_id": parent.execution_id if parent else None,
                    "parent_node_id": parent.node_id if parent else None,
                    "depth": parent.depth + 1 if parent else 0,
                    "idempotency_key": new.idempotency_key,
                    "on_finish": new.on_finish,
                    "callback_state": "armed" if new.on_finish else None,
                    "created_at": now,
                    "started_at": now,
                    "updated_at": now,
                }
            )
        conn.execute(insert(E), execution_rows)
        conn.execute(insert(N), node_rows)
        self.record_events(conn, events)
        return dispatches

    @retry_conflicts
    def create_executions(self, batch: list[NewExecution]) -> list[Dispatch]:
        """Insert every execution of ``batch`` in one transaction; all or none."""
        with self.engine.begin() as conn:
            return self._insert_executions(conn, batch, time.time())

    # -- delayed starts --------------------------------------------------------------

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
                        status="pending",
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
                .where(S.c.status == "pending", S.c.start_at <= now)
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
                .where(S.c.id == start.id, S.c.status == "pending")
                .values(status="started")
            )
            if not taken.rowcount:
                return []
            return self._insert_execution(conn, new, now)

    def cancel_delayed_start(self, start_id: str) -> str | None:
        """Cancel a delayed start that has not started; return its status before, or
        None if there is no delayed start with that id."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(S)
                .where(S.c.id == start_id, S.c.status == "pending")
                .values(status="cancelled")
            )
            if done.rowcount:
                return "pending"
            status: str | None = conn.execute(select(S.c.status).where(S.c.id == start_id)).scalar()
            return status


def _fields(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k != "created_at"}
