"""Concurrency limits in the database: nodes held for a slot, and slots given in order.

A node over a limit stays ``queued`` in ``spane_nodes`` with no lease (so recovery never
sends it as a lost message) and has a ``held`` row here; no broker message and no thread
stand for it. An ``admitted`` row holds a slot only while its node is live at the same
attempt (queued, running or waiting): a node that ended, was handed back or lost its
worker's lease stops counting by itself, so no path can leak a slot. Each limit key has
a lock row, taken in key order, so two workers never give out the same slot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..limits import Limit, Rules
from .base import retry_conflicts
from .records import EXECUTION_ACTIVE, Dispatch
from .schema import executions as E
from .schema import metadata
from .schema import nodes as N

if TYPE_CHECKING:
    from ..definitions import Graph
    from .store import Store

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
#: Waiters looked at per key by one pass.
FILL_BATCH = 200


@dataclass(frozen=True)
class Admitted(Dispatch):
    """A node message that passed admission: it is sent as it is."""


@dataclass(frozen=True)
class Arrival:
    """A ready node subject to limits, with the limits it counts against."""

    dispatch: Dispatch
    tenant: str
    limits: tuple[Limit, ...]


def _row(execution_id: str, node_id: str) -> Any:
    return and_(A.c.execution_id == execution_id, A.c.node_id == node_id)


def _queued(execution_id: str, node_id: str, attempt: int) -> Any:
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


class Limits:
    """The SQL of concurrency limits, beside the ``Store`` whose transactions call it.

    Args:
        store: The store (its engine, lease and cached execution metadata).
        rules: Limits that come from the settings.
    """

    def __init__(self, store: Store, rules: Rules) -> None:
        self.store = store
        self.rules = rules

    def _lock(self, conn: Connection, names: list[str], locked: set[str]) -> None:
        todo = sorted(set(names) - locked)
        if not todo:
            return
        ensure_locks(conn, todo)
        conn.execute(
            select(L.c.name).where(L.c.name.in_(todo)).order_by(L.c.name).with_for_update()
        )
        locked.update(todo)

    def _forget(self, conn: Connection, execution_id: str, node_id: str) -> None:
        conn.execute(delete(A).where(_row(execution_id, node_id)))
        conn.execute(delete(K).where(K.c.execution_id == execution_id, K.c.node_id == node_id))

    def _in_use(self, conn: Connection, key: str) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(K)
                .join(A, and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id))
                .join(N, and_(N.c.execution_id == A.c.execution_id, N.c.node_id == A.c.node_id))
                .where(
                    K.c.key == key,
                    A.c.state == "admitted",
                    N.c.attempt == A.c.attempt,
                    N.c.status.in_(LIVE),
                )
            ).scalar_one()
        )

    def _crowd(self, conn: Connection, key: str) -> list[str]:
        """Executions, oldest first, with a live attempt holding or waiting on ``key``."""
        rows = conn.execute(
            select(A.c.execution_id)
            .join(K, and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id))
            .join(N, and_(N.c.execution_id == A.c.execution_id, N.c.node_id == A.c.node_id))
            .join(E, E.c.id == A.c.execution_id)
            .where(
                K.c.key == key,
                N.c.attempt == A.c.attempt,
                N.c.status.in_(LIVE),
                E.c.status.in_(EXECUTION_ACTIVE),
            )
            .order_by(A.c.held_since, A.c.execution_id)
        )
        return list(rows.scalars())

    @retry_conflicts
    def arrive(self, arrivals: list[Arrival]) -> tuple[list[Dispatch], dict[str, str]]:
        """Admit ready nodes under their limits or hold them; return what to send and the
        executions a ``cancel_*`` strategy cancels (id: reason)."""
        now = time.time()
        send: list[Dispatch] = []
        victims: dict[str, str] = {}
        locked: set[str] = set()
        names = sorted({limit.key for a in arrivals for limit in a.limits})
        with self.store.engine.begin() as conn:
            self._lock(conn, names, locked)
            for arrival in arrivals:
                d = arrival.dispatch
                node = conn.execute(
                    select(N.c.status, N.c.attempt).where(
                        N.c.execution_id == d.execution_id, N.c.node_id == d.node_id
                    )
                ).first()
                if node is None or node.status != "queued" or node.attempt != d.attempt:
                    continue  # a stale message: the node moved on
                row = conn.execute(
                    select(A.c.attempt, A.c.state, A.c.held_since).where(
                        _row(d.execution_id, d.node_id)
                    )
                ).first()
                if row is not None and row.attempt == d.attempt:
                    if row.state == "admitted":
                        send.append(d)  # sent again (a lost message, a resume)
                    continue
                if row is not None:
                    self._forget(conn, d.execution_id, d.node_id)
                if self._cancels(conn, arrival, victims):
                    continue
                conn.execute(
                    update(N)
                    .where(_queued(d.execution_id, d.node_id, d.attempt))
                    .values(lease_until=None)
                )
                conn.execute(
                    insert(A).values(
                        execution_id=d.execution_id,
                        node_id=d.node_id,
                        attempt=d.attempt,
                        tenant=arrival.tenant,
                        lane=d.lane,
                        kind="limit",
                        state="held",
                        limits=json.dumps([[x.key, x.max] for x in arrival.limits]),
                        # A node sent again keeps its place in line.
                        held_since=row.held_since if row is not None else now,
                    )
                )
                conn.execute(
                    insert(K),
                    [
                        {"key": x.key, "execution_id": d.execution_id, "node_id": d.node_id}
                        for x in arrival.limits
                    ],
                )
            send += self._fill(conn, names, locked, now)
        return send, victims

    def _cancels(self, conn: Connection, arrival: Arrival, victims: dict[str, str]) -> bool:
        """Apply ``cancel_*`` strategies; True when the arriving execution is cancelled."""
        mine = arrival.dispatch.execution_id
        for limit in arrival.limits:
            if limit.strategy == "queue":
                continue
            crowd = [e for e in self._crowd(conn, limit.key) if e != mine and e not in victims]
            if len(crowd) < limit.max:
                continue
            reason = (
                f"cancelled: concurrency key {limit.key} is at its limit of {limit.max} "
                f"(strategy {limit.strategy})"
            )
            if limit.strategy == "cancel_newest":
                victims[mine] = reason
                return True
            for execution_id in crowd[: len(crowd) - limit.max + 1]:
                victims[execution_id] = reason
        return False

    def _fill(
        self, conn: Connection, names: list[str], locked: set[str], now: float
    ) -> list[Dispatch]:
        """Admit waiters on ``names`` in the order they came while every limit of each has
        room. A waiter that cannot go blocks those behind it on each of its keys."""
        if not names:
            return []
        rows = conn.execute(
            select(A.c.execution_id, A.c.node_id, A.c.attempt, A.c.limits)
            .join(E, E.c.id == A.c.execution_id)
            .where(
                A.c.state == "held",
                A.c.kind == "limit",
                E.c.status == "running",
                exists().where(
                    K.c.execution_id == A.c.execution_id,
                    K.c.node_id == A.c.node_id,
                    K.c.key.in_(names),
                ),
            )
            .order_by(A.c.held_since, A.c.execution_id, A.c.node_id)
            .limit(FILL_BATCH)
        ).all()
        in_use: dict[str, int] = {}
        blocked: set[str] = set()
        out: list[Dispatch] = []
        for r in rows:
            limits = [Limit(key, most) for key, most in json.loads(r.limits)]
            keys = [limit.key for limit in limits]
            if blocked.intersection(keys):
                blocked.update(keys)
                continue
            self._lock(conn, keys, locked)
            for key in keys:
                if key not in in_use:
                    in_use[key] = self._in_use(conn, key)
            if any(in_use[limit.key] >= limit.max for limit in limits):
                blocked.update(keys)
                if blocked.issuperset(names):
                    break
                continue
            got = conn.execute(
                update(N)
                .where(_queued(r.execution_id, r.node_id, r.attempt))
                .values(lease_until=now + self.store.lease_seconds)
                .returning(N.c.type, N.c.lane, N.c.wake_at)
            ).first()
            if got is None:
                self._forget(conn, r.execution_id, r.node_id)  # the node moved on
                continue
            conn.execute(
                update(A)
                .where(_row(r.execution_id, r.node_id))
                .values(state="admitted", admitted_at=now)
            )
            for key in keys:
                in_use[key] += 1
            delay = max(0.0, (got.wake_at or 0.0) - now)
            out.append(Admitted(r.execution_id, r.node_id, r.attempt, got.type, got.lane, delay))
        return out

    def ended(self, conn: Connection, execution_id: str, node_id: str) -> list[Dispatch]:
        """A node just ended in ``conn``'s transaction: give its slot to the next waiters.

        No statement unless a limit covers the node.
        """
        meta = self.store.execution_meta(conn, execution_id)
        graph = self.store.graph(meta.workflow_id, meta.version, conn)
        if not self.rules.applies(graph, node_id, meta.tenant):
            return []
        row = conn.execute(select(A.c.state, A.c.limits).where(_row(execution_id, node_id))).first()
        if row is None:
            return []
        self._forget(conn, execution_id, node_id)
        if row.state != "admitted":
            return []
        names = sorted(key for key, _ in json.loads(row.limits))
        locked: set[str] = set()
        self._lock(conn, names, locked)
        return self._fill(conn, names, locked, time.time())

    @retry_conflicts
    def fill(self, names: list[str] | None = None) -> list[Dispatch]:
        """Admit waiters on ``names`` (None: every key someone waits on), after slots
        came free outside a node's own end (a cancelled or failed execution)."""
        with self.store.engine.begin() as conn:
            if names is None:
                names = sorted(
                    conn.execute(
                        select(K.c.key)
                        .join(
                            A,
                            and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id),
                        )
                        .where(A.c.state == "held", A.c.kind == "limit")
                        .distinct()
                    ).scalars()
                )
            locked: set[str] = set()
            self._lock(conn, names, locked)
            return self._fill(conn, names, locked, time.time())

    def forget_ended(self) -> int:
        """Delete rows of limited nodes no longer live at their attempt; return how many."""
        live = exists().where(
            N.c.execution_id == A.c.execution_id,
            N.c.node_id == A.c.node_id,
            N.c.attempt == A.c.attempt,
            N.c.status.in_(LIVE),
        )
        with self.store.engine.begin() as conn:
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
        unpack = self.store.payloads.unpack
        where = f"input of node {node_id!r} of execution {execution_id}"
        with self.store.engine.connect() as conn:
            if not parents:
                text = conn.execute(select(E.c.input).where(E.c.id == execution_id)).scalar_one()
                return unpack(tenant, text, what=where)
            rows = conn.execute(
                select(N.c.node_id, N.c.output).where(
                    N.c.execution_id == execution_id,
                    N.c.node_id.in_(parents),
                    N.c.status.in_(("completed", "failed")),
                    N.c.output.is_not(None),
                )
            ).all()
        values = {r.node_id: unpack(tenant, r.output, what=where) for r in rows}
        return values.get(parents[0]) if len(parents) == 1 else values

    def meta(self, execution_id: str) -> tuple[str, int, str] | None:
        """``(workflow_id, version, tenant)`` of an execution, or None if there is none."""
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(E.c.workflow_id, E.c.version, E.c.tenant).where(E.c.id == execution_id)
            ).first()
        return None if row is None else (row.workflow_id, row.version, row.tenant)

    @retry_conflicts
    def cancel(self, execution_id: str, reason: str) -> bool:
        """Cancel an execution for a ``cancel_*`` strategy; False if it already ended."""
        with self.store.engine.begin() as conn:
            row = self.store._lock_execution(conn, execution_id, time.time())
            if row.status not in EXECUTION_ACTIVE:
                return False
            self.store._end_execution(conn, execution_id, "cancelled", time.time(), error=reason)
        return True
