"""The delivery tables: subscriptions, deliveries made with their notices, attempts.

`enqueue_deliveries` / `enqueue_receipt_deliveries` run inside the transaction that stores a
notice (the receipts, results and forwarding modules call them), so a stored notice always has
its deliveries and their work items. `Deliveries` opens transactions of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, bindparam, delete, exists, literal, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import Event
from interchange.kinds import SLUG_REFUSAL, SLUG_RESULT, WORK_DELIVER_PREFIX, delivery_work

from .audit import append as audit_append
from .db import Database
from .rows import DOSSIER_COLUMNS, dossier_of, notice_kinds
from .tables import (
    UTCDateTime,
    deliveries,
    delivery_attempts,
    dossiers,
    notices,
    subscriptions,
    units,
    work_items,
)
from .types import ACTIVE, QUEUED, Dossier

PENDING, DELIVERED, FAILED, SKIPPED = "pending", "delivered", "failed", "skipped"
CALLBACK, EMAIL = "callback", "email"
# A delivery's route: the callback of a unit ("mst"), of an I-VAN ("ivan"), or the unit's e-mail.
ROUTE_MST, ROUTE_IVAN, ROUTE_EMAIL = "mst", "ivan", "email"
def delivery_id(dossier_id: str, notice_kind: str, route: str) -> str:
    """The delivery's id, also its X-Delivery-Id: the same for every attempt."""
    return f"{dossier_id}.{notice_kind}.{route}"


# Not a legal target: the time after which a delivery still waiting counts as overdue work
# (retries past it show up in /metrics). Deliveries are claimed by it too, after overdue results.
DELIVERY_TARGET = timedelta(minutes=15)
CALLBACK_SET = "callback.set"  # audit kinds: who registered or removed which callback URL
CALLBACK_DELETED = "callback.deleted"


@dataclass
class Subscription:
    owner: str  # "mst:<MST>" | "ivan:<MaIVAN>"
    url: str
    key_id: str
    created_at: datetime


@dataclass
class Attempt:
    n: int
    at: datetime
    status: int | None  # HTTP status; None when no answer came (or for e-mail)
    error: str | None  # None: delivered
    duration_ms: int


@dataclass
class Delivery:
    id: str
    dossier_id: str
    notice_kind: str
    channel: str
    recipient: str
    target: str
    state: str
    attempts: int
    next_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass
class Outgoing:
    """What one attempt sends: the delivery, the notice as stored and its dossier."""

    delivery: Delivery
    notice: bytes
    dossier: Dossier


# ---- made with the notice ------------------------------------------------------------------


def _routes(owner: str, unit_mst: str | None, kind: str) -> list[tuple[str, str]]:
    """(route, key) pairs a notice goes to: key is a subscription's owner for callbacks, the
    unit's MST for e-mail. A refused dossier goes to its sender only: the MST a TU_CHOI names
    was not proven by a valid signature."""
    out = []
    if owner.startswith(("mst:", "ivan:")):
        out.append((owner.split(":", 1)[0], owner))
    if unit_mst and kind != SLUG_REFUSAL and not owner.startswith("mst:"):
        out.append(("mst", f"mst:{unit_mst}"))  # an I-VAN's (or admin's) dossier: the unit's callback too
    if unit_mst and kind == SLUG_RESULT:
        out.append((ROUTE_EMAIL, unit_mst))
    return out


async def enqueue_deliveries(
    conn: AsyncConnection, *, dossier_id: str, owner: str, unit_mst: str | None, kind: str, now: datetime
) -> None:
    """In the transaction that stores notice `kind` of a dossier: a delivery and a work item
    for each subscription of its owner or unit and, for a KET_QUA, for the registered unit's
    e-mail. One statement when nobody subscribed."""
    await _enqueue(conn, [(dossier_id, kind, route, key, now) for route, key in _routes(owner, unit_mst, kind)])


async def enqueue_many_deliveries(
    conn: AsyncConnection, notices: Iterable[tuple[str, str, str | None, str, datetime]]
) -> None:
    """`enqueue_deliveries` for many notices (dossier id, owner, unit MST, kind, when): one
    statement for them all when nobody subscribed."""
    rows = []
    for dossier_id, owner, unit_mst, kind, now in notices:
        rows += [(dossier_id, kind, route, key, now) for route, key in _routes(owner, unit_mst, kind)]
    await _enqueue(conn, rows)


async def enqueue_receipt_deliveries(conn: AsyncConnection, stored: Iterable[Dossier]) -> None:
    """`enqueue_deliveries` for a batch of receipts (TIEP_NHAN or TU_CHOI, stored at
    received_at): one statement for the whole batch when nobody subscribed."""
    rows = []
    for d in stored:
        kind = d.notice_kinds[0]
        rows += [(d.id, kind, route, key, d.received_at) for route, key in _routes(d.owner, d.unit_mst, kind)]
    await _enqueue(conn, rows)


