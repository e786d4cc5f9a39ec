"""The work loop in every server process: every `interval_seconds` it starts a round of due
work (`WorkRunner.tick`) unless one is running.

What is due lives in the database, where `Store.work.claim` hands each item to one process; the
schedule here is only "look for due work every few seconds". It is paced by the event loop's
monotonic clock, not the wall clock: APScheduler (used before) computed its next run in wall
time, so a clock stepped back by an hour stopped the work for an hour. A failed round (the
database away) is logged by the runner and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .runner import WorkRunner

log = logging.getLogger(__name__)


class WorkScheduler:
    def __init__(self, runner: WorkRunner, interval_seconds: float):
        self.runner = runner
        self.interval_seconds = interval_seconds
        self._task: asyncio.Task | None = None
        self.ticks = 0

    def start(self) -> None:
        """Start now (inside the running event loop); the first look is immediate."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="work-scheduler")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.runner.tick()
            except Exception:  # tick only starts a round; never let the loop die
                log.exception("work: starting a round failed; trying again at the next tick")
            self.ticks += 1
            next_at = max(next_at + self.interval_seconds, loop.time())  # coalesce missed ticks
            await asyncio.sleep(next_at - loop.time())

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.runner.stop()  # first: a tick meanwhile returns at once
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
