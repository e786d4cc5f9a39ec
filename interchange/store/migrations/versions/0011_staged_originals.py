"""Large originals stored while their dossier is checked: `staged_originals`.

A body of 8 MiB or more (a large employer's D02-TS: 103 MiB for 50,000 rows) is written into the
store in a transaction of its own while a worker process checks it, instead of inside the
receipt's transaction after the check: writing it took 0.42-0.51 s of the 4.1 s to the 202. The
receipt's transaction then only names it (the 202 0.35 s sooner). `content` is the last column:
SQLite writes a zeroblob() without making its zeros only there (before it, staging took the
server from 77 to 291 MiB). No foreign key to `dossiers`: the row exists before its dossier's. A
row whose dossier was never stored (forbidden, a replay, a crash before the receipt's commit) is
removed by a later staging once it is an hour old. The lz4 block repeats migration 0010's: a
migration stays as it ran, so none imports another's code.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_originals",
        sa.Column("dossier_id", sa.String(64), nullable=False),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        # last: SQLite writes a zeroblob() without making its zeros only in a row's last column
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("dossier_id", name="pk_staged_originals"),
    )
    op.create_index("ix_staged_originals_staged_at", "staged_originals", ["staged_at"])
    if op.get_context().dialect.name == "postgresql":
        # as dossier_originals.content (migration 0010); a PostgreSQL without lz4 keeps pglz
        op.execute(
            "DO $$\nBEGIN\n  EXECUTE 'ALTER TABLE staged_originals ALTER COLUMN content SET COMPRESSION lz4';\n"
            "EXCEPTION WHEN feature_not_supported OR syntax_error THEN\n"
            "  RAISE NOTICE 'compression lz4 is not available in this PostgreSQL; the column keeps pglz';\n"
            "END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_staged_originals_staged_at", table_name="staged_originals")
    op.drop_table("staged_originals")
