"""The tamper-evident audit log: a hash chain of entries, each appended in the transaction of
what it records (a receipt, a notice, a key event, an admin action).

    hash = SHA-256(canonical JSON of {seq, at, kind, actor, dossier_id, data, prev_hash})

Canonical JSON: keys sorted, no white space, UTF-8, `at` as ISO 8601 UTC with microseconds.
`prev_hash` is the hash of the entry before (GENESIS for the first), so changing an entry
breaks its own hash, and rewriting it with a fresh hash breaks the link the next one holds.
A one-row head (last seq and hash) is locked by every appender, which keeps one chain when
several processes share a PostgreSQL database, and shows entries cut off the end.

Checking is pure (no database): `ChainChecker` takes the whole log in seq order with O(1)
state, `check_excerpt` the few entries of one dossier in an evidence bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.clock import utc_now
from interchange.store.tables import audit_head, audit_log

GENESIS = "0" * 64
HEAD_ID = 1

# Entry kinds.
DOSSIER_RECEIVED = "dossier.received"  # stored with a TIEP_NHAN
DOSSIER_REFUSED = "dossier.refused"  # stored with a TU_CHOI
DOSSIER_REPLAYED = "dossier.replayed"  # a resend answered with the stored notice (nothing stored)
DOSSIER_CONFLICT = "dossier.conflict"  # same Idempotency-Key, different bytes (409)
NOTICE_STORED = "notice.stored"  # a later notice (KET_QUA)
DOSSIER_SETTLED = "dossier.settled"  # a received dossier's result: accepted or rejected (with the KET_QUA)
UNIT_CHANGED = "unit.changed"  # a unit's registration for e-transactions (SPEC §9) set or changed
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
KEY_ROTATED = "key.rotated"
ADMIN_ACTION = "admin.action"

REORDER_WINDOW = 1000  # how far from its place an entry's original seq is looked for
REORDER_SEARCHES = 50  # for this many mismatching entries at most (each search costs 2,000 hashes)
MAX_FINDINGS = 1000


def canonical_json(value) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    *, seq: int, at: str, kind: str, actor: str, dossier_id: str | None, data, prev_hash: str
) -> str:
    fields = {
        "seq": seq,
        "at": at,
        "kind": kind,
        "actor": actor,
        "dossier_id": dossier_id,
        "data": data,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(fields)).hexdigest()


@dataclass(frozen=True)
class Event:
    """Something to record; the log gives it a seq, a time and its place in the chain."""

    kind: str
    actor: str
    data: dict
    dossier_id: str | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str  # time_text(...)
    kind: str
    actor: str
    dossier_id: str | None
    data: dict
    prev_hash: str
    hash: str

    def computed_hash(self, seq: int | None = None) -> str:
        return entry_hash(
            seq=self.seq if seq is None else seq,
            at=self.at,
            kind=self.kind,
            actor=self.actor,
            dossier_id=self.dossier_id,
            data=self.data,
            prev_hash=self.prev_hash,
        )

    def as_dict(self) -> dict:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "actor": self.actor,
            "dossier_id": self.dossier_id,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        return cls(
            seq=int(d["seq"]),
            at=str(d["at"]),
            kind=str(d["kind"]),
            actor=str(d["actor"]),
            dossier_id=d.get("dossier_id"),
            data=d["data"],
            prev_hash=str(d["prev_hash"]),
            hash=str(d["hash"]),
        )

    @classmethod
    def from_row(cls, row) -> Entry:
        return cls(
            row.seq, time_text(row.at), row.kind, row.actor, row.dossier_id, row.data, row.prev_hash, row.hash
        )


# -- appending -------------------------------------------------------------------------------


def chain(after_seq: int, after_hash: str, at: datetime, events: Sequence[Event]) -> list[Entry]:
    entries = []
    prev, when = after_hash, time_text(at)
    for seq, event in enumerate(events, start=after_seq + 1):
        data = event.data  # plain JSON values: what the database gives back hashes the same
        digest = entry_hash(
            seq=seq,
            at=when,
            kind=event.kind,
            actor=event.actor,
            dossier_id=event.dossier_id,
            data=data,
            prev_hash=prev,
        )
        entries.append(Entry(seq, when, event.kind, event.actor, event.dossier_id, data, prev, digest))
        prev = digest
    return entries


async def append(conn: AsyncConnection, events: Sequence[Event]) -> list[Entry]:
    """Append `events` in the caller's transaction: one locked read of the head, one insert of
    all the entries, one update. Call it last in a transaction, so that the head stays locked briefly."""
    if not events:
        return []
    head = (
        await conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID).with_for_update()
        )
    ).one()
    at = utc_now()  # taken under the lock, so times never go backwards along the chain
    entries = chain(head.seq, head.hash, at, events)
    # One executemany of a cached statement: a multi-row VALUES would be compiled anew for every
    # batch size, which cost more than the whole insert.
    await conn.execute(
        audit_log.insert(),
        [
            {
                "seq": e.seq,
                "at": at,
                "kind": e.kind,
                "actor": e.actor,
                "dossier_id": e.dossier_id,
                "data": e.data,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
            for e in entries
        ],
    )
    await conn.execute(
        update(audit_head)
        .where(audit_head.c.id == HEAD_ID)
        .values(seq=entries[-1].seq, hash=entries[-1].hash)
    )
    return entries


# -- checking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    seq: int
    what: str  # edited | reordered | rewritten | removed | head | link | order
    message: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "what": self.what, "message": self.message}


@dataclass
class ChainReport:
    entries: int
    head_seq: int
    head_hash: str
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0  # past MAX_FINDINGS

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "first": self.findings[0].as_dict() if self.findings else None,
            "findings": [f.as_dict() for f in self.findings],
            "more_findings": self.more_findings,
        }


def _original_seq(entry: Entry) -> int | None:
    """The seq an entry was written with, when it now sits elsewhere (moved or renumbered)."""
    for distance in range(1, REORDER_WINDOW + 1):
        for candidate in (entry.seq - distance, entry.seq + distance):
            if candidate > 0 and entry.computed_hash(candidate) == entry.hash:
                return candidate
    return None


def _mismatch(entry: Entry, search: bool = True) -> Finding:
    written_as = _original_seq(entry) if search else None
    if written_as is not None:
        return Finding(
            entry.seq,
            "reordered",
            f"the entry at seq {entry.seq} was written as seq {written_as}: entries were reordered, "
            "or one was removed and the rest renumbered",
        )
    return Finding(
        entry.seq, "edited", f"the entry at seq {entry.seq} was changed: its content does not match its hash"
    )


class ChainChecker:
    """Checks the whole log, fed in seq order (state is O(1): the log may be large)."""

    def __init__(self) -> None:
        self._expected = 1
        self._prev_hash = GENESIS
        self._prev_flagged = False
        self._count = 0
        self._findings: list[Finding] = []
        self._more = 0
        self._searches = 0

    def _flag(self, finding: Finding) -> None:
        if len(self._findings) < MAX_FINDINGS:
            self._findings.append(finding)
        else:
            self._more += 1

    def add(self, entry: Entry) -> None:
        self._count += 1
        flagged = False
        if entry.seq != self._expected:
            missing = (
                f"seq {self._expected}"
                if entry.seq == self._expected + 1
                else f"seqs {self._expected}..{entry.seq - 1}"
            )
            self._flag(
                Finding(self._expected, "removed", f"{missing} removed: the log goes on at seq {entry.seq}")
            )
            flagged = True
        if entry.computed_hash() != entry.hash:
            self._searches += 1
            self._flag(_mismatch(entry, search=self._searches <= REORDER_SEARCHES))
            flagged = True
        elif entry.prev_hash != self._prev_hash and not flagged and not self._prev_flagged:
            self._flag(
                Finding(
                    entry.seq - 1,
                    "rewritten",
                    f"the entry at seq {entry.seq - 1} was replaced or rewritten with a new hash: "
                    f"seq {entry.seq} links to {entry.prev_hash[:16]}..., not to its hash {self._prev_hash[:16]}...",
                )
            )
            flagged = True
        self._prev_hash = entry.hash
        self._prev_flagged = flagged
        self._expected = entry.seq + 1

    def finish(self, head_seq: int, head_hash: str) -> ChainReport:
        last = self._expected - 1
        if head_seq > last:
            missing = f"seq {head_seq}" if head_seq == last + 1 else f"seqs {last + 1}..{head_seq}"
            self._flag(
                Finding(
                    last + 1,
                    "removed",
                    f"{missing} removed from the end: the head says the log reached seq {head_seq}",
                )
            )
        elif head_seq < last:
            self._flag(
                Finding(
                    head_seq + 1,
                    "head",
                    f"the head says the log ends at seq {head_seq}, but it goes on to {last}",
                )
            )
        elif head_hash != self._prev_hash:
            self._flag(Finding(last, "head", f"the head's hash does not match the last entry (seq {last})"))
        return ChainReport(self._count, head_seq, head_hash, self._findings, self._more)


def check_chain(entries: Iterable[Entry], head_seq: int, head_hash: str) -> ChainReport:
    checker = ChainChecker()
    for entry in entries:
        checker.add(entry)
    return checker.finish(head_seq, head_hash)


# -- excerpts (a dossier's entries in an evidence bundle) ---------------------------------------


def excerpt_records(
    entries: Sequence[Entry], next_links: Sequence, head_seq: int, head_hash: str
) -> list[dict]:
    """The lines of a bundle's audit.jsonl: the entries, then for each one whose successor is not
    among them that successor's link (its seq, prev_hash and hash, never its content, which may
    be another unit's), then the head of the log when the bundle was made."""
    have = {e.seq for e in entries}
    records = [{"record": "entry", **e.as_dict()} for e in entries]
    records += [
        {"record": "link", "seq": e.seq, "prev_hash": e.prev_hash, "hash": e.hash}
        for e in next_links
        if e.seq not in have
    ]
    records.append({"record": "head", "seq": head_seq, "hash": head_hash})
    return records


