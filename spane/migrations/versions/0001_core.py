"""Core tables: workflows, executions, nodes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "spane_workflows",
        sa.Column("workflow_id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "spane_executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workflow_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("remaining", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.String(36)),
        sa.Column("parent_node_id", sa.String(100)),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_spane_executions_status", "spane_executions", ["status"])
    op.create_index("ix_spane_executions_workflow", "spane_executions", ["workflow_id"])
    op.create_index("ix_spane_executions_parent", "spane_executions", ["parent_id"])
    op.create_index(
        "ux_spane_executions_idempotency",
        "spane_executions",
        ["tenant", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "spane_nodes",
        sa.Column("execution_id", sa.String(36), primary_key=True),
        sa.Column("node_id", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"),
        sa.Column("waiting_on", sa.Integer, nullable=False),
        sa.Column("live_parents", sa.Integer, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("route", sa.Text),
        sa.Column("child_id", sa.String(36)),
        sa.Column("wake_at", sa.Float),
        sa.Column("lease_until", sa.Float),
        sa.Column("queued_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_spane_nodes_status_wake", "spane_nodes", ["status", "wake_at"])
    op.create_index("ix_spane_nodes_status_lease", "spane_nodes", ["status", "lease_until"])
    big_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "spane_events",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(100)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_spane_events_execution", "spane_events", ["execution_id", "id"])
    op.create_table(
        "spane_dead_letters",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("execution_id", sa.String(36)),
        sa.Column("node_id", sa.String(100)),
        sa.Column("queue", sa.String(200)),
        sa.Column("actor", sa.String(200)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("retried_at", sa.Float),
    )
    op.create_index("ix_spane_dead_letters_status", "spane_dead_letters", ["status"])
    op.create_table(
        "spane_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("until", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spane_locks")
    op.drop_table("spane_dead_letters")
    op.drop_table("spane_events")
    op.drop_table("spane_nodes")
    op.drop_table("spane_executions")
    op.drop_table("spane_workflows")
