"""Initial schema: dossiers, originals, notices, dossier counters, API keys.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossiers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("so_ho_so", sa.String()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("submitter_key_id", sa.String(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit_mst", sa.String()),
        sa.Column("unit_code", sa.String()),
        sa.Column("unit_name", sa.String()),
        sa.Column("ivan_code", sa.String()),
        sa.Column("procedure", sa.String()),
        sa.Column("period", sa.String()),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("idempotency_key", sa.String()),
        sa.Column("idempotency_scope", sa.String()),
        sa.Column("replay_key", sa.String()),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("signers", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dossiers"),
        sa.UniqueConstraint("so_ho_so", name="uq_dossiers_so_ho_so"),
        sa.UniqueConstraint("idempotency_scope", name="uq_dossiers_idempotency_scope"),
        sa.UniqueConstraint("replay_key", name="uq_dossiers_replay_key"),
    )
    op.create_index("ix_dossiers_owner", "dossiers", ["owner"])
    op.create_index("ix_dossiers_unit_mst", "dossiers", ["unit_mst"])
    op.create_index("ix_dossiers_ivan_code", "dossiers", ["ivan_code"])
    op.create_index("ix_dossiers_state", "dossiers", ["state"])
    op.create_index("ix_dossiers_received_at", "dossiers", ["received_at", "id"])

    op.create_table(
        "dossier_originals",
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dossier_id"],
            ["dossiers.id"],
            name="fk_dossier_originals_dossier_id_dossiers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dossier_id", name="pk_dossier_originals"),
    )
    op.create_table(
        "notices",
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name="fk_notices_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dossier_id", "kind", name="pk_notices"),
    )
    op.create_table(
        "dossier_counters",
        sa.Column("office", sa.String(), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("office", "year", name="pk_dossier_counters"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("mst", sa.String()),
        sa.Column("ivan", sa.String()),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("dossier_counters")
    op.drop_table("notices")
    op.drop_table("dossier_originals")
    op.drop_index("ix_dossiers_received_at", table_name="dossiers")
    op.drop_index("ix_dossiers_state", table_name="dossiers")
    op.drop_index("ix_dossiers_ivan_code", table_name="dossiers")
    op.drop_index("ix_dossiers_unit_mst", table_name="dossiers")
    op.drop_index("ix_dossiers_owner", table_name="dossiers")
    op.drop_table("dossiers")
