"""Revocation data kept once: the CRLs and OCSP responses a dossier's signers rest on, by SHA-256.

Before, each signature's `revocation` in `dossiers.signers` held its CRLs in base64: a licensed
CA's CRL of a few MB made every dossier carry it twice (its envelope's and its form's signature).
Dossiers stored before keep their inline data; readers take either form.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocation_data",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_revocation_data"),
    )


def downgrade() -> None:
    op.drop_table("revocation_data")
