"""APScheduler in every server process: one interval job that claims and runs due work.

The job store is in memory and never shared (APScheduler 3 cannot share one between
processes): the schedule is only "look for due work every few seconds", and what is due
lives in the database, where `Store.work.claim` hands each item to one process.
"""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from interchange.clock import utc_now

from .runner import WorkRunner


class WorkScheduler:
    def __init__(self, runner: WorkRunner, interval_seconds: float):
        self.runner = runner
        self.interval_seconds = interval_seconds
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        """Start now (inside the running event loop); the first look is immediate."""
        # APScheduler logs every run at INFO: one line per process every few seconds says nothing.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            timezone=UTC,
        )
        scheduler.add_job(
            self.runner.tick,
            IntervalTrigger(seconds=self.interval_seconds, timezone=UTC),
            id="work",
            name="claim and run due work",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=utc_now(),
        )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        if self._scheduler is None:
            return
        await self.runner.stop()  # first: a tick the scheduler starts meanwhile returns at once
        self._scheduler.shutdown(wait=False)
        self._scheduler = None
