"""Execution history (events) and dead letters."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import errors
from . import hot
from .records import Claim
from .schema import dead_letters as D
from .schema import events as V

#: A dead letter's states: open until retried.
DEAD_OPEN, DEAD_RETRIED = "open", "retried"


@dataclass(frozen=True)
class Event:
    """One recorded state change of an execution or one of its nodes."""

    id: int
    execution_id: str
    node_id: str | None
    kind: str
    attempt: int | None
    detail: str | None
    at: float


@dataclass(frozen=True)
class DeadLetter:
    """A node that exhausted its retries, or a message that could not be handled."""

    id: int
    kind: str
    digest: str
    status: str
    execution_id: str | None
    node_id: str | None
    queue: str | None
    actor: str | None
    reason: str
    message: str | None
    created_at: float
    retried_at: float | None


class History:
    """Events and dead letters (a part of the store, built with its engine).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def record_event(
        self,
        conn: Connection,
        execution_id: str,
        node_id: str | None,
        kind: str,
        attempt: int | None,
        detail: str | None,
    ) -> None:
        """Append one event, with a detail, inside the caller's transaction."""
        conn.execute(
            hot.EVENT,
            {
                "e": execution_id,
                "n": node_id,
                "k": kind,
                "a": attempt,
                "d": detail,
                "at": time.time(),
            },
        )

    def record_events(
        self, conn: Connection, rows: list[tuple[str, str | None, str, int | None]]
    ) -> None:
        """Append several ``(execution_id, node_id, kind, attempt)`` events at once."""
        if rows:
            now = time.time()
            conn.execute(
                hot.EVENT,
                [{"e": e, "n": n, "k": k, "a": a, "d": None, "at": now} for e, n, k, a in rows],
            )

    def history(self, execution_id: str) -> list[Event]:
        """Return every event of an execution, in the order it happened."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(V).where(V.c.execution_id == execution_id).order_by(V.c.id)
            ).all()
        return [Event(**row._mapping) for row in rows]

    def add_dead_letter(self, conn: Connection | None = None, **values: Any) -> bool:
        """Record a dead letter once per digest; return False if it was already recorded."""
        row = {"status": DEAD_OPEN, "created_at": time.time(), **values}
        if conn is not None:
            exists = conn.execute(select(D.c.id).where(D.c.digest == row["digest"])).first()
            if exists is None:
                conn.execute(insert(D).values(**row))
            return exists is None
        try:
            with self.engine.begin() as own:
                own.execute(insert(D).values(**row))
        except IntegrityError:
            return False
        return True

    def dead_letters(self, *, status: str | None = DEAD_OPEN, limit: int = 100) -> list[DeadLetter]:
        """Return dead letters, newest first (``status=None`` for all)."""
        query = select(D).order_by(D.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(D.c.status == status)
        with self.engine.connect() as conn:
            return [DeadLetter(**row._mapping) for row in conn.execute(query)]

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Return one dead letter."""
        if not 0 < dead_letter_id < 2**63:  # beyond any id, and beyond a 64-bit column
            raise errors.SpaneError(f"no dead letter has id {dead_letter_id}")
        with self.engine.connect() as conn:
            row = conn.execute(select(D).where(D.c.id == dead_letter_id)).first()
        if row is None:
            raise errors.SpaneError(f"no dead letter has id {dead_letter_id}")
        return DeadLetter(**row._mapping)

    def mark_dead_letter_retried(self, dead_letter_id: int) -> bool:
        """Mark an open dead letter retried; False if it was not open (retried already)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(D)
                .where(D.c.id == dead_letter_id, D.c.status == DEAD_OPEN)
                .values(status=DEAD_RETRIED, retried_at=time.time())
            )
            return bool(done.rowcount)

    def dead_node(self, conn: Connection | None, claim: Claim, error: str) -> None:
        """Record a node that failed for good as a dead letter, once per attempt."""
        digest = hashlib.sha256(
            f"node:{claim.execution_id}:{claim.node_id}:{claim.attempt}".encode()
        ).hexdigest()
        self.add_dead_letter(
            conn,
            kind="node",
            digest=digest,
            execution_id=claim.execution_id,
            node_id=claim.node_id,
            actor=claim.type,
            reason=error,
        )
