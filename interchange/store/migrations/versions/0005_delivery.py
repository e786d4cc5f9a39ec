"""Result delivery: callback subscriptions, deliveries and their attempts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in with its feature


def downgrade() -> None:
    pass
