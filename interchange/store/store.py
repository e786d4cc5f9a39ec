"""The store: one handle on the database and a module per concern.

    store.db           the seam: engine, writing/reading transactions, migrations (db.py)
    store.receipts     the group-commit writer of receipts, replays, idempotency (receipts.py)
    store.dossiers     reading dossiers, notices, originals; later notices; evidence (dossiers.py)
    store.results      a received dossier's KET_QUA, state, unit and records at once (results.py)
    store.work         the work queue (work.py)
    store.keys         API keys (keys.py)
    store.units        units registered for e-transactions (units.py)
    store.persons      persons and what their e-SI book is made of (persons.py)
    store.deliveries   callbacks and e-mail deliveries with their attempts (deliveries.py)
    store.forwarding   the I-VAN role's forwarding rows (forwarding.py)
    store.audit        the hash-chained audit log (audit.py)
    store.cards        what an e-HI card is made of; the log of card lookups (cards.py)

Every write that matters to an auditor appends its audit entry in its own transaction.
"""

from __future__ import annotations

from .audit import AuditLog
from .cards import Cards
from .db import Database
from .deliveries import Deliveries
from .dossiers import Dossiers
from .forwarding import Forwardings
from .keys import Keys
from .persons import Persons
from .receipts import Receipts
from .results import Results
from .units import Units
from .work import WorkQueue


class Store:
    def __init__(self, db: Database):
        self.db = db
        self.receipts = Receipts(db)
        self.dossiers = Dossiers(db)
        self.results = Results(db)
        self.work = WorkQueue(db)
        self.keys = Keys(db)
        self.units = Units(db)
        self.persons = Persons(db)
        self.deliveries = Deliveries(db)
        self.forwarding = Forwardings(db)
        self.audit = AuditLog(db)
        self.cards = Cards(db)

    @classmethod
    async def open(cls, url: str, *, connect_args: dict | None = None) -> Store:
        """Connect, migrate to head and start the receipt writer (in the running event loop)."""
        store = cls(await Database.open(url, connect_args=connect_args))
        store.receipts.start()
        return store

    async def close(self) -> None:
        """Finish the receipts and card lookups already queued, then release the connections."""
        await self.cards.close()
        await self.receipts.close()
        await self.db.dispose()

    async def ping(self, timeout: float = 3.0) -> bool:
        return await self.db.ping(timeout)
