"""Which process is which across restarts: a work slot, held by one live process at a time.

A process that claims work takes the lowest free slot of its instance (`[jobs] instance`, by
default the host name) and writes its claims as `<instance>#<slot>/<boot>`. The slot is a lock
that dies with its holder, so the process that next takes a slot knows the one before it is
gone, and may release at once what that one held (`WorkQueue.release_earlier`), instead of
waiting for its leases to run out:

- PostgreSQL: a session advisory lock, held on a connection of its own. A killed process's
  connection is closed by its kernel, and the server ends its session and locks then.
- SQLite (one host, one file): an flock(2) on a lock file beside the database, released by the
  kernel when the process ends, however it ends.

Several processes of one instance (`serve --processes N`, or two servers on one host) take
slots 0, 1, 2 ...: no live process is ever mistaken for a dead one. A restarted process gets the
lowest free slot, which is its predecessor's when that one alone died; otherwise the leases
(short, renewed by a heartbeat) bring the work back all the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database

MAX_SLOTS = 256


def _lock_key(scope: str, instance: str, slot: int) -> int:
    """A signed 64-bit advisory lock key for (database scope, instance, slot)."""
    digest = hashlib.sha256(f"interchange-work-slot\0{scope}\0{instance}\0{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Slot:
    """A held work slot; `close` frees it (a process that ends frees it anyway)."""

    instance: str
    number: int | None  # None: an in-memory database, private to this process (nothing to release)
    _conn: AsyncConnection | None = field(default=None, repr=False)
    _fd: int | None = field(default=None, repr=False)
    _key: int | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.instance}#{self.number if self.number is not None else 'memory'}"

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the flock goes with the descriptor
            self._fd = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # a broken connection has lost its locks already
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                await conn.commit()
            with contextlib.suppress(Exception):
                await conn.close()


async def take_slot(db: Database, instance: str) -> Slot:
    """The lowest free slot of `instance` (RuntimeError when all MAX_SLOTS are taken)."""
    if db.postgres:
        return await _pg_slot(db, instance)
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return Slot(instance, None)
    return _file_slot(Path(database).expanduser(), instance)


async def _pg_slot(db: Database, instance: str) -> Slot:
    conn = await db.engine.connect()
    try:
        # advisory locks are the database's, not the schema's: the key names the schema too
        scope = (await conn.execute(text("SELECT current_database() || '.' || current_schema()"))).scalar()
        for n in range(MAX_SLOTS):
            key = _lock_key(str(scope), instance, n)
            if (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar():
                await conn.commit()  # the lock is the session's; no transaction is left open
                return Slot(instance, n, _conn=conn, _key=key)
        await conn.commit()
    except BaseException:
        await conn.close()
        raise
    await conn.close()
    raise RuntimeError(f"work: all {MAX_SLOTS} work slots of instance {instance!r} are held by live processes")


def _file_slot(database: Path, instance: str) -> Slot:
    tag = hashlib.sha256(instance.encode()).hexdigest()[:12]
    for n in range(MAX_SLOTS):
        path = database.with_name(f"{database.name}.work-{tag}-{n}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        return Slot(instance, n, _fd=fd)
    raise RuntimeError(f"work: all {MAX_SLOTS} work slots of instance {instance!r} are held by live processes")
