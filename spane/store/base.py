"""What every layer of the store shares: the engine, payload packing, graphs."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from ..definitions import Graph
from ..payloads import Payloads


class StoreBase:
    """Attributes set by ``Store.__init__`` and used by every layer.

    The store is built in layers, each in its own module and each using only the
    layers below it: History → Transitions → Parking → Recovery → Protection
    → Store.
    """

    engine: Engine
    payloads: Payloads
    lease_seconds: float
    graph: Callable[[str, int], Graph]
    _meta_cache: dict[str, Any]


_CONFLICTS = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure

F = TypeVar("F", bound=Callable[..., Any])


def retry_conflicts(fn: F) -> F:
    """Run a one-transaction store method again when the database aborted it for a
    conflict (a deadlock, a serialization failure, SQLite's busy lock): the rolled-back
    transaction changed nothing, and every transition is guarded, so a retry is safe."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(8):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                busy = "database is locked" in str(exc.orig)
                if attempt == 7 or not (code in _CONFLICTS or busy):
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]
