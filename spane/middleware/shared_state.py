"""Where breakers and rate limits keep state that every worker must see.

Three twins, one per deployment: Redis when the broker is Redis (pybreaker's
``CircuitRedisStorage`` and Dramatiq's Redis rate-limiter backend), the database otherwise
(``spane/store/protection.py``), and process memory when embedded, where there is one
process only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import pybreaker
from dramatiq.rate_limits import RateLimiterBackend
from dramatiq.rate_limits.backends import StubBackend

from ..errors import UnknownBreaker

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import Store


class SharedState(Protocol):
    """What breakers and rate limits share across workers.

    Attributes:
        where: ``redis``, ``database`` or ``memory``, for operators.
        rate_backend: A Dramatiq rate-limiter backend on the same store.
    """

    where: str
    rate_backend: RateLimiterBackend

    def breaker_storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        """Return the pybreaker storage of the breaker ``name``."""

    def declare(self, name: str, fail_max: int, reset_timeout: float) -> None:
        """Record that the breaker exists, with its settings, so it can be listed."""

    def declared(self) -> dict[str, tuple[int, float]]:
        """Return ``{name: (fail_max, reset_timeout)}`` of every breaker."""

    def take_trial(self, name: str, seconds: float) -> bool:
        """Let one attempt, across all workers, be the trial of a breaker."""

    def end_trial(self, name: str) -> None:
        """Let another attempt be the next trial."""


class MemoryState:
    """Embedded mode: one process, so memory is shared by everything that runs."""

    where = "memory"

    def __init__(self) -> None:
        self.rate_backend: RateLimiterBackend = StubBackend()  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._storages: dict[str, pybreaker.CircuitMemoryStorage] = {}
        self._settings: dict[str, tuple[int, float]] = {}
        self._trials: dict[str, float] = {}

    def breaker_storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        with self._lock:
            storage = self._storages.get(name)
            if storage is None:
                storage = self._storages[name] = pybreaker.CircuitMemoryStorage(
                    pybreaker.STATE_CLOSED
                )
            return storage

    def declare(self, name: str, fail_max: int, reset_timeout: float) -> None:
        with self._lock:
            self._settings[name] = (fail_max, reset_timeout)

    def declared(self) -> dict[str, tuple[int, float]]:
        with self._lock:
            return dict(self._settings)

    def take_trial(self, name: str, seconds: float) -> bool:
        now = time.time()
        with self._lock:
            if self._trials.get(name, 0.0) > now:
                return False
            self._trials[name] = now + seconds
            return True

    def end_trial(self, name: str) -> None:
        with self._lock:
            self._trials.pop(name, None)


class RedisState:
    """Redis broker: breaker and limit keys live beside the queues, under the namespace.

    Args:
        url: The Redis URL (the broker's).
        namespace: Key prefix (``SPANE_NAMESPACE``).
    """

    where = "redis"

    def __init__(self, url: str, namespace: str) -> None:
        import redis
        from dramatiq.rate_limits.backends import RedisBackend

        self._client = redis.Redis.from_url(url)
        self._prefix = f"{namespace}:breaker"
        self.rate_backend: RateLimiterBackend = RedisBackend(client=self._client)

    def breaker_storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        return pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, self._client, namespace=f"{self._prefix}:{name}"
        )

    def declare(self, name: str, fail_max: int, reset_timeout: float) -> None:
        self._client.hset(f"{self._prefix}s", name, msgspec.json.encode([fail_max, reset_timeout]))

    def declared(self) -> dict[str, tuple[int, float]]:
        raw: dict[bytes, bytes] = self._client.hgetall(f"{self._prefix}s")  # type: ignore[assignment]
        return {
            name.decode(): msgspec.json.decode(value, type=tuple[int, float])
            for name, value in raw.items()
        }

    def take_trial(self, name: str, seconds: float) -> bool:
        key = f"{self._prefix}:{name}:trial"
        return bool(self._client.set(key, 1, nx=True, px=max(1, int(seconds * 1000))))

    def end_trial(self, name: str) -> None:
        self._client.delete(f"{self._prefix}:{name}:trial")


class DatabaseState:
    """Any other broker: the database every worker already shares.

    Args:
        store: The store (``spane/store/protection.py`` holds the SQL).
    """

    where = "database"

    def __init__(self, store: Store) -> None:
        self._store = store
        self.rate_backend: RateLimiterBackend = DatabaseRateBackend(store)

    def breaker_storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        return DatabaseBreakerStorage(self._store, name)

    def declare(self, name: str, fail_max: int, reset_timeout: float) -> None:
        self._store.declare_breaker(name, fail_max, reset_timeout)

    def declared(self) -> dict[str, tuple[int, float]]:
        return {row.name: (row.fail_max, row.reset_timeout) for row in self._store.breakers()}

    def take_trial(self, name: str, seconds: float) -> bool:
        return self._store.take_breaker_trial(name, seconds)

    def end_trial(self, name: str) -> None:
        self._store.end_breaker_trial(name)


class DatabaseBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage interface over one row of ``spane_breakers``."""

    def __init__(self, store: Store, name: str) -> None:
        super().__init__("database")
        self._store = store
        self._breaker = name

    def _row(self) -> Any:
        row = self._store.breaker(self._breaker)
        if row is None:
            raise UnknownBreaker(f"no circuit breaker is called {self._breaker!r}")
        return row

    @property
    def state(self) -> str:
        return str(self._row().state)

    @state.setter
    def state(self, state: str) -> None:
        self._store.set_breaker(self._breaker, state=state)

    def increment_counter(self) -> None:
        self._store.count_breaker(self._breaker, failure=True)

    def reset_counter(self) -> None:
        self._store.set_breaker(self._breaker, failures=0)

    def increment_success_counter(self) -> None:
        self._store.count_breaker(self._breaker, failure=False)

    def reset_success_counter(self) -> None:
        self._store.set_breaker(self._breaker, successes=0)

    @property
    def counter(self) -> int:
        return int(self._row().failures)

    @property
    def success_counter(self) -> int:
        return int(self._row().successes)

    @property
    def opened_at(self) -> datetime | None:
        at = self._row().opened_at
        return None if at is None else datetime.fromtimestamp(at, UTC)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._store.set_breaker(self._breaker, opened_at=when.timestamp())


class DatabaseRateBackend(RateLimiterBackend):
    """Dramatiq's rate-limiter backend interface, for ``WindowRateLimiter``, on the database.

    Only ``incr_and_sum`` is provided: it is all that window limits use.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def incr_and_sum(
        self,
        key: str,
        keys: Callable[[], Sequence[str]],
        amount: int,
        maximum: int,
        ttl: int,
    ) -> bool:
        if amount != 1:
            raise ValueError("the database rate-limit backend counts one hit at a time")
        return self._store.count_rate_hit(key, list(keys()), maximum, ttl / 1000)


def open_shared_state(settings: Settings, store: Store) -> SharedState:
    """Return the shared state for ``settings``: Redis, the database, or memory."""
    if settings.embedded:
        return MemoryState()
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisState(settings.broker_url, settings.namespace)
    return DatabaseState(store)
