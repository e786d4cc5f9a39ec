"""The work after receipt, as rows of a queue in the database (`work_items`).

A dossier's work items are stored in its receipt's transaction. Every server process runs
its own APScheduler (memory job store, never shared) whose one job claims due items from the
database (`Store.claim_work`: SKIP LOCKED on PostgreSQL, the single writer on SQLite) under a
lease, and runs them. Handlers are idempotent: an item run twice (its process died after the
work and before marking it done, or its lease ran out) has the outcome of running it once.
"""

from __future__ import annotations

from .registration import REGISTRATION, REGISTRATION_PROCEDURES


def work_for(procedure: str | None) -> list[str]:
    """The kinds of work a received dossier of `procedure` brings."""
    return [REGISTRATION] if procedure in REGISTRATION_PROCEDURES else []


__all__ = ["REGISTRATION", "REGISTRATION_PROCEDURES", "work_for"]
