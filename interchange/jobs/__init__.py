"""The work engine and the result handlers: the work after receipt, as rows of a queue in the database (`work_items`).

A dossier's work items are stored in its receipt's transaction. Every server process runs
its own work loop (paced by the monotonic clock) that claims due items from the
database (`Store.work.claim`: SKIP LOCKED on PostgreSQL, the single writer on SQLite) under a
lease, and runs them. Handlers are idempotent: an item run twice (its process died after the
work and before marking it done, or its lease ran out) has the outcome of running it once.
"""
