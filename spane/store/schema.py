"""Tables of the state of record. Migrations in ``spane/migrations`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

workflows = Table(
    "spane_workflows",
    metadata,
    Column("workflow_id", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("hash", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

executions = Table(
    "spane_executions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workflow_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("remaining", Integer, nullable=False),
    Column("parent_id", String(36)),
    Column("parent_node_id", String(100)),
    Column("depth", Integer, nullable=False, default=0),
    Column("idempotency_key", String(200)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float, nullable=False),
    Index("ix_spane_executions_status", "status"),
    Index("ix_spane_executions_workflow", "workflow_id"),
    Index("ix_spane_executions_parent", "parent_id"),
    Index("ux_spane_executions_idempotency", "tenant", "idempotency_key", unique=True),
)

nodes = Table(
    "spane_nodes",
    metadata,
    Column("execution_id", String(36), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempt_base", Integer, nullable=False, default=0),
    Column("waiting_on", Integer, nullable=False),
    Column("live_parents", Integer, nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("route", Text),
    Column("child_id", String(36)),
    Column("wake_at", Float),
    Column("lease_until", Float),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_spane_nodes_status_wake", "status", "wake_at"),
    Index("ix_spane_nodes_status_lease", "status", "lease_until"),
)

events = Table(
    "spane_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("execution_id", String(36), nullable=False),
    Column("node_id", String(100)),
    Column("kind", String(32), nullable=False),
    Column("attempt", Integer),
    Column("detail", Text),
    Column("at", Float, nullable=False),
    Index("ix_spane_events_execution", "execution_id", "id"),
)

dead_letters = Table(
    "spane_dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(16), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("execution_id", String(36)),
    Column("node_id", String(100)),
    Column("queue", String(200)),
    Column("actor", String(200)),
    Column("reason", Text, nullable=False),
    Column("message", Text),
    Column("created_at", Float, nullable=False),
    Column("retried_at", Float),
    Index("ix_spane_dead_letters_status", "status"),
)

locks = Table(
    "spane_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("until", Float, nullable=False),
)

workers = Table(
    "spane_workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("lanes", Text, nullable=False),
    Column("node_types", Text, nullable=False),
    Column("threads", Integer, nullable=False),
    Column("inflight", Integer, nullable=False),
    Column("draining", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Index("ix_spane_workers_heartbeat", "heartbeat_at"),
)
