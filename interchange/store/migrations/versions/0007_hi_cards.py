"""E-HI cards: the facility role's binding on API keys, the benefit level (MucHuong) of contribution
changes, and the log of card lookups.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("facility", sa.String()))
    op.add_column("contribution_changes", sa.Column("benefit_level", sa.String(2)))
    op.create_table(
        "hi_card_lookups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("facility", sa.String()),
        sa.Column("asked_id", sa.String(12), nullable=False),
        sa.Column("person_id", sa.Integer()),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hi_card_lookups"),
    )
    op.create_index("ix_hi_card_lookups_person", "hi_card_lookups", ["person_id", "at"])
    op.create_index("ix_hi_card_lookups_asked", "hi_card_lookups", ["asked_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_hi_card_lookups_asked", table_name="hi_card_lookups")
    op.drop_index("ix_hi_card_lookups_person", table_name="hi_card_lookups")
    op.drop_table("hi_card_lookups")
    with op.batch_alter_table("contribution_changes") as batch:
        batch.drop_column("benefit_level")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("facility")
