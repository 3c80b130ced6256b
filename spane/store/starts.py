"""Writing new executions: one (a sub-workflow's child parks its parent in the same
transaction), or a batch in one transaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .base import retry_conflicts
from .definitions import Definitions
from .history import History
from .parking import Parking
from .records import Claim, Dispatch
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


class Starts:
    """Creates executions.

    Args:
        engine: The store's engine.
        definitions: The workflows' graphs.
        history: Records the starts.
        parking: Parks a sub-workflow node on the child it starts.
        trace_execution: Opens an execution's root span around its creation and yields
            its W3C traceparent, stored with the execution. Every creation goes through
            ``insert``, so each gets one.
        lease_seconds: The lease of a queued entry node.
    """

    def __init__(
        self,
        engine: Engine,
        definitions: Definitions,
        history: History,
        parking: Parking,
        trace_execution: Callable[..., AbstractContextManager[str | None]],
        lease_seconds: float,
    ):
        self.engine = engine
        self.definitions = definitions
        self.history = history
        self.parking = parking
        self.trace_execution = trace_execution
        self.lease_seconds = lease_seconds

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
        child_id = new.execution_id
        try:
            with self.engine.begin() as conn:
                if parent is not None and not self.parking.park(
                    conn, parent, "waiting_on_child", child_id, child_id=child_id
                ):
                    return "", []
                dispatches = self.insert(conn, [new], time.time(), parent)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.find_by_idempotency_key(tenant, idempotency_key)
            if existing is None:
                raise
            return existing, []
        return child_id, dispatches

    def find_by_idempotency_key(self, tenant: str, key: str) -> str | None:
        """Return the execution started with this tenant and idempotency key, if any."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(E.c.id).where(E.c.tenant == tenant, E.c.idempotency_key == key)
            ).scalar()

    def insert(
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
            graph = self.definitions.graph(new.workflow_id, new.version, conn)
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
                        "status": S.QUEUED if entry else S.PENDING,
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
                    "status": X.RUNNING,
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
        self.history.record_events(conn, events)
        return dispatches

    @retry_conflicts
    def create_executions(self, batch: list[NewExecution]) -> list[Dispatch]:
        """Insert every execution of ``batch`` in one transaction; all or none."""
        with self.engine.begin() as conn:
            return self.insert(conn, batch, time.time())
