"""The one object behind which all SQL lives."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..definitions import Graph, Workflow
from ..limits import Rules
from ..payloads import Payloads
from .base import retry_conflicts
from .browse import Browse
from .callbacks import Callbacks
from .fair import Fair
from .limits import Limits
from .operations import Operations
from .protection import Protection
from .records import (
    EXECUTION_TERMINAL,
    Claim,
    Dispatch,
    Execution,
    ExecutionSummary,
    NodeState,
    Outcome,
)
from .schema import executions as E
from .schema import nodes as N
from .schema import workflows as W
from .signals import STARTING_VALUES
from .starts import NewExecution
from .tokens import Tokens
from .transitions import _held

#: The columns of an ``ExecutionSummary``: no payloads.
_SUMMARY = (
    E.c.id,
    E.c.workflow_id,
    E.c.version,
    E.c.tenant,
    E.c.status,
    E.c.created_at,
    E.c.finished_at,
    E.c.parent_id,
)


def _untraced(**_: Any) -> AbstractContextManager[str | None]:
    return contextlib.nullcontext()


class Store(Protection, Operations):
    """All persistence of workflows, executions and nodes.

    Args:
        engine: A SQLAlchemy engine (SQLite or PostgreSQL) migrated to the latest schema.
        payloads: Packs and unpacks stored values.
        lease_seconds: How long a running attempt may go without a heartbeat, and a queued
            node without being taken, before recovery looks at it.
        trace_execution: Opens an execution's root span around its creation and yields
            its W3C traceparent, stored with the execution (see ``Tracing.execution``).
            Every creation path inserts through ``_insert_executions``, so each gets one.
        rules: Concurrency limits from the settings (``spane.limits``).
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        *,
        lease_seconds: float = 15.0,
        trace_execution: Callable[..., AbstractContextManager[str | None]] | None = None,
        rules: Rules | None = None,
    ):
        self.engine = engine
        self.payloads = payloads
        self.lease_seconds = lease_seconds
        self.trace_execution = trace_execution or _untraced
        self._meta_cache: dict[str, Any] = {}
        self._definitions: dict[tuple[str, int], Workflow] = {}
        self._graphs: dict[tuple[str, int], Graph] = {}
        self.browse = Browse(engine)
        self.tokens = Tokens(engine)
        self.callbacks = Callbacks(engine)
        self.admission = Limits(self, rules or Rules())
        self.fair = Fair(self)

    # -- workflows -------------------------------------------------------------------

    def save_workflow(self, workflow_id: str, digest: str, definition: str) -> tuple[int, bool]:
        """Store a new version unless the latest has the same hash; return (version, new)."""
        for _ in range(5):
            with self.engine.begin() as conn:
                latest = conn.execute(
                    select(W.c.version, W.c.hash)
                    .where(W.c.workflow_id == workflow_id)
                    .order_by(W.c.version.desc())
                    .limit(1)
                ).first()
                if latest is not None and latest.hash == digest:
                    return latest.version, False
                version = 1 if latest is None else latest.version + 1
                try:
                    conn.execute(
                        insert(W).values(
                            workflow_id=workflow_id,
                            version=version,
                            hash=digest,
                            definition=definition,
                            created_at=time.time(),
                        )
                    )
                except IntegrityError:
                    continue  # a concurrent registration took this version number
                return version, True
        raise errors.SpaneError(f"could not register workflow {workflow_id!r}: too much contention")

    def load_workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        """Return a stored definition (latest version unless ``version`` is given)."""
        return self.workflow_version(workflow_id, version)[1]

    def latest_version(self, workflow_id: str) -> int | None:
        """Return the latest version of a workflow, or None if it is not registered."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(W.c.version)).where(W.c.workflow_id == workflow_id)
            ).scalar()

    # -- executions ------------------------------------------------------------------

    def create_execution(
        self,
        *,
        workflow_id: str,
        version: int,
        tenant: str,
        lane: str,
        node_lanes: dict[str, str],
        input: str,
        idempotency_key: str | None = None,
        parent: Claim | None = None,
        on_finish: str | None = None,
    ) -> tuple[str, list[Dispatch]]:
        """Insert an execution with its nodes, entry nodes queued, in one transaction.

        Returns the execution id and the entry-node messages to send, or, when the
        idempotency key was already used by this tenant, that execution's id and nothing.
        With ``parent`` (a running ``subworkflow`` attempt), the parent node is parked
        in ``waiting`` on the new child in the same transaction; if that attempt is
        stale, nothing is written and ``("", [])`` is returned. ``on_finish`` (a callback's
        JSON) arms a post for when the execution ends.
        """
        now = time.time()
        new = NewExecution(
            workflow_id=workflow_id,
            version=version,
            tenant=tenant,
            lane=lane,
            node_lanes=node_lanes,
            input=input,
            idempotency_key=idempotency_key,
            on_finish=on_finish,
        )
        execution_id = new.execution_id
        try:
            with self.engine.begin() as conn:
                if parent is not None and not self._park_on_child(conn, parent, execution_id):
                    return "", []
                dispatches = self._insert_execution(conn, new, now, parent)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.find_by_idempotency_key(tenant, idempotency_key)
            if existing is None:
                raise
            return existing, []
        return execution_id, dispatches

    def _park_on_child(self, conn: Connection, parent: Claim, child_id: str) -> bool:
        if not self._may_park(conn, parent):
            return False
        parked = conn.execute(
            update(N)
            .where(_held(parent))
            .values(status="waiting", child_id=child_id, lease_until=None)
        )
        if parked.rowcount:
            self.record_event(
                conn,
                parent.execution_id,
                parent.node_id,
                "waiting_on_child",
                parent.attempt,
                child_id,
            )
        return bool(parked.rowcount)

    def find_by_idempotency_key(self, tenant: str, key: str) -> str | None:
        """Return the execution started with this tenant and idempotency key, if any."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(E.c.id).where(E.c.tenant == tenant, E.c.idempotency_key == key)
            ).scalar()

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
        graph = self.graph(ex.workflow_id, ex.version)
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
            row = conn.execute(select(*_SUMMARY).where(E.c.id == execution_id)).first()
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
        query = select(*_SUMMARY)
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
            row = self._lock_execution(conn, execution_id, time.time())
            now = time.time()  # after the lock: what committed before it came first
            if row.status in EXECUTION_TERMINAL:
                raise errors.InvalidTransition(
                    f"execution {execution_id} is already {row.status}; it cannot be cancelled"
                )
            self._end_execution(conn, execution_id, "cancelled", now, error="cancelled")

    @retry_conflicts
    def set_paused(self, execution_id: str, paused: bool) -> Outcome:
        """Pause a running execution, or resume a paused one.

        Resuming sends every queued node again (the messages of the pause were dropped by
        the claim guard) and completes an execution whose last node finished while it was
        paused; due timers and parked parents are taken up by the next sweep.
        """
        now = time.time()
        want, have = ("paused", "running") if paused else ("running", "paused")
        with self.engine.begin() as conn:
            row = self._lock_execution(conn, execution_id, now)
            if row.status != have:
                verb = "paused" if paused else "resumed"
                raise errors.InvalidTransition(
                    f"execution {execution_id} is {row.status}; only a {have} execution "
                    f"can be {verb}"
                )
            conn.execute(update(E).where(E.c.id == execution_id).values(status=want))
            self.record_event(conn, execution_id, None, want if paused else "resumed", None, None)
            if not paused and row.remaining == 0:
                graph = self.graph(row.workflow_id, row.version, conn)
                return self._complete(conn, execution_id, graph, row, now)
        return Outcome(dispatches=[] if paused else self.queued_nodes(execution_id))

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
        from .schema import dead_letters as D
        from .schema import events as V
        from .schema import signal_waits as SW
        from .schema import signals as G

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
        """Every blob reference the database still holds (inputs and outputs)."""
        refs: set[str] = set()
        with self.engine.connect() as conn:
            for column in (E.c.input, E.c.output, N.c.output, *STARTING_VALUES):
                rows = conn.execute(select(column).where(column.like("@%") | column.like("&%")))
                refs.update(ref for (text,) in rows for ref in self.payloads.refs(text))
        return refs
