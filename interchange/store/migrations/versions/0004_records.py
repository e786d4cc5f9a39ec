"""Persons and the records of accepted dossiers (contribution changes, personal data, benefit claims).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RECORD_TABLES = ("contribution_changes", "personal_data_changes", "benefit_claims")


def _record_columns(table: str) -> list:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit_mst", sa.String()),
        sa.Column("unit_code", sa.String()),
        sa.Column("xpath", sa.String(), nullable=False),
        sa.Column("stt", sa.Integer(), nullable=False),
        sa.Column("personal_id", sa.String(12)),
        sa.Column("si_code", sa.String(10)),
        sa.Column("name", sa.String()),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name=f"fk_{table}_person_id_persons"),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name=f"fk_{table}_dossier_id_dossiers", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("dossier_id", "xpath", name=f"uq_{table}_dossier_id"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("params", sa.JSON()))
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("personal_id", sa.String(12)),
        sa.Column("si_code", sa.String(10)),
        sa.Column("name", sa.String()),
        sa.Column("birth_date", sa.Date()),
        sa.Column("gender", sa.Integer()),
        sa.Column("nationality", sa.String(2)),
        sa.Column("data_rank", sa.Integer(), nullable=False),
        sa.Column("data_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.Integer()),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
        sa.UniqueConstraint("personal_id", name="uq_persons_personal_id"),
        sa.UniqueConstraint("si_code", name="uq_persons_si_code"),
        sa.ForeignKeyConstraint(["merged_into"], ["persons.id"], name="fk_persons_merged_into_persons"),
    )
    op.create_table(
        "contribution_changes",
        *_record_columns("contribution_changes"),
        sa.Column("pa", sa.String(8), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("from_month", sa.String(7), nullable=False),
        sa.Column("to_month", sa.String(7)),
        sa.Column("position", sa.String()),
        sa.Column("workplace", sa.String()),
        sa.Column("salary", sa.Numeric(20, 4)),
        sa.Column("coefficient", sa.Boolean(), nullable=False),
        sa.Column("allowances", sa.JSON(), nullable=False),
        sa.Column("rate", sa.Numeric(8, 4)),
        sa.Column("region", sa.String(2)),
        sa.Column("note", sa.String()),
    )
    op.create_index(
        "ix_contribution_changes_person", "contribution_changes", ["person_id", "received_at", "stt"]
    )
    op.create_index("ix_contribution_changes_unit", "contribution_changes", ["unit_mst", "from_month"])
    op.create_table(
        "personal_data_changes",
        *_record_columns("personal_data_changes"),
        sa.Column("birth_date", sa.Date()),
        sa.Column("gender", sa.Integer()),
        sa.Column("nationality", sa.String(2)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("change", sa.String()),
    )
    op.create_index("ix_personal_data_changes_person", "personal_data_changes", ["person_id", "received_at"])
    op.create_index("ix_personal_data_changes_unit", "personal_data_changes", ["unit_mst"])
    op.create_table(
        "benefit_claims",
        *_record_columns("benefit_claims"),
        sa.Column("regime", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("group_code", sa.String()),
        sa.Column("from_date", sa.Date()),
        sa.Column("to_date", sa.Date()),
        sa.Column("days", sa.Integer()),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_benefit_claims_person", "benefit_claims", ["person_id", "received_at"])
    op.create_index("ix_benefit_claims_unit", "benefit_claims", ["unit_mst"])


def downgrade() -> None:
    op.drop_index("ix_benefit_claims_unit", table_name="benefit_claims")
    op.drop_index("ix_benefit_claims_person", table_name="benefit_claims")
    op.drop_table("benefit_claims")
    op.drop_index("ix_personal_data_changes_unit", table_name="personal_data_changes")
    op.drop_index("ix_personal_data_changes_person", table_name="personal_data_changes")
    op.drop_table("personal_data_changes")
    op.drop_index("ix_contribution_changes_unit", table_name="contribution_changes")
    op.drop_index("ix_contribution_changes_person", table_name="contribution_changes")
    op.drop_table("contribution_changes")
    op.drop_table("persons")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("params")
