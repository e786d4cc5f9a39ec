"""Table definitions (SQLAlchemy Core). Migrations in migrations/versions/ create the same schema."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
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

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # On SQLite the text SQLAlchemy's DATETIME would write ("YYYY-MM-DD HH:MM:SS.ffffff"),
        # made in one C call: its own formatting (a dict and a %-format per value) was a tenth
        # of the server process's time under load, the result work writing rows of times.
        # The text of the last time is kept: a settlement writes the same `now` or `received_at`
        # object into a hundred rows (persons, records, audit), 1.2 µs each to format again.
        # One tuple, swapped whole, so that threads writing at once never pair a time with
        # another's text.
        last: tuple[datetime | None, str | None] = (None, None)

        def process(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            seen = last
            if seen[0] is value:
                return seen[1]
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: the store only takes tz-aware times")
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            last = (value, text)
            return text

        return process


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
    Column("params", JSON),  # the legal-parameters stamp the result was judged with (migration 0004)
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

# A large original written while its dossier is checked, before the dossier's row exists (no
# foreign key): read as the dossier's original once the dossier is stored (migration 0011).
staged_originals = Table(
    "staged_originals",
    metadata,
    Column("dossier_id", String(64), primary_key=True),
    Column("staged_at", UTCDateTime, nullable=False),
    Column("content", LargeBinary, nullable=False),  # last: see migration 0011
    Index("ix_staged_originals_staged_at", "staged_at"),
)

# The CRLs and OCSP responses the signatures of dossiers rest on, each once, by the SHA-256 (hex)
# its signers' `revocation` names it with (`crl_sha256`, `ocsp_sha256`); written with the first
# receipt that uses it (migration 0009). Kept for ever: the evidence of those dossiers.
revocation_data = Table(
    "revocation_data",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # crl | ocsp
    Column("der", LargeBinary, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
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
    Column("facility", String),  # role facility: the health facility's code (MaBenhVien), migration 0007
    Column("label", String, nullable=False),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# The tamper-evident audit log (interchange.audit.chain, appended by interchange.store.audit): each entry's hash covers its fields and
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

# One row per person. The 12-digit personal ID is the key, the 10-digit SI code an alias; a row may
# hold either or both. Two rows found to be one person are merged: the other row keeps its place,
# loses its identifiers and points at the row that stays (merged_into).
persons = Table(
    "persons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("personal_id", String(12), unique=True),
    Column("si_code", String(10), unique=True),
    Column("name", String),
    Column("birth_date", Date),
    Column("gender", Integer),
    Column("nationality", String(2)),
    # Which form last set the personal data and when its dossier was received: a TK1-TS outranks
    # the other forms, and an older dossier never overwrites a newer one.
    Column("data_rank", Integer, nullable=False),
    Column("data_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("merged_into", Integer, ForeignKey("persons.id")),
)


def _record_columns() -> list:
    """What every record row has: its person, its dossier (with the dossier's receipt time and
    unit, copied so the book reads one table) and its place in the form. Unique per dossier and
    XPath: writing a dossier's records twice is refused by the schema."""
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("person_id", Integer, ForeignKey("persons.id"), nullable=False),
        Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
        Column("received_at", UTCDateTime, nullable=False),
        Column("unit_mst", String),
        Column("unit_code", String),
        Column("xpath", String, nullable=False),
        Column("stt", Integer, nullable=False),
        # The person as this row named them.
        Column("personal_id", String(12)),
        Column("si_code", String(10)),
        Column("name", String),
    ]


