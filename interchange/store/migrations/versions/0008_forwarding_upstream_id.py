"""I-VAN: find a forwarding by the upstream's transaction id (a notice the agency pushes names it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_forwardings_upstream_id", "forwardings", ["upstream_id"])


def downgrade() -> None:
    op.drop_index("ix_forwardings_upstream_id", table_name="forwardings")
