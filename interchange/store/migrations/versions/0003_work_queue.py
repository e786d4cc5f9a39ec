"""Work queue, registered units, and the time of a dossier's result.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("result_at", sa.DateTime(timezone=True)))
    op.create_table(
        "work_items",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String()),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name="fk_work_items_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_work_items"),
        sa.UniqueConstraint("dossier_id", "kind", name="uq_work_items_dossier_id"),
    )
    op.create_index("ix_work_items_state_due_at", "work_items", ["state", "due_at"])
    op.create_table(
        "units",
        sa.Column("mst", sa.String(), nullable=False),
        sa.Column("unit_code", sa.String()),
        sa.Column("name", sa.String()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("email", sa.String()),
        sa.Column("address", sa.String()),
        sa.Column("contact", sa.String()),
        sa.Column("result_channel", sa.String()),
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossiers.id"], name="fk_units_dossier_id_dossiers"),
        sa.PrimaryKeyConstraint("mst", name="pk_units"),
    )


def downgrade() -> None:
    op.drop_table("units")
    op.drop_index("ix_work_items_state_due_at", table_name="work_items")
    op.drop_table("work_items")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("result_at")
