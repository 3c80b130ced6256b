"""Starting work: schedules and their ticks, delayed starts, signals and signal waits.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "spane_schedules",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("workflow_id", sa.String(100), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(200)),
        sa.Column("every", sa.Float),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("next_at", sa.Float),
        sa.Column("last_execution_id", sa.String(36)),
        sa.Column("last_fired_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_spane_schedules_next", "spane_schedules", ["paused", "next_at"])
    op.create_index("ix_spane_schedules_workflow", "spane_schedules", ["workflow_id"])
    op.create_table(
        "spane_schedule_ticks",
        sa.Column("schedule_id", sa.String(200), primary_key=True),
        sa.Column("tick_ms", sa.BigInteger, primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("execution_id", sa.String(36)),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    op.create_table(
        "spane_delayed_starts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workflow_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("lane", sa.String(16)),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("start_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_spane_delayed_due", "spane_delayed_starts", ["status", "start_at"])
    op.create_index(
        "ux_spane_delayed_idempotency",
        "spane_delayed_starts",
        ["tenant", "idempotency_key"],
        unique=True,
    )
    big_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "spane_signals",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("signal_id", sa.String(200)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("consumed_node", sa.String(100)),
        sa.Column("consumed_attempt", sa.Integer),
        sa.Column("consumed_at", sa.Float),
    )
    op.create_index("ix_spane_signals_execution", "spane_signals", ["execution_id", "name"])
    op.create_index("ix_spane_signals_pending", "spane_signals", ["pending"])
    op.create_index(
        "ux_spane_signals_signal_id", "spane_signals", ["execution_id", "signal_id"], unique=True
    )
    op.create_table(
        "spane_signal_waits",
        sa.Column("execution_id", sa.String(36), primary_key=True),
        sa.Column("node_id", sa.String(100), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("on_timeout", sa.String(16), nullable=False),
        sa.Column("deadline", sa.Float),
    )
    op.create_index("ix_spane_signal_waits_deadline", "spane_signal_waits", ["deadline"])


def downgrade() -> None:
    op.drop_table("spane_signal_waits")
    op.drop_table("spane_signals")
    op.drop_table("spane_delayed_starts")
    op.drop_table("spane_schedule_ticks")
    op.drop_table("spane_schedules")