async def enqueue_notice_deliveries(conn: AsyncConnection, dossier_id: str, kind: str, now: datetime) -> None:
    """`enqueue_deliveries` for a dossier known by its id only (Store.add_notice)."""
    row = (await conn.execute(select(dossiers.c.owner, dossiers.c.unit_mst).where(dossiers.c.id == dossier_id))).first()
    if row is not None:
        await enqueue_deliveries(conn, dossier_id=dossier_id, owner=row.owner, unit_mst=row.unit_mst, kind=kind, now=now)


async def _enqueue(conn: AsyncConnection, rows: Sequence[tuple[str, str, str, str, datetime]]) -> None:
    if not rows or not await _anyone_to_tell(conn, rows):
        return
    # The notices in hand as a derived table, joined with the subscriptions and units in the
    # database: an INSERT ... SELECT that inserts nothing when nobody subscribed.
    parts = [
        select(
            literal(d, String).label("dossier_id"),
            literal(k, String).label("notice_kind"),
            literal(r, String).label("route"),
            literal(key, String).label("key"),
            literal(at, UTCDateTime()).label("at"),
        )
        for d, k, r, key, at in rows
    ]
    w = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("wanted")
    new_id = w.c.dossier_id + "." + w.c.notice_kind + "." + w.c.route
    common = (literal(PENDING, String), literal(0, Integer), w.c.at, w.c.at)
    callbacks = (
        select(new_id, w.c.dossier_id, w.c.notice_kind, literal(CALLBACK, String), subscriptions.c.owner,
               subscriptions.c.url, *common)
        .select_from(w.join(subscriptions, subscriptions.c.owner == w.c.key))
        .where(w.c.route != ROUTE_EMAIL)
    )  # fmt: skip
    mails = (
        select(new_id, w.c.dossier_id, w.c.notice_kind, literal(EMAIL, String), "mst:" + units.c.mst,
               units.c.email, *common)
        .select_from(w.join(units, units.c.mst == w.c.key))
        .where(
            w.c.route == ROUTE_EMAIL,
            units.c.email.is_not(None),
            units.c.email != "",
            # registered and active, or this is the result of the unit's own registration dossier
            # (so that a unit also hears that its stop was accepted)
            or_(units.c.state == ACTIVE, units.c.dossier_id == w.c.dossier_id),
        )
    )
    columns = ["id", "dossier_id", "notice_kind", "channel", "recipient", "target", "state", "attempts",
               "next_at", "created_at"]  # fmt: skip
    made = (
        await conn.execute(
            deliveries.insert()
            .from_select(columns, union_all(callbacks, mails) if any(r[2] == ROUTE_EMAIL for r in rows) else callbacks)
            .returning(deliveries.c.id, deliveries.c.dossier_id, deliveries.c.notice_kind, deliveries.c.created_at)
        )
    ).all()
    if made:
        await conn.execute(
            work_items.insert(),
            [
                {
                    "id": uuid.uuid4().hex,
                    "dossier_id": m.dossier_id,
                    "kind": delivery_work(m.notice_kind, m.id.rsplit(".", 1)[1]),
                    # a delivery still waiting after DELIVERY_TARGET shows in the overdue gauges of its kind
                    "due_at": m.created_at + DELIVERY_TARGET,
                    "not_before": m.created_at,
                    "state": QUEUED,
                    "attempts": 0,
                    "created_at": m.created_at,
                }
                for m in made
            ],
        )


async def _anyone_to_tell(conn: AsyncConnection, rows: Sequence[tuple[str, str, str, str, datetime]]) -> bool:
    """Whether a subscription or a unit's e-mail matches: the usual answer is no, and this small
    statement built once costs much less than building the INSERT ... SELECT."""
    callbacks = {key for _, _, route, key, _ in rows if route != ROUTE_EMAIL}
    mails = {key for _, _, route, key, _ in rows if route == ROUTE_EMAIL}
    if not callbacks and not mails:
        return False
    return bool((await conn.execute(_ANYONE, {"owners": list(callbacks), "msts": list(mails)})).scalar())


# `_anyone_to_tell`'s statement, built once (store/db.py); an empty list matches nothing
_ANYONE = select(or_(
    exists().where(subscriptions.c.owner.in_(bindparam("owners", expanding=True))),
    exists().where(units.c.mst.in_(bindparam("msts", expanding=True)), units.c.email.is_not(None), units.c.email != ""),
))  # fmt: skip


def delivery_id_of(dossier_id: str, kind: str) -> str:
    """The delivery a work item of `kind` serves."""
    return delivery_id(dossier_id, *kind.removeprefix(WORK_DELIVER_PREFIX).split(":", 1))


# ---- subscriptions and attempts ------------------------------------------------------------


def _subscription(row) -> Subscription:
    return Subscription(row.owner, row.url, row.key_id, row.created_at)


def _delivery(row) -> Delivery:
    return Delivery(**{c.name: getattr(row, c.name) for c in deliveries.c})


