"""`interchange serve --processes N`: N HTTP server processes on one port, one supervisor.

The composition root (`server.serve`) checks what it can once and hands this module the
function each child runs; this module knows nothing of the server but that function.

Each child is a whole server (`server.serve_one`): its own event loop, HTTP listener, worker pool
(`[server] workers` worker processes *per HTTP process*), work scheduler, rate limiter and
caches. The children listen on the same host and port with SO_REUSEPORT, so the kernel spreads
incoming connections over them (by connection, not by request: a keep-alive connection stays
with its process). They share nothing but the database: each claims due work with
`FOR UPDATE SKIP LOCKED` (store/work.py), so no two processes run the same item, and a process
that dies leaves its claimed work to be taken up by the others when its lease runs out.

Several processes need PostgreSQL. With SQLite `server.serve` refuses to start them: SQLite has one
writer at a time for the whole file, and writers of different processes can only wait for it
through SQLite's busy handler, which sleeps and polls (store/db.py serialises the writers of
one process with a lock for exactly that reason: left to the busy handler, results fell to
26/s and the receipts' p99 rose to 1.5 s). One process with its worker pool already uses the
cores for the CPU-bound stages; several would only contend for the one write lock.

The parent does no HTTP. Once `server.serve` has checked the configuration, the notice key and
the database (migrating it to head once), the supervisor starts the children and watches them:

- a child that dies (crash, SIGKILL, OOM killer) is started again after a pause that doubles
  with each death in a row (1 s up to 30 s);
- more than `MAX_DEATHS` deaths within `DEATH_WINDOW` seconds (a crash loop: a bad
  configuration, a database gone) stops everything and exits 1;
- SIGTERM or SIGINT to the parent is forwarded as one SIGTERM to each child, which shuts down
  cleanly (answers in flight finished, the card lookup log flushed, the worker pool stopped);
  children still running after `STOP_SECONDS` are killed; the parent exits 0 when every child
  ended cleanly, 1 otherwise.

The children run in process groups of their own, so that a terminal's Ctrl-C reaches them once
(through the parent) and not twice (a second signal would interrupt their clean shutdown). A
child whose parent disappears (kill -9 of the supervisor) shuts itself down cleanly.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait

log = logging.getLogger("interchange.processes")

MAX_DEATHS = 5  # deaths of children within DEATH_WINDOW seconds that end the supervisor (exit 1)
DEATH_WINDOW = 60.0
FIRST_PAUSE, MAX_PAUSE = 1.0, 30.0  # before starting a dead child again, doubling per death in a row
STOP_SECONDS = 75.0  # a child's clean shutdown (aiohttp gives requests in flight 60 s)


def become_child(parent: int) -> None:
    """Called first in a child: its own process group (the terminal's signals reach the parent
    only; it forwards one SIGTERM), and a clean shutdown when the parent disappears."""
    os.setpgrp()
    threading.Thread(target=_end_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _end_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)  # a clean shutdown, as if the supervisor had asked


@dataclass
class Child:
    index: int
    process: multiprocessing.process.BaseProcess | None = None
    deaths_in_a_row: int = 0
    started: float = 0.0  # monotonic
    start_at: float = 0.0  # when a dead child may be started again (monotonic)


@dataclass
class Supervisor:
    """`child(index, parent_pid)` runs in each child process (spawned: it and its arguments are
    pickled); `what` names them in the first log line."""

    processes: int
    child: Callable[[int, int], None]
    what: str = ""
    children: list[Child] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)  # monotonic times of unexpected deaths
    stopping: bool = False

    def run(self) -> int:
        log.info("supervisor (pid %d): %d HTTP processes%s, %d CPUs", os.getpid(), self.processes,
                 f" {self.what}" if self.what else "", os.cpu_count() or 0)  # fmt: skip
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = {s: signal.signal(s, lambda *_: self._stop_soon(wake_w)) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.children = [Child(i) for i in range(1, self.processes + 1)]
            for child in self.children:
                self._start(child)
            failed = self._supervise(wake_r)
            return self._stop_all() or failed
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _stop_soon(self, wake_w: int) -> None:
        self.stopping = True
        try:
            os.write(wake_w, b"x")
        except BlockingIOError:
            pass

    def _start(self, child: Child) -> None:
        spawn = multiprocessing.get_context("spawn")  # no copy of the parent's state
        child.process = spawn.Process(
            target=self.child, args=(child.index, os.getpid()), name=f"interchange-http-{child.index}"
        )
        child.process.start()
        child.started = time.monotonic()
        log.info("HTTP process %d started (pid %d)", child.index, child.process.pid)

    def _supervise(self, wake_r: int) -> int:
        """Until asked to stop (0) or a crash loop (1): restart dead children after their pause."""
        while not self.stopping:
            now = time.monotonic()
            waiting = [c for c in self.children if c.process is None]
            for child in waiting:
                if child.start_at <= now:
                    self._start(child)
            alive = [c.process.sentinel for c in self.children if c.process is not None]
            pause = min((c.start_at for c in waiting if c.process is None), default=now + 5.0) - now
            wait([*alive, wake_r], timeout=max(0.05, min(pause, 5.0)))
            if self.stopping:
                return 0
            for child in self.children:
                if child.process is not None and not child.process.is_alive():
                    if self._died(child):
                        return 1
        return 0

    def _died(self, child: Child) -> bool:
        """Note an unexpected death and schedule the restart; True when it is a crash loop."""
        assert child.process is not None
        code = child.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        child.process.close()
        child.process = None
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < DEATH_WINDOW] + [now]
        if len(self.deaths) > MAX_DEATHS:
            log.error(
                "HTTP process %d ended (%s): %d deaths within %.0f s, giving up (see the lines above for why)",
                child.index, how, len(self.deaths), DEATH_WINDOW,
            )  # fmt: skip
            return True
        if now - child.started > DEATH_WINDOW:
            child.deaths_in_a_row = 0  # it had been running well: a death, not a crash loop
        pause = min(MAX_PAUSE, FIRST_PAUSE * 2**child.deaths_in_a_row)
        child.deaths_in_a_row += 1
        child.start_at = now + pause
        log.warning("HTTP process %d ended unexpectedly (%s); starting it again in %.0f s", child.index, how, pause)
        return False

    def _stop_all(self) -> int:
        """One SIGTERM to each child, wait for their clean shutdown, kill the late ones."""
        running = [c.process for c in self.children if c.process is not None and c.process.is_alive()]
        for p in running:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_SECONDS
        for p in running:
            p.join(max(0.0, deadline - time.monotonic()))
        unclean = 0
        for child in self.children:
            p = child.process
            if p is None:
                continue
            if p.is_alive():
                log.error("HTTP process %d did not stop within %.0f s: killed", child.index, STOP_SECONDS)
                p.kill()
                p.join(5)
                unclean += 1
            elif p.exitcode not in (0, -signal.SIGTERM):
                log.error("HTTP process %d ended with exit code %s while stopping", child.index, p.exitcode)
                unclean += 1
        log.info("supervisor: %d HTTP processes stopped%s", len(running), f", {unclean} not cleanly" if unclean else "")
        return 1 if unclean else 0

