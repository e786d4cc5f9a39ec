"""Persons and the records of accepted dossiers (contribution changes, personal data, benefit claims).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in with its feature


def downgrade() -> None:
    pass
