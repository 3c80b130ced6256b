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
    # W3C traceparent of the execution's root span: every attempt, however it is
    # dispatched (re-sent, resumed, replayed, inline), continues this trace.
    Column("traceparent", String(64)),
    # Completion callback: on_finish is its JSON; callback_state is NULL (none), armed
    # (post when the execution ends), sending (claimed until callback_next_at), sent, or
    # failed (gave up).
    Column("on_finish", Text),
    Column("callback_state", String(16)),
    Column("callback_attempts", Integer, server_default="0"),
    Column("callback_next_at", Float),
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

# -- starting work (schedules, delayed starts) and signals ---------------------------

schedules = Table(
    "spane_schedules",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("workflow_id", String(100), nullable=False),
    Column("origin", String(16), nullable=False),  # definition | api
    Column("cron", String(200)),
    Column("every", Float),
    Column("timezone", String(64), nullable=False),
    Column("input", Text, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("overlap", String(16), nullable=False),
    Column("catch_up", String(16), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("next_at", Float),
    Column("last_execution_id", String(36)),
    Column("last_fired_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_spane_schedules_next", "paused", "next_at"),
    Index("ix_spane_schedules_workflow", "workflow_id"),
)

# One row per schedule and tick: the primary key decides which worker fires a tick.
schedule_ticks = Table(
    "spane_schedule_ticks",
    metadata,
    Column("schedule_id", String(200), primary_key=True),
    Column("tick_ms", BigInteger, primary_key=True),
    Column("outcome", String(16), nullable=False),  # started | skipped
    Column("execution_id", String(36)),
    Column("fired_at", Float, nullable=False),
)

delayed_starts = Table(
    "spane_delayed_starts",
    metadata,
    Column("id", String(36), primary_key=True),  # the id the execution will have
    Column("workflow_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("lane", String(16)),
    Column("input", Text, nullable=False),
    Column("idempotency_key", String(200)),
    Column("on_finish", Text),  # the execution's completion callback, as JSON
    Column("start_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | started | cancelled
    Column("created_at", Float, nullable=False),
    Index("ix_spane_delayed_due", "status", "start_at"),
    Index("ux_spane_delayed_idempotency", "tenant", "idempotency_key", unique=True),
)

signals = Table(
    "spane_signals",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("execution_id", String(36), nullable=False),
    Column("name", String(100), nullable=False),
    Column("signal_id", String(200)),
    Column("payload", Text, nullable=False),
    # True until delivered, or until it can no longer be (the sweep reads only these).
    Column("pending", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("consumed_node", String(100)),
    Column("consumed_attempt", Integer),
    Column("consumed_at", Float),
    Index("ix_spane_signals_execution", "execution_id", "name"),
    Index("ix_spane_signals_pending", "pending"),
    Index("ux_spane_signals_signal_id", "execution_id", "signal_id", unique=True),
)

# The ``wait_for`` nodes parked on a signal, written in the transaction that parks them.
signal_waits = Table(
    "spane_signal_waits",
    metadata,
    Column("execution_id", String(36), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("on_timeout", String(16), nullable=False),  # fail | continue
    Column("deadline", Float),
    Index("ix_spane_signal_waits_deadline", "deadline"),
)

breakers = Table(
    "spane_breakers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("successes", Integer, nullable=False),
    Column("opened_at", Float),
    Column("trial_until", Float),
    Column("fail_max", Integer, nullable=False),
    Column("reset_timeout", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

rate_limits = Table(
    "spane_rate_limits",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("value", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
)


api_tokens = Table(
    "spane_api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("tenant", String(64)),  # NULL: an admin token, which sees every tenant
    Column("hash", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
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
