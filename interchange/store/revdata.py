"""Revocation data kept once (`revocation_data`): the CRLs and OCSP responses that the
signatures of dossiers rest on, named in each dossier's signers by SHA-256 (`crl_sha256`,
`ocsp_sha256`) instead of being copied into it. A licensed CA's CRL runs to megabytes and the
same one serves every dossier its certificates sign until the next is issued: copied, it made
each dossier 8 MB and the server 90 times slower (bench/receipts.py --crl-entries 100000).

The receipt writer inserts what a batch's dossiers name and the table lacks, in the batch's
transaction; `StoredNames` remembers what is committed, so that the workers need not send it
again (interchange.workers._receive)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from interchange.trust.revocation import referenced_data

from .tables import revocation_data
from .types import NewDossier

SENT_BACK = 32  # names given to the workers: the CRLs in use at a time (one per CA, two around an update)


class RevocationDataMissing(RuntimeError):
    """A dossier names revocation data that neither it brings nor the store holds: never stored
    so (its evidence would be incomplete)."""


class StoredNames:
    """The SHA-256 names of revocation data committed by this process, the latest first."""

    def __init__(self) -> None:
        self._names: dict[str, None] = {}
        self._recent: frozenset[str] = frozenset()

    def recent(self) -> frozenset[str]:
        """The latest `SENT_BACK` names: what a worker may leave out of its outcome."""
        return self._recent

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def add(self, names: Iterable[str]) -> None:
        fresh = [n for n in names if n not in self._names]
        if not fresh:
            return
        for name in fresh:
            self._names[name] = None
        while len(self._names) > 4 * SENT_BACK:  # a bound: those forgotten are looked up again
            del self._names[next(iter(self._names))]
        self._recent = frozenset(list(self._names)[-SENT_BACK:])


async def insert_revocation_data(conn: AsyncConnection, insert, news: Sequence[NewDossier], known: StoredNames,
                                 now: datetime) -> None:
    """Insert the revocation data these dossiers bring that the store lacks, in the caller's
    transaction (`insert`: the dialect's, whose ON CONFLICT lets two processes bring the same
    CRL at once); every name they use must be brought or held."""
    used: set[str] = set()
    brought: dict[str, tuple[str, bytes]] = {}
    for new in news:
        used |= referenced_data(new.signers)
        brought.update(new.revocation_data)
    unsure = sorted(n for n in used | brought.keys() if n not in known)
    if not unsure:
        return
    held = set((await conn.execute(select(revocation_data.c.sha256).where(revocation_data.c.sha256.in_(unsure)))).scalars())
    missing = sorted(n for n in unsure if n not in held and n not in brought)
    if missing:
        raise RevocationDataMissing(f"revocation data named but neither brought nor stored: {', '.join(missing)}")
    rows = [{"sha256": n, "kind": brought[n][0], "der": brought[n][1], "stored_at": now}
            for n in unsure if n not in held]
    if rows:
        await conn.execute(insert(revocation_data).on_conflict_do_nothing(index_elements=[revocation_data.c.sha256]), rows)


async def read_revocation_data(conn: AsyncConnection, names: Iterable[str]) -> dict[str, bytes]:
    """{sha256 hex: DER} of those of `names` the store holds."""
    names = sorted(set(names))
    if not names:
        return {}
    query = select(revocation_data.c.sha256, revocation_data.c.der).where(revocation_data.c.sha256.in_(names))
    return dict((await conn.execute(query)).all())