def check_excerpt(records: Sequence[dict]) -> tuple[list[Entry], list[Finding]]:
    """Check a bundle's audit records: every entry's own hash, that each is followed in the
    chain by the next record (entry or link) holding its hash, and that none lies past the head."""
    findings: list[Finding] = []
    entries: list[Entry] = []
    hashes: dict[int, str] = {}  # seq -> hash, for entries and links
    prevs: dict[int, str] = {}  # seq -> prev_hash
    head: tuple[int, str] | None = None
    last_seq = 0
    for index, record in enumerate(records, start=1):
        kind = record.get("record")
        try:
            if kind == "head":
                head = (int(record["seq"]), str(record["hash"]))
                continue
            seq = int(record["seq"])
            if kind == "entry":
                entry = Entry.from_dict(record)
                entries.append(entry)
                if entry.computed_hash() != entry.hash:
                    findings.append(_mismatch(entry))
            elif kind != "link":
                findings.append(Finding(0, "order", f"line {index}: unknown record {kind!r}"))
                continue
        except (KeyError, TypeError, ValueError) as exc:
            findings.append(Finding(0, "order", f"line {index}: unreadable record ({exc})"))
            continue
        if seq in hashes:
            findings.append(Finding(seq, "order", f"seq {seq} appears twice"))
        if kind == "entry" and seq <= last_seq:
            findings.append(
                Finding(seq, "order", f"entry seq {seq} comes after seq {last_seq}: entries were reordered")
            )
        if kind == "entry":
            last_seq = max(last_seq, seq)
        hashes[seq] = str(record["hash"])
        prevs[seq] = str(record["prev_hash"])
    for seq, prev in sorted(prevs.items()):
        if seq - 1 in hashes and hashes[seq - 1] != prev:
            findings.append(Finding(seq, "link", f"seq {seq} does not link to the hash of seq {seq - 1}"))
    if head is None:
        findings.append(
            Finding(0, "head", "no head record: the log's state when the bundle was made is unknown")
        )
    else:
        for entry in entries:
            if entry.seq > head[0]:
                findings.append(
                    Finding(entry.seq, "head", f"seq {entry.seq} lies past the head (seq {head[0]})")
                )
            elif entry.seq == head[0]:
                if entry.hash != head[1]:
                    findings.append(
                        Finding(entry.seq, "head", f"the head's hash does not match seq {entry.seq}")
                    )
            elif entry.seq + 1 not in hashes:
                findings.append(
                    Finding(entry.seq, "link", f"no link from seq {entry.seq + 1} to seq {entry.seq}")
                )
    findings.sort(key=lambda f: f.seq)
    return entries, findings
