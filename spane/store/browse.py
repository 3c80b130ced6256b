"""Read-only queries for browsing: pages of executions, node rows and stored values
without their payloads, tenant-scoped dead letters, workflow versions."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, or_, select

from .. import errors
from .history import DeadLetter
from .records import ExecutionSummary
from .schema import dead_letters as D
from .schema import executions as E
from .schema import nodes as N
from .schema import workflows as W

#: The columns of an ``ExecutionSummary``: no payloads.
SUMMARY = (
    E.c.id,
    E.c.workflow_id,
    E.c.version,
    E.c.tenant,
    E.c.status,
    E.c.created_at,
    E.c.finished_at,
    E.c.parent_id,
)


@dataclass(frozen=True)
class NodeRow:
    """One node of an execution without its output (cheap enough to poll)."""

    node_id: str
    type: str
    status: str
    attempts: int
    error: str | None
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    child_id: str | None


@dataclass(frozen=True)
class ExecutionHeader:
    """An execution without its input and output."""

    id: str
    workflow_id: str
    version: int
    tenant: str
    status: str
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    parent_id: str | None
    parent_node_id: str | None


@dataclass(frozen=True)
class WorkflowVersion:
    """One stored version of a workflow."""

    workflow_id: str
    version: int
    hash: str
    created_at: float


class Browse:
    """Queries behind the HTTP API and the dashboard (a part of the store).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def executions_page(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        tenant: str | None = None,
        parent_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[ExecutionSummary]:
        """Return executions newest first, strictly after the ``before`` position.

        ``before`` is the ``(created_at, id)`` of the last row of the previous page, so a
        page stays correct while new executions start (no offsets shift under it).
        """
        query = select(*SUMMARY)
        for column, value in (
            ("status", status),
            ("workflow_id", workflow_id),
            ("tenant", tenant),
            ("parent_id", parent_id),
        ):
            if value is not None:
                query = query.where(E.c[column] == value)
        if since is not None:
            query = query.where(E.c.created_at >= since)
        if until is not None:
            query = query.where(E.c.created_at < until)
        if before is not None:
            at, last_id = before
            query = query.where(
                or_(E.c.created_at < at, (E.c.created_at == at) & (E.c.id < last_id))
            )
        query = query.order_by(E.c.created_at.desc(), E.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [ExecutionSummary(**row._mapping) for row in conn.execute(query)]

    def execution_header(self, execution_id: str) -> ExecutionHeader:
        """Return an execution without reading its payloads."""
        columns = [E.c[name] for name in ExecutionHeader.__dataclass_fields__]
        with self.engine.connect() as conn:
            row = conn.execute(select(*columns).where(E.c.id == execution_id)).first()
        if row is None:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return ExecutionHeader(**row._mapping)

    def node_rows(self, execution_id: str) -> list[NodeRow]:
        """Return an execution's nodes without outputs, in no particular order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    N.c.node_id,
                    N.c.type,
                    N.c.status,
                    N.c.attempt.label("attempts"),
                    N.c.error,
                    N.c.queued_at,
                    N.c.started_at,
                    N.c.finished_at,
                    N.c.child_id,
                ).where(N.c.execution_id == execution_id)
            ).all()
        return [NodeRow(**row._mapping) for row in rows]

    def stored_value(self, execution_id: str, node_id: str | None, field: str) -> str | None:
        """Return the stored text (inline JSON or ``@`` + blob reference) of a value.

        Args:
            execution_id: The execution.
            node_id: A node's ``output``; None for the execution's ``input``/``output``.
            field: ``input`` or ``output``.
        """
        if node_id is None:
            query = select(E.c[field]).where(E.c.id == execution_id)
        else:
            query = select(N.c.output).where(
                N.c.execution_id == execution_id, N.c.node_id == node_id
            )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            what = f"node {node_id!r} of execution" if node_id else "execution"
            raise errors.UnknownExecution(f"no {what} {execution_id!r}")
        return None if row[0] is None else str(row[0])

    def dead_letters(
        self,
        *,
        status: str | None = "open",
        tenant: str | None = None,
        execution_id: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Return dead letters newest first; with ``tenant``, only that tenant's nodes'."""
        query = select(D).order_by(D.c.id.desc()).limit(limit)
        if execution_id is not None:
            query = query.where(D.c.execution_id == execution_id)
        if status is not None:
            query = query.where(D.c.status == status)
        if tenant is not None:
            owned = select(E.c.id).where(E.c.tenant == tenant)
            query = query.where(D.c.execution_id.in_(owned))
        with self.engine.connect() as conn:
            return [DeadLetter(**row._mapping) for row in conn.execute(query)]

    def workflows(self) -> list[WorkflowVersion]:
        """Return the latest version of every workflow, by id."""
        latest = (
            select(W.c.workflow_id, func.max(W.c.version).label("version"))
            .group_by(W.c.workflow_id)
            .subquery()
        )
        query = (
            select(W.c.workflow_id, W.c.version, W.c.hash, W.c.created_at)
            .join(
                latest,
                (W.c.workflow_id == latest.c.workflow_id) & (W.c.version == latest.c.version),
            )
            .order_by(W.c.workflow_id)
        )
        with self.engine.connect() as conn:
            return [WorkflowVersion(**row._mapping) for row in conn.execute(query)]

    def workflow_versions(self, workflow_id: str) -> list[WorkflowVersion]:
        """Return every version of a workflow, newest first."""
        query = (
            select(W.c.workflow_id, W.c.version, W.c.hash, W.c.created_at)
            .where(W.c.workflow_id == workflow_id)
            .order_by(W.c.version.desc())
        )
        with self.engine.connect() as conn:
            return [WorkflowVersion(**row._mapping) for row in conn.execute(query)]
