"""What every layer of the store shares: the engine, payload packing, graphs."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import OperationalError

from .. import errors
from ..definitions import Graph, Workflow, build_graph
from ..payloads import Payloads
from .schema import workflows as W


class StoreBase:
    """Attributes set by ``Store.__init__``, and the workflow graphs, used by every layer.

    The store is built in layers, each in its own module and each using only the
    layers below it: History → Transitions → Parking → Recovery → Starts → Schedules →
    Signals → Protection → Store.
    """

    engine: Engine
    payloads: Payloads
    lease_seconds: float
    trace_execution: Callable[..., AbstractContextManager[str | None]]
    _meta_cache: dict[str, Any]
    _definitions: dict[tuple[str, int], Workflow]
    _graphs: dict[tuple[str, int], Graph]

    def workflow_version(
        self, workflow_id: str, version: int | None = None, conn: Connection | None = None
    ) -> tuple[int, Workflow]:
        """Return ``(version, definition)``, the latest unless ``version`` is given.

        Versions never change once stored, so decoded definitions are cached.

        Args:
            workflow_id: The workflow.
            version: A stored version; None for the latest.
            conn: The connection of the caller's transaction, if it holds one: on SQLite
                a second connection of the same thread would wait for the write lock
                that the first holds, until the busy timeout.
        """
        if version is not None and (workflow_id, version) in self._definitions:
            return version, self._definitions[(workflow_id, version)]
        query = select(W.c.version, W.c.definition).where(W.c.workflow_id == workflow_id)
        if version is not None:
            query = query.where(W.c.version == version)
        scope = contextlib.nullcontext(conn) if conn is not None else self.engine.connect()
        with scope as reader:
            row = reader.execute(query.order_by(W.c.version.desc()).limit(1)).first()
        if row is None:
            which = f"version {version} of " if version is not None else ""
            raise errors.UnknownWorkflow(
                f"no {which}workflow {workflow_id!r} is registered; register it first "
                "(spane.register_workflow or `spane register FILE`)"
            )
        key = (workflow_id, row.version)
        if key not in self._definitions:
            self._definitions[key] = msgspec.json.decode(row.definition, type=Workflow)
        return row.version, self._definitions[key]

    def graph(self, workflow_id: str, version: int, conn: Connection | None = None) -> Graph:
        """Return the graph of a stored workflow version (cached: versions never change).

        Args:
            conn: The connection of the caller's transaction, if it holds one (see
                ``workflow_version``).
        """
        key = (workflow_id, version)
        graph = self._graphs.get(key)
        if graph is None:
            graph = build_graph(self.workflow_version(workflow_id, version, conn)[1])
            if len(self._graphs) >= 512:
                self._graphs.clear()
            self._graphs[key] = graph
        return graph


#: Most ids one statement binds: a graph can be wider than a statement's parameter limit
#: (65,535 on PostgreSQL, 32,766 on SQLite), so lists of node ids go in chunks.
CHUNK = 10_000


def chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``CHUNK``."""
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


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
