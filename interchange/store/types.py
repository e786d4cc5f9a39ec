"""What goes into the store and what comes out of it: plain dataclasses, no database types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interchange.records.model import Extracted
    from interchange.spool import Spooled

RECEIVED = "received"
REFUSED = "refused"
# After the KET_QUA: the result of a received dossier.
ACCEPTED = "accepted"  # KET_QUA CHAP_NHAN
REJECTED = "rejected"  # KET_QUA KHONG_CHAP_NHAN

ROLES = ("submitter", "ivan", "auditor", "admin", "facility")
FACILITY = "facility"  # a health facility: e-HI card lookups only (SPEC §5)


@dataclass(kw_only=True)
class NewDossier:
    """What the receipt pipeline hands to the store."""

    id: str  # MaGiaoDich: opaque, made by the caller (uuid4 hex)
    state: str  # RECEIVED (a TIEP_NHAN is given) or REFUSED (TU_CHOI)
    owner: str  # "mst:<MST>", "ivan:<MaIVAN>" or "admin:<key id>": see ApiKey.owner
    submitter_key_id: str
    original: bytes | Spooled  # the exact bytes received (a large body: in its file)
    original_staged: bool = False  # written already (Receipts.stage_original): the receipt only names it
    sha256: bytes  # digest of original, 32 raw bytes
    received_at: datetime  # tz-aware
    office_code: str  # the <office> of the dossier number
    unit_mst: str | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    ivan_code: str | None = None
    procedure: str | None = None  # MaThuTuc
    period: str | None = None  # KyKeKhai "MM/yyyy"
    due_at: datetime | None = None  # HanTraKetQua, tz-aware
    idempotency_key: str | None = None
    request_id: str | None = None  # the HTTP request's id (X-Request-Id), for the audit entry
    problems: list[dict] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)  # layer -> passed | failed | not_run
    signers: list[dict] = field(default_factory=list)
    # The CRLs and OCSP responses the signers name by SHA-256 that the store may not hold yet:
    # {sha256 hex: (crl | ocsp, DER)} (interchange.store.revdata)
    revocation_data: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    # Work items enqueued with the receipt: a kind (due at due_at, else at receipt), or a
    # (kind, due time) pair for work with a deadline of its own (forwarding upstream).
    work: list[str | tuple[str, datetime]] = field(default_factory=list)


@dataclass(kw_only=True)
class Dossier:
    """A stored dossier, without its blobs (original bytes and notices are read separately)."""

    id: str
    so_ho_so: str | None  # "NNNNN/YYYY/<office>", received dossiers only
    state: str
    owner: str
    submitter_key_id: str
    sha256: bytes
    size: int
    received_at: datetime
    unit_mst: str | None
    unit_code: str | None
    unit_name: str | None
    ivan_code: str | None
    procedure: str | None
    period: str | None
    due_at: datetime | None
    idempotency_key: str | None
    problems: list[dict]
    layers: dict[str, str]
    signers: list[dict]
    facts: dict
    result_at: datetime | None = None  # when the KET_QUA was stored
    params: dict | None = None  # the legal-parameters stamp its result was judged with
    notice_kinds: list[str] = field(default_factory=list)


@dataclass
class SaveResult:
    dossier: Dossier
    notice: bytes  # the receipt notice stored for it: the new one, or the original on a replay
    outcome: str  # "stored" | "replay" | "conflict" (same Idempotency-Key, different bytes)


@dataclass
class Scope:
    """Who is reading: everything, one unit (MST) or one I-VAN's clients."""

    all: bool = False
    mst: str | None = None
    ivan: str | None = None


@dataclass
class ApiKey:
    key_id: str
    role: str
    mst: str | None
    ivan: str | None
    label: str
    created_at: datetime
    revoked_at: datetime | None
    facility: str | None = None  # role facility: the facility's code (MaBenhVien)

    @property
    def owner(self) -> str:
        """The owner string stored on the dossiers this key submits."""
        if self.role == "submitter":
            return f"mst:{self.mst}"
        if self.role == "ivan":
            return f"ivan:{self.ivan}"
        if self.role == FACILITY:
            return f"facility:{self.facility}"
        return f"admin:{self.key_id}"

    @property
    def scope(self) -> Scope:
        """What this key may read (SPEC §5: no one reads another unit's dossiers). A facility
        reads no dossier at all."""
        if self.role == "submitter":
            return Scope(mst=self.mst)
        if self.role == "ivan":
            return Scope(ivan=self.ivan)
        if self.role in ("auditor", "admin"):
            return Scope(all=True)
        return Scope()


# Work items (the queue in the database): queued -> running -> done, or failed for good.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(kw_only=True)
class WorkItem:
    id: str
    dossier_id: str
    kind: str
    due_at: datetime  # the deadline the work serves (the dossier's HanTraKetQua)
    not_before: datetime  # not claimed before this time (set for retries with backoff)
    state: str
    attempts: int  # claims so far
    claimed_by: str | None
    claimed_until: datetime | None  # the lease: past it, another process may claim the item
    last_error: str | None
    created_at: datetime
    done_at: datetime | None


@dataclass
class Overdue:
    """Work past its due time and not done, of one kind."""

    kind: str
    count: int
    oldest_due_at: datetime


# Units registered for electronic transactions (SPEC §9).
ACTIVE, STOPPED = "active", "stopped"


@dataclass(kw_only=True)
class Unit:
    mst: str
    unit_code: str | None
    name: str | None
    state: str  # ACTIVE | STOPPED
    email: str | None
    address: str | None
    contact: str | None  # NguoiLienHe
    result_channel: str | None  # PTNhanKetQua
    dossier_id: str  # the registration dossier that set this state
    updated_at: datetime


@dataclass
class Settlement:
    """The result of a received dossier, as the KET_QUA states it, with what it changes."""

    state: str  # ACCEPTED | REJECTED
    notice: bytes  # the signed KET_QUA
    problems: list[dict]  # the errors listed in it
    unit: Unit | None = None  # the unit's row after the change, when it changes
    records: Extracted | None = None  # what an accepted dossier's forms say (interchange.store.persons)
    params: dict | None = None  # LegalParameters.stamp of the parameters judged with
