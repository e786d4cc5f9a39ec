"""The work after receipt, as rows of a queue in the database (`work_items`).

A dossier's work items are stored in its receipt's transaction. Every server process runs
its own APScheduler (memory job store, never shared) whose one job claims due items from the
database (`Store.claim_work`: SKIP LOCKED on PostgreSQL, the single writer on SQLite) under a
lease, and runs them. Handlers are idempotent: an item run twice (its process died after the
work and before marking it done, or its lease ran out) has the outcome of running it once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from interchange.forwarding import FORWARD

from .registration import REGISTRATION, REGISTRATION_PROCEDURES
from .result import RESULT


def work_for(
    procedure: str | None, role: str = "agency", *, received_at: datetime | None = None,
    forward_within: timedelta | None = None,
) -> list[str | tuple[str, datetime]]:
    """The work a received dossier of `procedure` brings, in server role `role`. In role ivan
    that is forwarding upstream, due at received_at + forward_within (clock time: I-VANs run
    24/7), and nothing else: the agency upstream checks, records and decides."""
    if role == "ivan":
        if received_at is None or forward_within is None:
            raise ValueError("work_for: role ivan needs received_at and forward_within (the forwarding target)")
        return [(FORWARD, received_at + forward_within)]
    # registration dossiers have their own checks; every other procedure is judged by the rule layer
    return [REGISTRATION] if procedure in REGISTRATION_PROCEDURES else [RESULT]


__all__ = ["REGISTRATION", "REGISTRATION_PROCEDURES", "RESULT", "work_for"]
