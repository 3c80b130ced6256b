"""Concurrency limits in the database: nodes held for a slot, and slots given in order.

A node over a limit stays ``queued`` in ``spane_nodes`` with no lease (so recovery never
sends it as a lost message) and has a ``held`` row here; no broker message and no thread
stand for it. An ``admitted`` row holds a slot only while its node is live at the same
attempt (queued, running or waiting): a node that ended, was handed back or lost its
worker's lease stops counting by itself, so no path can leak a slot. Each limit key has
a lock row, taken in key order, so two workers never give out the same slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..limits import Limit, Rules
from ..payloads import Payloads
from ..statuses import ExecutionStatus as X
from .base import retry_conflicts
from .claims import parent_outputs
from .records import EXECUTION_ACTIVE, Dispatch
from .schema import executions as E
from .schema import metadata
from .schema import nodes as N

if TYPE_CHECKING:
    from ..definitions import Graph
    from .definitions import Definitions
    from .execution_row import ExecutionRow

admission = Table(
    "spane_admission",
    metadata,
    Column("execution_id", String(36), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("kind", String(8), nullable=False),  # limit | fair
    Column("state", String(8), nullable=False),  # held | admitted
    Column("limits", Text, nullable=False),
    Column("held_since", Float, nullable=False),
    Column("admitted_at", Float),
    Index("ix_spane_admission_turns", "lane", "kind", "state", "tenant", "held_since"),
)
admission_keys = Table(
    "spane_admission_keys",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("execution_id", String(36), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Index("ix_spane_admission_keys_node", "execution_id", "node_id"),
)
admission_locks = Table(
    "spane_admission_locks",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("vtime", Float, nullable=False, server_default="0"),
)
A, K, L = admission, admission_keys, admission_locks

#: Node statuses in which an admitted attempt holds its slot.
LIVE = ("queued", "running", "waiting")


@dataclass(frozen=True)
class Admitted(Dispatch):
    """A node message that passed admission: it is sent as it is."""


@dataclass(frozen=True)
class Arrival:
    """A ready node subject to limits, with the limits it counts against."""

    dispatch: Dispatch
    tenant: str
    limits: tuple[Limit, ...]


def row_of(execution_id: str, node_id: str) -> Any:
    return and_(A.c.execution_id == execution_id, A.c.node_id == node_id)


def queued_at(execution_id: str, node_id: str, attempt: int) -> Any:
    return and_(
        N.c.execution_id == execution_id,
        N.c.node_id == node_id,
        N.c.status == "queued",
        N.c.attempt == attempt,
    )


def ensure_locks(conn: Connection, names: list[str]) -> None:
    """Create the lock rows of ``names`` that do not exist yet."""
    have = set(conn.execute(select(L.c.name).where(L.c.name.in_(names))).scalars())
    missing = [{"name": n} for n in names if n not in have]
    if missing:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(L).on_conflict_do_nothing(), missing)


class LimitRows:
    """What limits and the admission front share: locks, rows, and look-ups.

    Args:
        engine: The database.
        payloads: Unpacks the values a concurrency key is read from.
        definitions: Workflow graphs.
        row: Locks, reads and ends the execution row.
        lease: Seconds an admitted node's message may wait before recovery re-sends it.
        rules: Limits that come from the settings.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        definitions: Definitions,
        row: ExecutionRow,
        lease: float,
        rules: Rules,
    ) -> None:
        self.engine = engine
        self.payloads = payloads
        self.definitions = definitions
        self.row = row
        self.lease = lease
        self.rules = rules

    def lock(self, conn: Connection, names: list[str], locked: set[str]) -> None:
        todo = sorted(set(names) - locked)
        if not todo:
            return
        ensure_locks(conn, todo)
        conn.execute(
            select(L.c.name).where(L.c.name.in_(todo)).order_by(L.c.name).with_for_update()
        )
        locked.update(todo)

    def forget(self, conn: Connection, execution_id: str, node_id: str) -> None:
        conn.execute(delete(A).where(row_of(execution_id, node_id)))
        conn.execute(delete(K).where(K.c.execution_id == execution_id, K.c.node_id == node_id))

    def forget_ended(self) -> int:
        """Delete rows of limited nodes no longer live at their attempt; return how many."""
        live = exists().where(
            N.c.execution_id == A.c.execution_id,
            N.c.node_id == A.c.node_id,
            N.c.attempt == A.c.attempt,
            N.c.status.in_(LIVE),
        )
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(A).where(A.c.kind == "limit", ~live).returning(A.c.execution_id)
            ).all()
            orphan = ~exists().where(
                A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id
            )
            if gone:
                conn.execute(delete(K).where(orphan))
        return len(gone)

    def node_input(self, graph: Graph, execution_id: str, node_id: str, tenant: str) -> Any:
        """The input a node will get (for its concurrency key), read and unpacked."""
        parents = graph.parents[node_id]
        unpack = self.payloads.unpack
        where = f"input of node {node_id!r} of execution {execution_id}"
        with self.engine.connect() as conn:
            if not parents:
                text = conn.execute(select(E.c.input).where(E.c.id == execution_id)).scalar_one()
                return unpack(tenant, text, what=where)
            outputs = parent_outputs(conn, execution_id, parents)
        values = {parent: unpack(tenant, text, what=where) for parent, text in outputs.items()}
        return values.get(parents[0]) if len(parents) == 1 else values

    def meta(self, execution_id: str) -> tuple[str, int, str] | None:
        """``(workflow_id, version, tenant)`` of an execution, or None if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(E.c.workflow_id, E.c.version, E.c.tenant).where(E.c.id == execution_id)
            ).first()
        return None if row is None else (row.workflow_id, row.version, row.tenant)

    @retry_conflicts
    def cancel(self, execution_id: str, reason: str) -> bool:
        """Cancel an execution for a ``cancel_*`` strategy; False if it already ended."""
        with self.engine.begin() as conn:
            row = self.row.lock(conn, execution_id, time.time())
            if row.status not in EXECUTION_ACTIVE:
                return False
            self.row.end(conn, execution_id, X.CANCELLED, time.time(), error=reason)
        return True
