"""Result delivery: callback subscriptions, deliveries and their attempts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_subscriptions"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("notice_kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name="fk_deliveries_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_dossier_id", "deliveries", ["dossier_id"])
    op.create_index("ix_deliveries_recipient_state", "deliveries", ["recipient", "state"])
    op.create_table(
        "delivery_attempts",
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer()),
        sa.Column("error", sa.String()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", "n", name="pk_delivery_attempts"),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_index("ix_deliveries_recipient_state", table_name="deliveries")
    op.drop_index("ix_deliveries_dossier_id", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("subscriptions")
