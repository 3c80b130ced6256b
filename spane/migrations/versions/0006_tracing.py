"""Tracing: each execution keeps the W3C traceparent of its root span.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("spane_executions", sa.Column("traceparent", sa.String(64)))


def downgrade() -> None:
    op.drop_column("spane_executions", "traceparent")