class Deliveries:
    def __init__(self, db: Database):
        self._db = db

    async def subscription(self, owner: str) -> Subscription | None:
        async with self._db.reading() as conn:
            row = (await conn.execute(select(subscriptions).where(subscriptions.c.owner == owner))).first()
        return None if row is None else _subscription(row)

    async def subscribe(self, owner: str, url: str, key_id: str, now: datetime) -> tuple[Subscription, bool]:
        """Register (or replace) the owner's callback URL; True when there was none. Notices stored
        from the commit on go to it."""
        sub = Subscription(owner, url, key_id, now)
        async with self._db.writing() as conn:
            found = (
                await conn.execute(select(subscriptions.c.url).where(subscriptions.c.owner == owner).with_for_update())
            ).first()
            row = {"owner": owner, "url": url, "key_id": key_id, "created_at": now}
            if found is None:
                await conn.execute(subscriptions.insert(), row)
            else:
                await conn.execute(update(subscriptions).where(subscriptions.c.owner == owner).values(**row))
            # Waiting retries go to the new URL: a corrected URL is what the owner wants used.
            moved = await conn.execute(
                update(deliveries)
                .where(deliveries.c.recipient == owner, deliveries.c.state == PENDING, deliveries.c.channel == CALLBACK)
                .values(target=url)
            )
            data = {"owner": owner, "url": url, "previous_url": None if found is None else found.url,
                    "pending_moved": moved.rowcount}  # fmt: skip
            await audit_append(conn, [Event(CALLBACK_SET, f"key:{key_id}", data)])
        return sub, found is None

    async def unsubscribe(self, owner: str, key_id: str) -> bool:
        """Remove the owner's callback URL; False when there was none. Its waiting retries are
        skipped (delivered ones stay as they are)."""
        async with self._db.writing() as conn:
            gone = await conn.execute(delete(subscriptions).where(subscriptions.c.owner == owner))
            if gone.rowcount:
                skipped = await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.recipient == owner, deliveries.c.state == PENDING,
                           deliveries.c.channel == CALLBACK)
                    .values(state=SKIPPED, next_at=None, last_error="the callback URL was removed")
                )
                data = {"owner": owner, "pending_skipped": skipped.rowcount}
                await audit_append(conn, [Event(CALLBACK_DELETED, f"key:{key_id}", data)])
        return bool(gone.rowcount)

    async def outgoing(self, delivery_id: str) -> Outgoing | None:
        """A delivery with its notice and dossier, for an attempt."""
        async with self._db.reading() as conn:
            row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()
            if row is None:
                return None
            delivery = _delivery(row)
            xml = (
                await conn.execute(
                    select(notices.c.xml).where(
                        notices.c.dossier_id == delivery.dossier_id, notices.c.kind == delivery.notice_kind
                    )
                )
            ).scalar_one()
            found = (
                await conn.execute(select(*DOSSIER_COLUMNS).where(dossiers.c.id == delivery.dossier_id))
            ).first()
            if found is None:
                return None
            kinds = await notice_kinds(conn, [found.id])
        return Outgoing(delivery, xml, dossier_of(found, kinds.get(found.id, [])))

    async def record_attempt(
        self, delivery: Delivery, attempt: Attempt, *, state: str, next_at: datetime | None
    ) -> bool:
        """Record attempt n = delivery.attempts + 1 and the delivery's new state together. False
        when another run recorded that attempt first (its lease ran out meanwhile): that run's
        record stands."""
        values = {
            "state": state,
            "attempts": attempt.n,
            "next_at": next_at,
            "last_error": attempt.error,
            "delivered_at": attempt.at if attempt.error is None else None,
        }
        async with self._db.writing() as conn:
            changed = await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery.id,
                    deliveries.c.state == PENDING,
                    deliveries.c.attempts == attempt.n - 1,
                )
                .values(**values)
            )
            if changed.rowcount != 1:
                return False
            await conn.execute(delivery_attempts.insert(), {"delivery_id": delivery.id, **vars(attempt)})
        return True

    async def set_state(self, delivery_id: str, *, state: str, next_at: datetime | None, why: str) -> None:
        """Change a pending delivery without an attempt: deferred (circuit open), given up, skipped."""
        async with self._db.writing() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.state == PENDING)
                .values(state=state, next_at=next_at, last_error=why[:2000])
            )

    async def of(self, dossier_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A dossier's deliveries (in the order they were made) with every attempt."""
        async with self._db.reading() as conn:
            rows = (
                await conn.execute(
                    select(deliveries)
                    .where(deliveries.c.dossier_id == dossier_id)
                    .order_by(deliveries.c.created_at, deliveries.c.id)
                )
            ).all()
            tries = (
                await conn.execute(
                    select(delivery_attempts)
                    .join(deliveries, deliveries.c.id == delivery_attempts.c.delivery_id)
                    .where(deliveries.c.dossier_id == dossier_id)
                    .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.n)
                )
            ).all()
        by_delivery: dict[str, list[Attempt]] = {}
        for t in tries:
            by_delivery.setdefault(t.delivery_id, []).append(Attempt(t.n, t.at, t.status, t.error, t.duration_ms))
        return [(d, by_delivery.get(d.id, [])) for d in map(_delivery, rows)]
