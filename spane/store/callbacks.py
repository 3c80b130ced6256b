"""Completion callbacks: which ended executions still owe a post, claimed with a lease."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, and_, or_, select, update

from . import hot
from .records import EXECUTION_TERMINAL
from .schema import executions as E


@dataclass(frozen=True)
class DueCallback:
    """An ended execution whose callback this process now owns until its lease runs out."""

    execution_id: str
    workflow_id: str
    version: int
    tenant: str
    status: str
    error: str | None
    output: str | None
    finished_at: float
    on_finish: str
    attempts: int


class Callbacks:
    """Persistence of callback deliveries (a part of the store, built with its engine).

    States: ``armed`` (post when the execution ends) → ``sending`` (claimed until
    ``callback_next_at``: a lease while posting, then the time of the next try) → ``sent``
    or ``failed``. Replay arms the callback again, so every end is posted.

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim_due(self, now: float, *, lease: float, limit: int = 20) -> list[DueCallback]:
        """Claim callbacks to post now: armed ones of ended executions, and retries due."""
        due = or_(
            and_(E.c.callback_state == "armed", E.c.status.in_(EXECUTION_TERMINAL)),
            and_(E.c.callback_state == "sending", E.c.callback_next_at <= now),
        )
        columns = (
            E.c.id.label("execution_id"),
            E.c.workflow_id,
            E.c.version,
            E.c.tenant,
            E.c.status,
            E.c.error,
            E.c.output,
            E.c.finished_at,
            E.c.on_finish,
            E.c.callback_attempts.label("attempts"),
            E.c.callback_state,
            E.c.callback_next_at,
        )
        claimed = []
        with self.engine.begin() as conn:
            for row in conn.execute(select(*columns).where(due).limit(limit)).all():
                taken = conn.execute(
                    update(E)
                    .where(
                        E.c.id == row.execution_id,
                        E.c.callback_state == row.callback_state,
                        E.c.callback_next_at.is_(None)
                        if row.callback_next_at is None
                        else E.c.callback_next_at == row.callback_next_at,
                    )
                    .values(callback_state="sending", callback_next_at=now + lease)
                )
                if taken.rowcount:
                    values = dict(row._mapping)
                    del values["callback_state"], values["callback_next_at"]
                    claimed.append(DueCallback(**values))
        return claimed

    def sent(self, execution_id: str, attempt: int) -> None:
        """Record a delivered callback."""
        self._settle(execution_id, "sent", None, "callback_sent", attempt, None)

    def retry_at(self, execution_id: str, attempt: int, at: float, error: str) -> None:
        """Record a failed post; try again at ``at``."""
        self._settle(execution_id, "sending", at, "callback_retrying", attempt, error)

    def give_up(self, execution_id: str, attempt: int, error: str) -> None:
        """Record the last failed post: no more tries."""
        self._settle(execution_id, "failed", None, "callback_failed", attempt, error)

    def rearm(self, execution_id: str) -> None:
        """Post again when the execution next ends (after a replay)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(E)
                .where(E.c.id == execution_id, E.c.callback_state.is_not(None))
                .values(callback_state="armed", callback_attempts=0, callback_next_at=None)
            )

    def _settle(
        self,
        execution_id: str,
        state: str,
        next_at: float | None,
        kind: str,
        attempt: int,
        error: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(E)
                .where(E.c.id == execution_id, E.c.callback_state == "sending")
                .values(callback_state=state, callback_next_at=next_at, callback_attempts=attempt)
            )
            if done.rowcount:
                conn.execute(
                    hot.EVENT,
                    {
                        "e": execution_id,
                        "n": None,
                        "k": kind,
                        "a": attempt,
                        "d": error,
                        "at": time.time(),
                    },
                )
