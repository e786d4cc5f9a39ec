"""Stage hooks for the worker processes (`WorkerSettings.before_stage`), importable by a spawned
worker: not a test module."""

from __future__ import annotations

import re
import time

SLEEP = re.compile(rb"SLEEP:([0-9.]+)")


def sleep_if_asked(stage: str, data: object) -> None:
    """A stage whose input carries `SLEEP:<seconds>` in its first bytes (a comment in a dossier)
    sleeps that long first: a slow stage without a pathological body."""
    if isinstance(data, bytes) and (m := SLEEP.search(data[:400])):
        time.sleep(float(m.group(1)))
