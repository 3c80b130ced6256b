"""Signals: values sent to an execution from outside, and the ``wait_for`` nodes parked
on them.

A signal is stored first and consumed by a waiting node (marked with the node and
attempt that took it) in one transaction under the execution's lock, so a signal sent
before the node parks is found by the park, and one sent after finds the parked node.
Completing the node is the usual guarded transition; if a crash comes between, the
sweep finds the consumed signal and completes the node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, exists, insert, or_, select, update

from .. import errors
from ..payloads import Payloads
from ..statuses import EXECUTION_TERMINAL
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .base import retry_conflicts
from .execution_row import ExecutionRow
from .parking import Parking, parked
from .records import Claim
from .schema import executions as E
from .schema import nodes as N
from .schema import signal_waits as W
from .schema import signals as G


@dataclass(frozen=True)
class Delivery:
    """A signal taken by a parked ``wait_for`` attempt, to complete it with.

    Attributes:
        claim: The parked attempt (status ``waiting``).
        payload: The signal's packed payload, the node's output.
    """

    claim: Claim
    payload: str


def _waiting() -> Any:
    """Joins a wait to its node while that is still parked at the wait's attempt."""
    return and_(
        N.c.execution_id == W.c.execution_id,
        N.c.node_id == W.c.node_id,
        N.c.attempt == W.c.attempt,
        N.c.status == S.WAITING,
    )


def _took(execution_id: Any, node_id: Any, attempt: Any) -> Any:
    return and_(
        G.c.execution_id == execution_id,
        G.c.consumed_node == node_id,
        G.c.consumed_attempt == attempt,
    )