contribution_changes = Table(
    "contribution_changes",
    metadata,
    *_record_columns(),
    Column("pa", String(8), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("from_month", String(7), nullable=False),  # "YYYY-MM"
    Column("to_month", String(7)),
    Column("position", String),
    Column("workplace", String),
    Column("salary", Numeric(20, 4)),
    Column("coefficient", Boolean, nullable=False),
    Column("allowances", JSON, nullable=False),  # element name -> decimal text
    Column("rate", Numeric(8, 4)),
    Column("region", String(2)),
    Column("note", String),
    Column("benefit_level", String(2)),  # MucHuong (HI benefit-level code), migration 0007
    UniqueConstraint("dossier_id", "xpath"),
    Index("ix_contribution_changes_person", "person_id", "received_at", "stt"),
    Index("ix_contribution_changes_unit", "unit_mst", "from_month"),
)

personal_data_changes = Table(
    "personal_data_changes",
    metadata,
    *_record_columns(),
    Column("birth_date", Date),
    Column("gender", Integer),
    Column("nationality", String(2)),
    Column("data", JSON, nullable=False),
    Column("change", String),
    UniqueConstraint("dossier_id", "xpath"),
    Index("ix_personal_data_changes_person", "person_id", "received_at"),
    Index("ix_personal_data_changes_unit", "unit_mst"),
)

benefit_claims = Table(
    "benefit_claims",
    metadata,
    *_record_columns(),
    Column("regime", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("group_code", String),
    Column("from_date", Date),
    Column("to_date", Date),
    Column("days", Integer),
    Column("data", JSON, nullable=False),
    UniqueConstraint("dossier_id", "xpath"),
    Index("ix_benefit_claims_person", "person_id", "received_at"),
    Index("ix_benefit_claims_unit", "unit_mst"),
)


# ---- result delivery (migration 0005; interchange.delivery) ----------------------------------

# One callback URL per owner scope ("mst:<MST>" of a submitter key, "ivan:<MaIVAN>" of an ivan key).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("owner", String, primary_key=True),
    Column("url", String, nullable=False),
    Column("key_id", String(12), nullable=False),  # the key that registered it
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per notice and recipient: a callback (recipient = the subscription's owner) or an
# e-mail (recipient = "mst:<MST>" of the registered unit). Made in the notice's transaction.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # <dossier id>.<notice kind>.<route>: X-Delivery-Id
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("notice_kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),  # callback | email
    Column("recipient", String, nullable=False),
    Column("target", String, nullable=False),  # the URL or e-mail address at the time of the notice
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime),  # the next attempt (pending only)
    Column("last_error", String),
    Column("created_at", UTCDateTime, nullable=False),  # when the notice was stored
    Column("delivered_at", UTCDateTime),
    Index("ix_deliveries_dossier_id", "dossier_id"),
    Index("ix_deliveries_recipient_state", "recipient", "state"),  # a changed URL moves the waiting ones
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("delivery_id", String(64), ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", Integer),  # the HTTP status (callbacks); None when no answer came
    Column("error", String),  # None when delivered
    Column("duration_ms", Integer, nullable=False),
)


# ---- I-VAN forwarding (migration 0006; interchange.forwarding) -------------------------------

# One row per dossier the `ivan` role forwards upstream, written by its work (absent until the
# first try): where the forwarding stands and, once the upstream received it, its KET_QUA polling.
forwardings = Table(
    "forwardings",
    metadata,
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(24), nullable=False),  # pending | forwarded | refused_upstream | failed
    Column("due_at", UTCDateTime, nullable=False),  # the forwarding target (received_at + target, clock time)
    Column("attempts", Integer, nullable=False),  # forwarding tries made (deferrals by the breaker are not tries)
    Column("next_try_at", UTCDateTime),
    Column("last_error", String),
    Column("upstream_id", String(64)),  # the upstream's MaGiaoDich
    Column("forwarded_at", UTCDateTime),  # when the upstream's receipt (or refusal) came
    Column("result_due_at", UTCDateTime),  # the upstream's HanTraKetQua
    Column("polls", Integer, nullable=False),  # KET_QUA polls made
    Column("relayed_at", UTCDateTime),  # when the upstream's KET_QUA was stored
    Index("ix_forwardings_state", "state"),
    Index("ix_forwardings_upstream_id", "upstream_id"),  # a KET_QUA pushed by the agency names it
)

# Every try upstream, forwarding and polling alike, one row each (what happened, when, how long).
forward_attempts = Table(
    "forward_attempts",
    metadata,
    Column("dossier_id", String(64), ForeignKey("dossiers.id", ondelete="CASCADE"), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),  # 1, 2, ... per dossier
    Column("kind", String(16), nullable=False),  # forward | poll | push
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(24), nullable=False),  # see interchange.forwarding.OUTCOMES
    Column("http_status", Integer),
    Column("error", String),
    Column("duration_ms", Integer, nullable=False),
    Column("upstream_id", String(64)),
)

# Every e-HI card lookup (GET /api/v1/hi-cards/{id}, each item of POST /api/v1/hi-cards/lookups),
# written in batches by interchange.store.cards.LookupLog: who asked, for which ID, when, and what
# the answer was. Read by auditors per person (GET /api/v1/persons/{pid}/lookups).
hi_card_lookups = Table(
    "hi_card_lookups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("key_id", String(12), nullable=False),
    Column("facility", String),  # the facility code of the key (None for an admin key)
    Column("asked_id", String(12), nullable=False),  # the personal ID or SI code as asked
    Column("person_id", Integer),  # the person that ID names, when known (whatever the outcome)
    Column("outcome", String(16), nullable=False),  # valid | not_valid | suspended | unknown | mismatch | bad_request
    Index("ix_hi_card_lookups_person", "person_id", "at"),
    Index("ix_hi_card_lookups_asked", "asked_id", "at"),
)
