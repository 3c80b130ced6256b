"""Shared state of circuit breakers and rate limits, for deployments without Redis.

With a Redis broker, breakers and limits keep their state in Redis; otherwise every
worker shares it through these two small tables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .base import retry_conflicts
from .schema import breakers as B
from .schema import rate_limits as R


@dataclass(frozen=True)
class BreakerRow:
    """One breaker's shared state, as stored."""

    name: str
    state: str
    failures: int
    successes: int
    opened_at: float | None
    fail_max: int
    reset_timeout: float


_ROW = (
    B.c.name,
    B.c.state,
    B.c.failures,
    B.c.successes,
    B.c.opened_at,
    B.c.fail_max,
    B.c.reset_timeout,
)


class Protection:
    """Breaker and rate-limit state (a part of the store, built with its engine).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def declare_breaker(self, name: str, fail_max: int, reset_timeout: float) -> None:
        """Create a breaker (closed) if it does not exist; record its current settings."""
        now = time.time()
        settings = {"fail_max": fail_max, "reset_timeout": reset_timeout, "updated_at": now}
        with self.engine.begin() as conn:
            done = conn.execute(update(B).where(B.c.name == name).values(**settings))
            if done.rowcount:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(B).values(name=name, state="closed", failures=0, successes=0, **settings)
                )
        except IntegrityError:
            pass  # another worker declared it first

    def breaker(self, name: str) -> BreakerRow | None:
        """Return one breaker's state, or None if it was never declared."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_ROW).where(B.c.name == name)).first()
        return None if row is None else BreakerRow(**row._mapping)

    def breakers(self) -> list[BreakerRow]:
        """Return every declared breaker, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_ROW).order_by(B.c.name)).all()
        return [BreakerRow(**row._mapping) for row in rows]

    @retry_conflicts
    def set_breaker(
        self,
        name: str,
        *,
        state: str | None = None,
        opened_at: float | None = None,
        failures: int | None = None,
        successes: int | None = None,
    ) -> None:
        """Set some of a breaker's fields (those given)."""
        values = {
            "state": state,
            "opened_at": opened_at,
            "failures": failures,
            "successes": successes,
        }
        changes = {k: v for k, v in values.items() if v is not None}
        with self.engine.begin() as conn:
            conn.execute(
                update(B).where(B.c.name == name).values(updated_at=time.time(), **changes)
            )

    @retry_conflicts
    def count_breaker(self, name: str, *, failure: bool) -> None:
        """Add one to a breaker's failure (or half-open success) counter, atomically."""
        column = B.c.failures if failure else B.c.successes
        with self.engine.begin() as conn:
            conn.execute(update(B).where(B.c.name == name).values({column: column + 1}))

    @retry_conflicts
    def take_breaker_trial(self, name: str, seconds: float) -> bool:
        """Let one attempt, cluster-wide, be the trial of a breaker for ``seconds``."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(B)
                .where(B.c.name == name, (B.c.trial_until.is_(None)) | (B.c.trial_until < now))
                .values(trial_until=now + seconds)
            )
        return bool(done.rowcount)

    @retry_conflicts
    def end_breaker_trial(self, name: str) -> None:
        """Let the next attempt be a trial again."""
        with self.engine.begin() as conn:
            conn.execute(update(B).where(B.c.name == name).values(trial_until=None))

    @retry_conflicts
    def count_rate_hit(self, key: str, keys: Sequence[str], maximum: int, ttl: float) -> bool:
        """Add one to the window ``key`` unless the windows ``keys`` already hold ``maximum``.

        Every hit first takes the row of its current window, so concurrent hits queue up
        on that row instead of both reading the old sum.
        """
        for _ in range(4):
            try:
                return self._rate_hit(key, keys, maximum, ttl)
            except IntegrityError:
                continue  # another worker opened this window first: take its row
        return self._rate_hit(key, keys, maximum, ttl)

    def _rate_hit(self, key: str, keys: Sequence[str], maximum: int, ttl: float) -> bool:
        now = time.time()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(R).where(R.c.key == key, R.c.expires_at >= now).values(expires_at=now + ttl)
            )
            if not taken.rowcount:
                # A new window (or an expired one): start it at zero, dropping the limit's
                # expired windows on the way.
                conn.execute(R.delete().where(R.c.key.in_(keys), R.c.expires_at < now))
                conn.execute(insert(R).values(key=key, value=0, expires_at=now + ttl))
            total = conn.execute(
                select(func.coalesce(func.sum(R.c.value), 0)).where(
                    R.c.key.in_(keys), R.c.expires_at >= now
                )
            ).scalar_one()
            if total + 1 > maximum:
                return False
            conn.execute(update(R).where(R.c.key == key).values(value=R.c.value + 1))
            return True
