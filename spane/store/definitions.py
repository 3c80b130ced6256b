"""Workflow definitions: stored versions, and their decoded forms and graphs (cached:
a stored version never changes)."""

from __future__ import annotations

import contextlib
import time

import msgspec
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..definitions import Graph, Workflow, build_graph
from .schema import workflows as W


class Definitions:
    """Stored workflow versions (a part of the store, built with its engine).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._definitions: dict[tuple[str, int], Workflow] = {}
        self._graphs: dict[tuple[str, int], Graph] = {}

    def save_workflow(self, workflow_id: str, digest: str, definition: str) -> tuple[int, bool]:
        """Store a new version unless the latest has the same hash; return (version, new)."""
        for _ in range(5):
            with self.engine.begin() as conn:
                latest = conn.execute(
                    select(W.c.version, W.c.hash)
                    .where(W.c.workflow_id == workflow_id)
                    .order_by(W.c.version.desc())
                    .limit(1)
                ).first()
                if latest is not None and latest.hash == digest:
                    return latest.version, False
                version = 1 if latest is None else latest.version + 1
                try:
                    conn.execute(
                        insert(W).values(
                            workflow_id=workflow_id,
                            version=version,
                            hash=digest,
                            definition=definition,
                            created_at=time.time(),
                        )
                    )
                except IntegrityError:
                    continue  # a concurrent registration took this version number
                return version, True
        raise errors.SpaneError(f"could not register workflow {workflow_id!r}: too much contention")

    def load_workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        """Return a stored definition (latest version unless ``version`` is given)."""
        return self.workflow_version(workflow_id, version)[1]

    def latest_version(self, workflow_id: str) -> int | None:
        """Return the latest version of a workflow, or None if it is not registered."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(W.c.version)).where(W.c.workflow_id == workflow_id)
            ).scalar()

    def workflow_version(
        self, workflow_id: str, version: int | None = None, conn: Connection | None = None
    ) -> tuple[int, Workflow]:
        """Return ``(version, definition)``, the latest unless ``version`` is given.

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
        """Return the graph of a stored workflow version.

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
