"""PostgreSQL compresses the large values of dossiers with lz4 instead of pglz.

Every dossier's original (45 KiB for a 20-row D02-TS), its notices and its signers' report are
compressed when stored (PostgreSQL's TOAST, past about 2 KiB). With pglz, the default, the
original's INSERT took 0.8 ms of the database's CPU, the most of any statement of a receipt
(pg_stat_statements, bench/receipts.py on PostgreSQL). lz4 (PostgreSQL 14 and later, when built
with it, as Debian's and the official images are) takes half the time and keeps a third of the
bytes where pglz kept 40 % (the same dossiers). Values stored before keep their compression:
PostgreSQL reads either. On an older or a PostgreSQL without lz4, pglz stays (a notice says so).
SQLite stores these values as they are: nothing to do there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (("dossier_originals", "content"), ("notices", "xml"), ("dossiers", "signers"))


def _set_compression(method: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    alters = "\n".join(
        f"  EXECUTE 'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}';" for table, column in COLUMNS
    )
    # EXECUTE, so that a PostgreSQL before 14 (no SET COMPRESSION) fails inside the block, not parsing it
    op.execute(
        "DO $$\nBEGIN\n" + alters + "\n"
        "EXCEPTION WHEN feature_not_supported OR syntax_error THEN\n"
        f"  RAISE NOTICE 'compression {method} is not available in this PostgreSQL; the columns keep theirs';\n"
        "END $$"
    )


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
