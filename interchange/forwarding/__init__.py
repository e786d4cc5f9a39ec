"""The `ivan` role (SPEC §1, §8): forward the exact bytes of every received dossier to the
upstream agency server within the target, with retries, backoff and a circuit breaker, every
try a row; keep the upstream's signed receipt and, polled later, its KET_QUA.

Two work kinds (interchange.kinds): WORK_FORWARD, enqueued in the receipt's
transaction and due at the forwarding target; WORK_RELAY, enqueued with the upstream's receipt and
due at its HanTraKetQua. The rows and their states are `interchange.store.forwarding`.
"""

from __future__ import annotations

from datetime import timedelta

LEGAL_CEILING = timedelta(hours=2)  # SPEC §8: forwarding within 2 hours at most (the target is config)

__all__ = ["LEGAL_CEILING"]
