"""HTTP API: hashed API tokens; an index for paging executions newest first; completion
callbacks (the callback of an execution, or of a delayed start, and the state of its delivery).

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "spane_api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant", sa.String(64)),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_spane_executions_created", "spane_executions", ["created_at", "id"])
    with op.batch_alter_table("spane_executions") as batch:
        batch.add_column(sa.Column("on_finish", sa.Text))
        batch.add_column(sa.Column("callback_state", sa.String(16)))
        batch.add_column(sa.Column("callback_attempts", sa.Integer, server_default="0"))
        batch.add_column(sa.Column("callback_next_at", sa.Float))
    op.create_index(
        "ix_spane_executions_callback", "spane_executions", ["callback_state", "callback_next_at"]
    )
    with op.batch_alter_table("spane_delayed_starts") as batch:
        batch.add_column(sa.Column("on_finish", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("spane_delayed_starts") as batch:
        batch.drop_column("on_finish")
    op.drop_index("ix_spane_executions_callback", "spane_executions")
    with op.batch_alter_table("spane_executions") as batch:
        for column in ("callback_next_at", "callback_attempts", "callback_state", "on_finish"):
            batch.drop_column(column)
    op.drop_index("ix_spane_executions_created", "spane_executions")
    op.drop_table("spane_api_tokens")
