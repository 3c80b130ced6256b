"""Executions as a whole: reading them, cancelling, pausing and resuming, and
retention."""

from __future__ import annotations

import functools
import time
from typing import Any

from sqlalchemy import Engine, select, update

from .. import errors
from ..payloads import Payloads
from ..statuses import EXECUTION_TERMINAL, execution_guard
from ..statuses import ExecutionStatus as X
from .base import retry_conflicts
from .browse import SUMMARY
from .definitions import Definitions
from .execution_row import ExecutionRow
from .history import History
from .records import Execution, ExecutionSummary, NodeState, Outcome
from .recovery import Recovery
from .schema import dead_letters as D
from .schema import delayed_starts as DS
from .schema import events as V
from .schema import executions as E
from .schema import nodes as N
from .schema import schedules as SC
from .schema import signal_waits as SW
from .schema import signals as G

#: Stored values of schedules, delayed starts and signals (each may be a blob reference).
STARTING_VALUES = (SC.c.input, DS.c.input, G.c.payload)

execution_guard(X.PAUSED, X.RUNNING)
execution_guard(X.RUNNING, X.PAUSED)
execution_guard(X.CANCELLED, X.RUNNING, X.PAUSED)


class Executions:
    """Whole executions.

    Args:
        engine: The store's engine.
        payloads: Unpacks values read, lists blob references.
        definitions: The workflows' graphs (the order nodes are shown in).
        history: Records pauses and resumptions.
        row: Takes and ends the execution row.
        recovery: Sends a resumed execution's queued nodes again.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        definitions: Definitions,
        history: History,
        row: ExecutionRow,
        recovery: Recovery,
    ):
        self.engine = engine
        self.payloads = payloads
        self.definitions = definitions
        self.history = history
        self.row = row
        self.recovery = recovery

    def get_execution(self, execution_id: str) -> Execution:
        """Return an execution with its nodes and values."""
        with self.engine.connect() as conn:
            ex = conn.execute(select(E).where(E.c.id == execution_id)).first()
            if ex is None:
                raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
            node_rows = conn.execute(select(N).where(N.c.execution_id == execution_id)).all()
            children = conn.execute(
                select(E.c.id).where(E.c.parent_id == execution_id).order_by(E.c.created_at)
            ).scalars()
            child_ids = list(children)
        # One memo for the whole execution: a value that many nodes returned is decoded
        # and held once.
        unpack = functools.partial(self.payloads.unpack, memo={})
        graph = self.definitions.graph(ex.workflow_id, ex.version)
        order = {node_id: i for i, node_id in enumerate(graph.order)}
        nodes = {
            r.node_id: NodeState(
                status=r.status,
                type=r.type,
                attempts=r.attempt,
                output=unpack(
                    ex.tenant, r.output, what=f"output of node {r.node_id!r} of execution {ex.id}"
                ),
                error=r.error,
                queued_at=r.queued_at,
                started_at=r.started_at,
                finished_at=r.finished_at,
                child_id=r.child_id,
            )
            for r in sorted(node_rows, key=lambda r: order.get(r.node_id, 0))
        }
        return Execution(
            id=ex.id,
            workflow_id=ex.workflow_id,
            version=ex.version,
            tenant=ex.tenant,
            status=ex.status,
            input=unpack(ex.tenant, ex.input, what=f"input of execution {ex.id}"),
            output=unpack(ex.tenant, ex.output, what=f"output of execution {ex.id}"),
            error=ex.error,
            created_at=ex.created_at,
            started_at=ex.started_at,
            finished_at=ex.finished_at,
            parent_id=ex.parent_id,
            parent_node_id=ex.parent_node_id,
            children=child_ids,
            nodes=nodes,
        )

    def stored_output(self, execution_id: str) -> str | None:
        """The output of an execution as it is stored (references unresolved)."""
        with self.engine.connect() as conn:
            return conn.execute(select(E.c.output).where(E.c.id == execution_id)).scalar()

    def execution_status(self, execution_id: str) -> str:
        """Return only the status of an execution (cheap, for polling)."""
        with self.engine.connect() as conn:
            status = conn.execute(select(E.c.status).where(E.c.id == execution_id)).scalar()
        if status is None:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return str(status)

    def summary(self, execution_id: str) -> ExecutionSummary:
        """Return one execution's summary, without reading any payload."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*SUMMARY).where(E.c.id == execution_id)).first()
        if row is None:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return ExecutionSummary(**row._mapping)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        tenant: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ExecutionSummary]:
        """Return executions, newest first, without reading any payload."""
        query = select(*SUMMARY)
        filters: dict[str, Any] = {
            "status": status,
            "workflow_id": workflow_id,
            "tenant": tenant,
            "parent_id": parent_id,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(E.c[column] == value)
        query = query.order_by(E.c.created_at.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [ExecutionSummary(**row._mapping) for row in conn.execute(query)]

    @retry_conflicts
    def cancel_execution(self, execution_id: str) -> None:
        """Cancel an execution, its not-yet-started nodes and its running children."""
        with self.engine.begin() as conn:
            row = self.row.lock(conn, execution_id, time.time())
            now = time.time()  # after the lock: what committed before it came first
            if row.status in EXECUTION_TERMINAL:
                raise errors.InvalidTransition(
                    f"execution {execution_id} is already {row.status}; it cannot be cancelled"
                )
            self.row.end(conn, execution_id, X.CANCELLED, now, error="cancelled")

    @retry_conflicts
    def set_paused(self, execution_id: str, paused: bool) -> Outcome:
        """Pause a running execution, or resume a paused one.

        Resuming sends every queued node again (the messages of the pause were dropped by
        the claim guard) and completes an execution whose last node finished while it was
        paused; due timers and parked parents are taken up by the next sweep.
        """
        now = time.time()
        want, have = (X.PAUSED, X.RUNNING) if paused else (X.RUNNING, X.PAUSED)
        with self.engine.begin() as conn:
            row = self.row.lock(conn, execution_id, now)
            if row.status != have:
                verb = "paused" if paused else "resumed"
                raise errors.InvalidTransition(
                    f"execution {execution_id} is {row.status}; only a {have} execution "
                    f"can be {verb}"
                )
            conn.execute(
                update(E).where(E.c.id == execution_id, E.c.status == have).values(status=want)
            )
            event = "paused" if paused else "resumed"
            self.history.record_event(conn, execution_id, None, event, None, None)
            if not paused and row.remaining == 0:
                graph = self.definitions.graph(row.workflow_id, row.version, conn)
                return self.row.complete(conn, execution_id, graph, row, now)
        return Outcome(dispatches=[] if paused else self.recovery.queued_nodes(execution_id))

    def node_statuses(self, execution_id: str) -> dict[str, str]:
        """Return ``{node_id: status}`` of an execution (no payloads)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(N.c.node_id, N.c.status).where(N.c.execution_id == execution_id)
            ).all()
        if not rows:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return {r.node_id: r.status for r in rows}

    def delete_finished_before(self, cutoff: float, *, batch: int = 500) -> int:
        """Delete executions that ended before ``cutoff``, with their nodes and events."""
        deleted = 0
        while True:
            with self.engine.begin() as conn:
                ids = list(
                    conn.execute(
                        select(E.c.id)
                        .where(
                            E.c.status.in_(EXECUTION_TERMINAL),
                            E.c.finished_at < cutoff,
                        )
                        .limit(batch)
                    ).scalars()
                )
                if not ids:
                    return deleted
                for table, column in (
                    (N, N.c.execution_id),
                    (V, V.c.execution_id),
                    (D, D.c.execution_id),
                    (G, G.c.execution_id),
                    (SW, SW.c.execution_id),
                    (E, E.c.id),
                ):
                    conn.execute(table.delete().where(column.in_(ids)))
                deleted += len(ids)

    def referenced_blobs(self) -> set[str]:
        """Every blob reference the database still holds: inputs and outputs, and the
        arguments of dead-lettered messages that may be sent again."""
        refs: set[str] = set()
        with self.engine.connect() as conn:
            for column in (E.c.input, E.c.output, N.c.output, *STARTING_VALUES):
                rows = conn.execute(select(column).where(column.like("@%") | column.like("&%")))
                refs.update(ref for (text,) in rows for ref in self.payloads.refs(text))
            rows = conn.execute(
                select(D.c.message).where(D.c.status == "open", D.c.message.like("%spane-blob:%"))
            )
            refs.update(ref for (raw,) in rows for ref in self.payloads.message_refs(raw))
        return refs
