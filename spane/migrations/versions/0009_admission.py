"""Admission: nodes waiting in the database for a concurrency slot or their tenant's turn.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "spane_admission",
        sa.Column("execution_id", sa.String(36), primary_key=True),
        sa.Column("node_id", sa.String(100), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("limits", sa.Text, nullable=False),
        sa.Column("held_since", sa.Float, nullable=False),
        sa.Column("admitted_at", sa.Float),
    )
    op.create_index(
        "ix_spane_admission_turns",
        "spane_admission",
        ["lane", "kind", "state", "tenant", "held_since"],
    )
    op.create_table(
        "spane_admission_keys",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("execution_id", sa.String(36), primary_key=True),
        sa.Column("node_id", sa.String(100), primary_key=True),
    )
    op.create_index(
        "ix_spane_admission_keys_node", "spane_admission_keys", ["execution_id", "node_id"]
    )
    op.create_table(
        "spane_admission_locks",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("vtime", sa.Float, nullable=False, server_default="0"),
    )
    op.create_table(
        "spane_admission_tenants",
        sa.Column("lane", sa.String(16), primary_key=True),
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("turn", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "spane_admission_tenants",
        "spane_admission_locks",
        "spane_admission_keys",
        "spane_admission",
    ):
        op.drop_table(table)
