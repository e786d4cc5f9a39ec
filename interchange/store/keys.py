"""API keys: made, checked (with a short cache), revoked and rotated; each event audited.

A token is `ik_<key_id>_<secret>`; only the SHA-256 of the secret is stored.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.audit.chain import KEY_CREATED, KEY_REVOKED, KEY_ROTATED, Event
from interchange.identifiers import mst_valid

from .audit import append as audit_append
from .audit import operator
from .db import Database
from .rows import api_key_of
from .tables import api_keys
from .types import FACILITY, ROLES, ApiKey

KEY_CACHE_SECONDS = 2.0  # a revocation reaches every process within this time
KEY_REFRESH_AHEAD = 0.5  # seconds before a cached key expires when a request has it read again
_TOKEN = re.compile(r"ik_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_FACILITY_CODE = re.compile(r"[0-9A-Z]{5}")


class Keys:
    def __init__(self, db: Database):
        self._db = db
        self._cache: dict[str, tuple[float, ApiKey, bytes]] = {}
        self._reading: dict[str, asyncio.Future] = {}

    async def create(
        self,
        role: str,
        *,
        mst: str | None = None,
        ivan: str | None = None,
        facility: str | None = None,
        label: str = "",
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token `ik_<key_id>_<secret>`; the token is shown once, never stored.
        `actor` (who asked, for the audit log) defaults to the user running this process."""
        _check_role(role, mst, ivan, facility)
        async with self._db.writing() as conn:
            key, token = await _insert_key(conn, role, mst, ivan, label, facility)
            await audit_append(
                conn, [Event(KEY_CREATED, actor or operator(), _key_data(key))]
            )
        return key, token

    async def authenticate(self, token: str) -> ApiKey | None:
        """The key a bearer token stands for; None for a malformed, unknown, wrong or revoked one."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            return None
        key_id, secret = match.groups()
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            cached = await asyncio.shield(self._reading_of(key_id))  # one caller going away cancels no one's read
            if cached is None:  # the key id is not secret: answering this one faster leaks nothing
                return None
        elif cached[0] - now < KEY_REFRESH_AHEAD:
            self._reading_of(key_id)  # read again in the background: no request waits for a key in use
        _, key, digest = cached
        if not hmac.compare_digest(digest, _secret_digest(secret)) or key.revoked_at is not None:
            return None
        return key

    def _reading_of(self, key_id: str) -> asyncio.Future:
        """The read of a key's row under way, else a new one: one read for every request that needs
        it (when each request in flight did its own, all of them waited ~15 ms every 2 s)."""
        reading = self._reading.get(key_id)
        if reading is None:
            reading = self._reading[key_id] = asyncio.ensure_future(self._read(key_id))
            reading.add_done_callback(functools.partial(self._read_done, key_id))
        return reading

    def _read_done(self, key_id: str, reading: asyncio.Future) -> None:
        if self._reading.get(key_id) is reading:
            del self._reading[key_id]
        if not reading.cancelled():
            reading.exception()  # a background read that failed: the next request reads again, and fails itself

    async def _read(self, key_id: str) -> tuple[float, ApiKey, bytes] | None:
        now = time.monotonic()
        async with self._db.reading() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        if row is None:
            return None
        cached = (now + KEY_CACHE_SECONDS, api_key_of(row), row.secret_sha256)
        if self._reading.get(key_id) is asyncio.current_task():  # not forgotten (revoked) meanwhile
            self._cache[key_id] = cached
        return cached

    def _forget(self, key_id: str) -> None:
        """Revoked or rotated here: the next request reads the key again, even if a read began before."""
        self._cache.pop(key_id, None)
        self._reading.pop(key_id, None)

    async def revoke(self, key_id: str, *, actor: str | None = None) -> bool:
        """Revoke a key (a second revocation keeps the first time). False when there is no such key."""
        self._forget(key_id)
        async with self._db.writing() as conn:
            revoked = await conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if revoked.rowcount:
                await audit_append(
                    conn, [Event(KEY_REVOKED, actor or operator(), {"key_id": key_id})]
                )
            found = (
                await conn.execute(select(api_keys.c.key_id).where(api_keys.c.key_id == key_id))
            ).first()
        self._forget(key_id)  # and once committed: a read begun meanwhile saw the key before
        return found is not None

    async def rotate(self, key_id: str, *, actor: str | None = None) -> tuple[ApiKey, str] | None:
        """Replace an active key by a new one with the same role, binding and label, and revoke
        the old one, in one transaction. None when there is no such active key."""
        self._forget(key_id)
        async with self._db.writing() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return None
            key, token = await _insert_key(conn, row.role, row.mst, row.ivan, row.label, row.facility)
            await conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=key.created_at)
            )
            rotated = Event(
                KEY_ROTATED, actor or operator(), {"revoked": key_id, **_key_data(key)}
            )
            await audit_append(conn, [rotated])
        self._forget(key_id)  # and once committed: a read begun meanwhile saw the key before
        return key, token

    async def list_all(self) -> list[ApiKey]:
        async with self._db.reading() as conn:
            rows = (
                await conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
            ).all()
        return [api_key_of(r) for r in rows]


def _check_role(role: str, mst: str | None, ivan: str | None, facility: str | None = None) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == FACILITY and (not facility or mst or ivan):
        raise ValueError("a facility key is bound to one facility code (and no MST or MaIVAN)")
    if role != FACILITY and facility:
        raise ValueError(f"a {role} key is bound to no facility code")
    if facility and not _FACILITY_CODE.fullmatch(facility):
        raise ValueError(f"{facility!r} is not a facility code (MaBenhVien): 5 letters or digits, e.g. 01001")
    if role == "submitter" and (not mst or ivan):
        raise ValueError("a submitter key is bound to one MST (and no MaIVAN)")
    if role == "ivan" and (not ivan or mst):
        raise ValueError("an ivan key is bound to one MaIVAN (and no MST)")
    if role in ("auditor", "admin") and (mst or ivan):
        raise ValueError(f"an {role} key is bound to no MST or MaIVAN")
    if mst and not mst_valid(mst):
        raise ValueError(f"{mst!r} is not a tax code: 10 digits whose last is the check digit, optionally -NNN")
    if ivan and not re.fullmatch(r"[0-9]{5}", ivan):
        raise ValueError(f"{ivan!r} is not a MaIVAN: 5 digits")


def _key_data(key: ApiKey) -> dict:
    data = {"key_id": key.key_id, "role": key.role, "mst": key.mst, "ivan": key.ivan, "label": key.label}
    return {**data, "facility": key.facility} if key.facility else data


async def _insert_key(
    conn: AsyncConnection, role: str, mst: str | None, ivan: str | None, label: str, facility: str | None = None
) -> tuple[ApiKey, str]:
    """Insert a new key; return it and its token `ik_<key_id>_<secret>` (the secret is not stored)."""
    key = ApiKey(
        key_id=secrets.token_hex(6), role=role, mst=mst, ivan=ivan, label=label,
        created_at=datetime.now(UTC), revoked_at=None, facility=facility,
    )
    secret = secrets.token_urlsafe(32)
    row = {c: getattr(key, c) for c in ("key_id", "role", "mst", "ivan", "facility", "label", "created_at")}
    await conn.execute(api_keys.insert(), {**row, "secret_sha256": _secret_digest(secret)})
    return key, f"ik_{key.key_id}_{secret}"


def _secret_digest(secret: str) -> bytes:
    # The secret is 256 random bits, not a password: no one can guess it from its hash, so a
    # slow password hash (bcrypt, scrypt) would only add cost to every request.
    return hashlib.sha256(secret.encode("ascii")).digest()
