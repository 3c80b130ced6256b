"""Shared state of circuit breakers and rate limits (used when the broker is not Redis).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "spane_breakers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("successes", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.Float),
        sa.Column("trial_until", sa.Float),
        sa.Column("fail_max", sa.Integer, nullable=False),
        sa.Column("reset_timeout", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "spane_rate_limits",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spane_rate_limits")
    op.drop_table("spane_breakers")
