"""Progress on stderr for commands that can run longer than a couple of seconds.

`Stages`: `with stages.step("signing the envelope"):` says nothing while the step is quick; once
it has run `after` seconds a line names it and its elapsed time, refreshed in place on a
terminal (every `every` seconds as a new line elsewhere), and a last line says it is done.
`Bar`: a counter of done/total for many items (`submit` of a folder).
Both write to stderr only, so stdout stays the command's output; `--quiet` turns them off.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager


class Stages:
    def __init__(self, command: str, *, quiet: bool = False, after: float = 1.0, every: float = 5.0, out=None):
        self.command = command
        self.quiet = quiet
        self.after = after
        self.every = every
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.lock = threading.Lock()

    @contextmanager
    def step(self, what: str):
        if self.quiet:
            yield
            return
        started = time.monotonic()
        stop = threading.Event()
        shown = threading.Event()

        def watch() -> None:
            if stop.wait(self.after):
                return
            while True:
                self.show(f"{what} ... {time.monotonic() - started:.0f} s", last=False)
                shown.set()
                if stop.wait(1.0 if self.tty else self.every):
                    return

        thread = threading.Thread(target=watch, name="progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            if shown.is_set():
                self.show(f"{what}: done in {time.monotonic() - started:.1f} s", last=True)

    def show(self, text: str, *, last: bool) -> None:
        with self.lock:
            line = f"interchange {self.command}: {text}"
            if self.tty:
                self.out.write("\r\x1b[K" + line + ("\n" if last else ""))
            else:
                self.out.write(line + "\n")
            self.out.flush()


class Bar:
    """`[#####.....] 12/50  received 10, replays 1, refused 1` on stderr; on a terminal in place,
    elsewhere a line at each tenth (and the last)."""

    def __init__(self, command: str, total: int, *, quiet: bool = False, out=None, width: int = 30):
        self.command = command
        self.total = total
        self.quiet = quiet or total <= 0
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.width = width
        self.done = 0
        self.shown_tenth = -1
        self.started = time.monotonic()

    def advance(self, counts: dict[str, int]) -> None:
        self.done += 1
        if self.quiet:
            return
        filled = self.width * self.done // self.total
        tally = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        text = (f"interchange {self.command}: [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{self.done}/{self.total}  {tally}  {time.monotonic() - self.started:.1f} s")
        if self.tty:
            self.out.write("\r\x1b[K" + text + ("\n" if self.done == self.total else ""))
        else:
            tenth = 10 * self.done // self.total
            if tenth == self.shown_tenth and self.done != self.total:
                return
            self.shown_tenth = tenth
            self.out.write(text + "\n")
        self.out.flush()
