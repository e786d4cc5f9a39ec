"""The `ivan` role (SPEC §1, §8): forward the exact bytes of every received dossier to the
upstream agency server within the target, with retries, backoff and a circuit breaker, every
try a row; keep the upstream's signed receipt and, polled later, its KET_QUA.

Two work kinds (rows of the work queue, interchange.jobs): FORWARD, enqueued in the receipt's
transaction and due at the forwarding target; RELAY, enqueued with the upstream's receipt and
due at its HanTraKetQua. This module holds only names, so that interchange.jobs can import it.
"""

from __future__ import annotations

from datetime import timedelta

FORWARD = "forward"  # work kind: send the original bytes upstream
RELAY = "relay"  # work kind: poll the upstream for its KET_QUA and keep it as the dossier's result

# Forwarding states (forwardings.state).
PENDING = "pending"  # not yet received upstream (tries go on)
FORWARDED = "forwarded"  # the upstream gave its TIEP_NHAN
REFUSED_UPSTREAM = "refused_upstream"  # the upstream gave a TU_CHOI (kept as bhxh-tu-choi)
FAILED = "failed"  # the upstream refused the request itself (401, 403, 409, 413 ...): no retry helps
STATES = (PENDING, FORWARDED, REFUSED_UPSTREAM, FAILED)

LEGAL_CEILING = timedelta(hours=2)  # SPEC §8: forwarding within 2 hours at most (the target is config)

__all__ = ["FAILED", "FORWARD", "FORWARDED", "LEGAL_CEILING", "PENDING", "REFUSED_UPSTREAM", "RELAY", "STATES"]