class Signals:
    """Signals and signal waits.

    Args:
        engine: The store's engine.
        payloads: Packs signal payloads and wait defaults.
        row: Takes the execution row: a signal is stored and taken under it.
        parking: Parks a ``wait_for`` attempt.
    """

    def __init__(self, engine: Engine, payloads: Payloads, row: ExecutionRow, parking: Parking):
        self.engine = engine
        self.payloads = payloads
        self.row = row
        self.parking = parking

    @retry_conflicts
    def park_for_signal(
        self,
        claim: Claim,
        name: str,
        *,
        deadline: float | None,
        on_timeout: str,
        default: Any,
    ) -> tuple[bool, Delivery | None]:
        """Park a running ``wait_for`` attempt until signal ``name`` arrives.

        A signal that arrived earlier is taken at once (returned as a delivery). With
        ``on_timeout: continue`` the node waits on a durable timer that completes it
        with ``default``; with ``fail`` the sweep fails it after ``deadline``.

        Returns:
            ``(parked, delivery)``; parked is False if the attempt is stale.
        """
        now = time.time()
        timer = deadline if on_timeout == "continue" else None
        output = None
        if on_timeout == "continue":
            output = self.payloads.pack(
                claim.tenant,
                default,
                what=f"default of {claim.node_id}",
                fix="give the wait_for node a smaller default or raise the limit",
            )
        with self.engine.begin() as conn:
            if not self.parking.park(conn, claim, "waiting", name, wake_at=timer, output=output):
                return False, None
            conn.execute(
                delete(W).where(
                    W.c.execution_id == claim.execution_id, W.c.node_id == claim.node_id
                )
            )
            conn.execute(
                insert(W).values(
                    execution_id=claim.execution_id,
                    node_id=claim.node_id,
                    attempt=claim.attempt,
                    name=name,
                    on_timeout=on_timeout,
                    deadline=deadline,
                )
            )
            return True, self._take(conn, replace(claim, status=S.WAITING), name, now)

    @retry_conflicts
    def add_signal(
        self, execution_id: str, name: str, payload: Any, signal_id: str | None
    ) -> tuple[bool, Delivery | None]:
        """Store a signal; if a ``wait_for`` node is parked on it, it takes it.

        Returns:
            ``(stored, delivery)``; stored is False for a repeated ``signal_id``.

        Raises:
            UnknownExecution: If there is no such execution.
            InvalidTransition: If the execution has ended.
        """
        now = time.time()
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, execution_id, now)
            if signal_id is not None:
                # A repeat is answered as such even after the execution ended: the
                # sender may be retrying a signal that ended it.
                seen = conn.execute(
                    select(G.c.id).where(
                        G.c.execution_id == execution_id, G.c.signal_id == signal_id
                    )
                ).first()
                if seen is not None:
                    return False, None
            if ex.status in EXECUTION_TERMINAL:
                raise errors.InvalidTransition(
                    f"execution {execution_id} is {ex.status}; it takes no more signals"
                )
            packed = self.payloads.pack(
                ex.tenant,
                payload,
                what=f"payload of signal {name!r}",
                fix="send a smaller payload or raise the limit",
            )
            conn.execute(
                insert(G).values(
                    execution_id=execution_id,
                    name=name,
                    signal_id=signal_id,
                    payload=packed,
                    pending=True,
                    created_at=now,
                )
            )
            wait = conn.execute(
                select(W.c.node_id)
                .join(N, _waiting())
                .where(
                    W.c.execution_id == execution_id,
                    W.c.name == name,
                    ~exists().where(_took(execution_id, W.c.node_id, W.c.attempt)),
                )
                .order_by(W.c.node_id)
                .limit(1)
            ).first()
            if wait is None:
                return True, None
            claim = parked(conn, execution_id, wait.node_id)
            return True, None if claim is None else self._take(conn, claim, name, now)

    def _take(self, conn: Connection, claim: Claim, name: str, now: float) -> Delivery | None:
        """The signal this attempt took already, else the oldest free one named ``name``."""
        mine = conn.execute(
            select(G.c.payload).where(_took(claim.execution_id, claim.node_id, claim.attempt))
        ).first()
        if mine is not None:
            return Delivery(claim, mine.payload)
        free = conn.execute(
            select(G.c.id, G.c.payload)
            .where(
                G.c.execution_id == claim.execution_id,
                G.c.name == name,
                G.c.consumed_at.is_(None),
            )
            .order_by(G.c.id)
            .limit(1)
        ).first()
        if free is None:
            return None
        conn.execute(
            update(G)
            .where(G.c.id == free.id)
            .values(consumed_node=claim.node_id, consumed_attempt=claim.attempt, consumed_at=now)
        )
        return Delivery(claim, free.payload)

    def pending_deliveries(self, limit: int = 100) -> list[Delivery]:
        """Parked ``wait_for`` attempts of running executions that have a signal to
        take: sent while the execution was paused, or taken just before a crash.

        Only signals still marked pending are read; those that can no longer be
        delivered (their execution ended, or the node that took them moved on) stop
        being pending here, so this stays cheap however many signals were ever sent.
        """
        now = time.time()
        taker = and_(
            N.c.execution_id == G.c.execution_id,
            N.c.node_id == G.c.consumed_node,
            N.c.attempt == G.c.consumed_attempt,
            N.c.status == S.WAITING,
        )
        ended = select(E.c.id).where(E.c.status.in_(EXECUTION_TERMINAL))
        matches = and_(
            W.c.execution_id == G.c.execution_id,
            or_(
                and_(G.c.consumed_at.is_(None), W.c.name == G.c.name),
                and_(W.c.node_id == G.c.consumed_node, W.c.attempt == G.c.consumed_attempt),
            ),
        )
        with self.engine.begin() as conn:
            conn.execute(
                update(G)
                .where(
                    G.c.pending.is_(True),
                    or_(
                        G.c.execution_id.in_(ended),
                        and_(G.c.consumed_at.is_not(None), ~exists().where(taker)),
                    ),
                )
                .values(pending=False)
            )
            rows = conn.execute(
                select(W.c.execution_id, W.c.node_id, W.c.name)
                .select_from(G)
                .join(W, matches)
                .join(N, _waiting())
                .join(E, and_(E.c.id == W.c.execution_id, E.c.status == X.RUNNING))
                .where(G.c.pending.is_(True))
                .distinct()
                .limit(limit)
            ).all()
        deliveries = []
        for row in rows:
            with self.engine.begin() as conn:
                self.row.lock(conn, row.execution_id, now)
                claim = parked(conn, row.execution_id, row.node_id)
                if claim is not None:
                    delivery = self._take(conn, claim, row.name, now)
                    if delivery is not None:
                        deliveries.append(delivery)
        return deliveries

    def expired_signal_waits(self, now: float, limit: int = 100) -> list[tuple[Claim, str]]:
        """``(claim, signal name)`` of ``wait_for`` attempts with ``on_timeout: fail``
        whose deadline passed without a signal, in running executions.

        Waits past their deadline whose node no longer waits are deleted first, so only
        live ones are read again.
        """
        with self.engine.begin() as conn:
            conn.execute(
                delete(W).where(
                    W.c.deadline <= now, W.c.on_timeout == "fail", ~exists().where(_waiting())
                )
            )
            rows = conn.execute(
                select(W.c.execution_id, W.c.node_id, W.c.name)
                .join(N, _waiting())
                .join(E, and_(E.c.id == W.c.execution_id, E.c.status == X.RUNNING))
                .where(
                    W.c.on_timeout == "fail",
                    W.c.deadline <= now,
                    ~exists().where(_took(W.c.execution_id, W.c.node_id, W.c.attempt)),
                )
                .limit(limit)
            ).all()
            found = [(parked(conn, r.execution_id, r.node_id), r.name) for r in rows]
        return [(claim, name) for claim, name in found if claim is not None]
