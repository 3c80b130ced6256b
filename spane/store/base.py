"""What every part of the store shares: chunked id lists and retries on conflicts."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

#: Most ids one statement binds: a graph can be wider than a statement's parameter limit
#: (65,535 on PostgreSQL, 32,766 on SQLite), so lists of node ids go in chunks.
CHUNK = 10_000


def chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``CHUNK``."""
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


_CONFLICTS = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_TRIES = 8

F = TypeVar("F", bound=Callable[..., Any])

_retrying = threading.local()


def retry_conflicts(fn: F) -> F:
    """Run a store operation again when the database aborted it for a conflict (a
    deadlock, a serialization failure, SQLite's busy lock): the rolled-back transaction
    changed nothing, and every transition is guarded, so a retry is safe.

    Only the outermost operation of a thread retries: one called inside another runs
    once and lets the conflict reach the outer one, which runs whole again (retries
    multiplied through nesting would make a conflict cost up to 8 times 8 tries).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_retrying, "active", False):
            return fn(*args, **kwargs)
        _retrying.active = True
        try:
            for attempt in range(_TRIES):
                try:
                    return fn(*args, **kwargs)
                except OperationalError as exc:
                    code = getattr(exc.orig, "sqlstate", None)
                    busy = "database is locked" in str(exc.orig)
                    if attempt == _TRIES - 1 or not (code in _CONFLICTS or busy):
                        raise
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            raise AssertionError("unreachable")
        finally:
            _retrying.active = False

    return wrapper  # type: ignore[return-value]
