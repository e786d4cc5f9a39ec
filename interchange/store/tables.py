"""Table definitions (SQLAlchemy Core). Migrations in migrations/versions/ create the same schema."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Named constraints, so that Alembic (and batch mode on SQLite) can address them later.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type: SQLAlchemy writes the wall clock and reads back a naive
    value. Normalising to UTC on the way in makes the stored text sortable and the naive
    value read back unambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes tz-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


dossiers = Table(
    "dossiers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("so_ho_so", String, unique=True),
    Column("state", String(16), nullable=False),
    Column("owner", String, nullable=False),
    Column("submitter_key_id", String, nullable=False),
    Column("sha256", LargeBinary(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("unit_mst", String),
    Column("unit_code", String),
    Column("unit_name", String),
    Column("ivan_code", String),
    Column("procedure", String),
    Column("period", String),
    Column("due_at", UTCDateTime),
    Column("idempotency_key", String),
    # owner + ":" + Idempotency-Key: one key per caller scope, enforced by the schema.
    Column("idempotency_scope", String, unique=True),
    # owner + ":" + sha256 hex, only while the dossier is not refused: an exact resend is a replay,
    # a resend after a refusal is judged again.
    Column("replay_key", String, unique=True),
    Column("problems", JSON, nullable=False),
    Column("layers", JSON, nullable=False),
    Column("signers", JSON, nullable=False),
    Column("facts", JSON, nullable=False),
    Column("result_at", UTCDateTime),  # when the KET_QUA was stored (migration 0003)
    Index("ix_dossiers_owner", "owner"),
    Index("ix_dossiers_unit_mst", "unit_mst"),
    Index("ix_dossiers_ivan_code", "ivan_code"),
    Index("ix_dossiers_state", "state"),
    Index("ix_dossiers_received_at", "received_at", "id"),  # also the keyset pagination order
)

# Apart from dossiers so that listing and reading a dossier never loads the blob.
originals = Table(
    "dossier_originals",
    metadata,
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

notices = Table(
    "notices",
    metadata,
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("xml", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Last dossier number given per office and year (the year in Asia/Ho_Chi_Minh).
counters = Table(
    "dossier_counters",
    metadata,
    Column("office", String, primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last_number", Integer, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(12), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("mst", String),
    Column("ivan", String),
    Column("label", String, nullable=False),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# The tamper-evident audit log (interchange.audit.log): each entry's hash covers its fields and
# the hash of the entry before it. Entries are only ever appended, in the transaction of what
# they record.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String, nullable=False),
    Column("dossier_id", String(64)),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_dossier_id", "dossier_id", "seq"),
)

# One row (id 1): the last entry's seq and hash. Appenders lock it (SELECT ... FOR UPDATE on
# PostgreSQL; SQLite writers hold the database lock), so several processes keep one chain; it
# also shows when entries were cut off the end of the log.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# The work queue (interchange.jobs): what happens after receipt, one row per piece of work,
# claimed by due time with a lease (SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL).
work_items = Table(
    "work_items",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_by", String),
    Column("claimed_until", UTCDateTime),
    Column("last_error", String),
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    UniqueConstraint("dossier_id", "kind"),  # one item of a kind per dossier: enqueueing twice is a no-op
    Index("ix_work_items_state_due_at", "state", "due_at"),
)

# Units registered for electronic transactions (SPEC §9), written by the registration work.
units = Table(
    "units",
    metadata,
    Column("mst", String, primary_key=True),
    Column("unit_code", String),
    Column("name", String),
    Column("state", String(16), nullable=False),
    Column("email", String),
    Column("address", String),
    Column("contact", String),
    Column("result_channel", String),
    Column("dossier_id", String(64), ForeignKey("dossiers.id"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# ---- records of accepted dossiers (migration 0004; interchange.store.persons) ---------------


# ---- result delivery (migration 0005; interchange.delivery) ----------------------------------


# ---- I-VAN forwarding (migration 0006; interchange.forwarding) -------------------------------
