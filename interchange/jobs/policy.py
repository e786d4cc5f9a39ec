"""When to try again: backoff, Retry-After, and a circuit breaker (the work queue's retries,
result deliveries to callback hosts, forwarding upstream).

Breakers are per process and in memory: each server process judges a peer by its own tries.
Times come from the caller (`now`), so tests drive them with a controllable clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
BREAKER_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the gauge's values
DEFERRED_WHILE_PROBING = timedelta(seconds=60)  # items that meet a probe in flight come back after this


def backoff(tries: int, first: timedelta, cap: timedelta) -> timedelta:
    """The wait after the `tries`-th failed try: `first`, doubling with each further try, at most `cap`."""
    if tries < 1:
        raise ValueError(f"tries counts from 1, not {tries}")
    return min(first * 2 ** min(tries - 1, 32), cap)  # the exponent is bounded: 2**32 * first is past any cap


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds, or an HTTP date) as a wait from `now`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


class CircuitBreaker:
    """Closed: every try goes. After `failures` consecutive failures (or a Retry-After pause) it
    opens: nothing goes until the cool-down ends. Then half-open: one probe goes; its success
    closes the breaker, its failure opens it again. A probe that never reports (its process
    hung) is replaced by another after a cool-down."""

    def __init__(self, failures: int, cooldown: timedelta, *, on_change: Callable[[str], None] | None = None):
        if failures < 1:
            raise ValueError("the breaker needs at least one failure to open")
        self.failures = failures
        self.cooldown = cooldown
        self.on_change = on_change
        self.state = CLOSED
        self.consecutive = 0  # failures in a row
        self.open_until: datetime | None = None
        self._probe_since: datetime | None = None

    def allow(self, now: datetime) -> bool:
        """May a try go now? In half-open state the first caller becomes the probe."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.open_until is not None and now < self.open_until:
                return False
            self._set(HALF_OPEN)
            self._probe_since = now
            return True
        if self._probe_since is not None and now - self._probe_since < self.cooldown:
            return False  # one probe at a time
        self._probe_since = now
        return True

    def retry_at(self, now: datetime) -> datetime:
        """When an item refused by `allow` should come back."""
        if self.state == OPEN and self.open_until is not None and self.open_until > now:
            return self.open_until
        return now + min(DEFERRED_WHILE_PROBING, self.cooldown)

    def success(self) -> None:
        self.consecutive = 0
        self.open_until = None
        self._probe_since = None
        self._set(CLOSED)

    def failure(self, now: datetime, *, pause: timedelta | None = None) -> None:
        """A try failed (network, timeout, 5xx, 429). `pause`: the upstream asked for one (Retry-After)."""
        self.consecutive += 1
        until = self.open_until if self.state == OPEN else None
        if self.state == HALF_OPEN or self.consecutive >= self.failures:
            until = max(until or now, now + self.cooldown)
        if pause is not None and pause > timedelta(0):
            until = max(until or now, now + pause)
        self._probe_since = None
        if until is not None:
            self.open_until = until
            self._set(OPEN)

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(state)
