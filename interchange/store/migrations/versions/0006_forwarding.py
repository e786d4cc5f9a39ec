"""I-VAN forwarding: where each forwarding stands, and every try upstream.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forwardings",
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String()),
        sa.Column("upstream_id", sa.String(64)),
        sa.Column("forwarded_at", sa.DateTime(timezone=True)),
        sa.Column("result_due_at", sa.DateTime(timezone=True)),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("relayed_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name="fk_forwardings_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dossier_id", name="pk_forwardings"),
    )
    op.create_index("ix_forwardings_state", "forwardings", ["state"])
    op.create_table(
        "forward_attempts",
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("http_status", sa.Integer()),
        sa.Column("error", sa.String()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("upstream_id", sa.String(64)),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name="fk_forward_attempts_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dossier_id", "n", name="pk_forward_attempts"),
    )


def downgrade() -> None:
    op.drop_table("forward_attempts")
    op.drop_index("ix_forwardings_state", table_name="forwardings")
    op.drop_table("forwardings")
