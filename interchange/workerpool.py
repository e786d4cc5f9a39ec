"""A pool of worker processes driven by the event loop itself: no helper thread.

`concurrent.futures.ProcessPoolExecutor` runs a manager thread and a queue feeder thread
beside the event loop, and wakes them (and the loop) through pipes, semaphores and conditions
on every call; under load that machinery cost about an eighth of the server's CPU. Here each
worker process has its own socket pair (`multiprocessing.Pipe`): the loop writes a call to it and
reads the answer with `add_reader`/`add_writer` on non-blocking ends, a chunk per callback, and
learns of a process's death through `add_reader` on its sentinel.

A process runs one call at a time; a call waits for a free process first, so that its budget
(the time it may hold the process) starts when it starts. An urgent call (signing a notice for
work already done: its receipt batch or its result group waits on it) takes the next free
process before the waiting calls that are not: under load a notice otherwise waited behind every
dossier queued for checking. A call past its budget kills its process alone (`CallOverBudget`);
a process that dies on its own fails the call it held (`WorkerDied`). Either way the process is
replaced at once, and the other processes' calls go on. A message is an 8-byte length and a
pickle.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import multiprocessing
import os
import pickle
import socket
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.context import BaseContext

log = logging.getLogger("interchange.workerpool")

HEADER = struct.Struct("!Q")
READ_PER_CALLBACK = 4 * 1024 * 1024  # bytes read in one turn of the loop, at most: others get a turn
# An answer from this size is read into an anonymous map (no upfront zeroing) and unpickled in a
# thread, where the loop still gets its turns: a Judgement of a 50,000-row dossier (7.5 MiB
# pickled) takes 2.8 s to unpickle, its dataclasses rebuilt one by one in Python (32 small ones,
# 118 KiB: 13 ms).
LARGE_ANSWER = 256 * 1024


class WorkerDied(Exception):
    """The worker process ended before it answered (killed, out of memory, crashed, or closed).
    `before_call`: it ended before it had the whole call, which therefore did not run."""

    def __init__(self, pid: int | None, message: str, *, before_call: bool = False):
        super().__init__(message)
        self.pid = pid
        self.before_call = before_call


class CallOverBudget(Exception):
    """The call held its worker process past its budget; the process was killed."""

    def __init__(self, pid: int | None, budget: float):
        super().__init__(f"the call ran over its budget of {budget:.1f} s")
        self.pid = pid
        self.budget = budget


# --- the worker process's side (blocking: it does nothing else) ---


def _serve(conn, initializer: Callable | None, initargs: tuple) -> None:
    """The worker process: initialise, say so, then answer calls until the parent's end closes."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    try:
        if initializer is not None:
            initializer(*initargs)
    except Exception as exc:  # noqa: BLE001  (sent to whoever waits for this process)
        _answer(sock, False, exc)
        return
    _answer(sock, True, None)
    while (message := _receive(sock)) is not None:
        try:
            fn, args = pickle.loads(message)
            del message  # the input's bytes go before the call runs
            ok, value = True, fn(*args)
        except Exception as exc:  # noqa: BLE001  (the caller's to handle)
            ok, value = False, exc
        fn = args = None  # nothing of this call held while waiting for the next
        _answer(sock, ok, value)
        value = None


def _receive(sock: socket.socket) -> bytearray | None:
    header = _read_exactly(sock, HEADER.size)
    if header is None:
        return None
    return _read_exactly(sock, HEADER.unpack(header)[0])


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    """`size` bytes, or None at the end of the stream (the parent closed its end or died)."""
    buffer = bytearray(size)
    with memoryview(buffer) as view:
        filled = 0
        while filled < size:
            got = sock.recv_into(view[filled:])
            if not got:
                return None
            filled += got
    return buffer


def _answer(sock: socket.socket, ok: bool, value: object) -> None:
    """Send `(ok, value)`; an exception that cannot make the trip becomes a RuntimeError that says so."""
    if not ok and isinstance(value, BaseException):
        value.add_note(f"in worker process {os.getpid()}:\n" + "".join(traceback.format_exception(value)))
    try:
        payload = pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        if not ok:
            pickle.loads(payload)  # an exception class whose arguments do not survive pickling fails here
    except Exception as exc:  # noqa: BLE001
        what = "result" if ok else f"exception {value!r}"
        payload = pickle.dumps((False, RuntimeError(f"the {what} of the call could not be pickled: {exc!r}")))
    if len(payload) < LARGE_ANSWER:  # one write: the parent wakes once for it
        sock.sendall(HEADER.pack(len(payload)) + payload)
    else:
        sock.sendall(HEADER.pack(len(payload)))
        sock.sendall(payload)


# --- the parent's side (non-blocking, in the event loop) ---


class _Process:
    """One worker process and the parent's end of its socket pair."""

    def __init__(self, pool: ProcessPool, slot: int):
        self.pool = pool
        self.slot = slot
        self.loop = pool.loop
        parent_end, child_end = pool.context.Pipe(duplex=True)
        # daemon: ended by multiprocessing at exit should close() not have been called
        self.process = pool.context.Process(target=_serve, args=(child_end, pool.initializer, pool.initargs),
                                            name=f"worker-{slot}", daemon=True)  # fmt: skip
        self.process.start()
        child_end.close()
        self.pid = self.process.pid
        pool._processes.add(self)
        self.sock = socket.socket(fileno=os.dup(parent_end.fileno()))
        parent_end.close()
        self.sock.setblocking(False)
        self.ended = False  # killed, dead or closed: takes no more calls
        self.reaped = False
        self.busy = False  # running a call: it holds its slot until it answers or ends
        # its first answer says that it is initialised; a call's answer goes to `reply` after it
        self.ready = self.loop.create_future()
        self.ready.add_done_callback(_retrieve)  # no warning when nobody waited for it
        self.reply: asyncio.Future | None = self.ready  # None: no answer awaited
        self.timer: asyncio.TimerHandle | None = None
        self._unsent: list[memoryview] = []
        self._writing = False  # waiting for the socket to take the rest of a call
        self._unsendable = False  # the process was gone before it had the whole call
        self._header = bytearray(HEADER.size)
        self._message: bytearray | mmap.mmap | None = None  # the answer being read, once its size is known
        self._filled = 0
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.loop.add_reader(self.process.sentinel, self._on_exit)

    def run(self, fn: Callable, args: tuple, budget: float | None) -> asyncio.Future:
        """Send `fn(*args)`; the future gets its result (or exception). The process is busy until then."""
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.busy = True
        self.reply = self.loop.create_future()
        if budget is not None:
            self.timer = self.loop.call_later(budget, self._over_budget, budget)
        self._unsent = [memoryview(HEADER.pack(len(payload))), memoryview(payload)]
        self._send()
        return self.reply

    def _send(self) -> None:
        """As much of the call as the socket takes now; the rest when it is writable again."""
        try:
            while self._unsent:
                sent = self.sock.sendmsg(self._unsent)
                while self._unsent and sent >= len(self._unsent[0]):
                    sent -= len(self._unsent.pop(0))
                if sent:
                    self._unsent[0] = self._unsent[0][sent:]
        except BlockingIOError:
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.sock.fileno(), self._send)
            return
        except OSError:  # its end is closed: the process is gone, which its sentinel tells
            self._unsent = []
            self._unsendable = True
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())

    def _on_readable(self) -> None:
        """Read what has come, a bounded amount per turn of the loop; an answer complete is delivered."""
        budget = READ_PER_CALLBACK
        try:
            while budget > 0 and not self.ended:
                if self._message is None:
                    got = self.sock.recv_into(memoryview(self._header)[self._filled :])
                else:
                    with memoryview(self._message) as view:
                        got = self.sock.recv_into(view[self._filled :], min(budget, len(view) - self._filled))
                if not got:
                    return  # end of stream: the process is ending, which its sentinel tells
                self._filled += got
                budget -= got
                if self._advance():
                    return  # one answer per call: nothing more comes until the next one
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass  # as at the end of the stream

    def _advance(self) -> bool:
        """Take in what was read; True when it completed an answer."""
        if self._message is None:
            if self._filled == HEADER.size:
                size = HEADER.unpack(self._header)[0]
                self._message = mmap.mmap(-1, size) if size >= LARGE_ANSWER else bytearray(size)
                self._filled = 0
            return False
        if self._filled < len(self._message):
            return False
        message, self._message, self._filled = self._message, None, 0
        self._answered(message)
        return True

    def _answered(self, message: bytearray | mmap.mmap) -> None:
        """The answer is in: the process is free for the next call while this one's result is rebuilt."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        reply, held, self.reply, self.busy = self.reply, self.busy, None, False
        if reply is self.ready:
            ok, value = _decode(message)
            if ok:
                _deliver(reply, (True, None))
            else:  # its initialiser failed: it exits
                failed = WorkerDied(self.pid, f"worker process {self.pid} could not start: {value!r}")
                failed.__cause__ = value if isinstance(value, BaseException) else None
                _deliver(reply, (False, failed))
                self.end(kill=False)
            return
        if isinstance(message, mmap.mmap):
            try:
                decoding = self.loop.run_in_executor(None, _decode, message)
            except RuntimeError:  # the loop's executor is shut down (the loop is closing)
                _deliver(reply, _decode(message))
            else:
                decoding.add_done_callback(lambda done: _deliver(reply, _decoded(done)))
        else:
            _deliver(reply, _decode(message))
        if held:
            self.pool._free(self)

    def _over_budget(self, budget: float) -> None:
        self.timer = None
        if self.busy and not self.ended:
            self._fail(CallOverBudget(self.pid, budget), kill=True)
            self.pool._lost(self)

    def _on_exit(self) -> None:
        """Its sentinel: the process ended. An answer it sent before it did still counts."""
        if not self.ended:
            self._on_readable()
        if not self.ended:
            died = f"worker process {self.pid} ended (exit code {self.process.exitcode})"
            self._fail(WorkerDied(self.pid, died, before_call=self._unsendable), kill=True)
            self.pool._lost(self)
        self.loop.remove_reader(self.process.sentinel)
        self._collect()

    def _collect(self) -> None:
        """Reap it once it can be: its sentinel fires when it closes its files, which on a loaded
        machine can be a moment before the kernel lets its exit status be collected (reaped then,
        it stayed a zombie until the pool closed)."""
        if self.reaped or self.loop.is_closed():
            return
        if self.process.exitcode is None:
            self.loop.call_later(0.01, self._collect)
            return
        self.reap()

    def reap(self) -> None:
        """Once it has exited: collect its exit status (no zombie) and stop watching it."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self.process.sentinel)
        if not self.reaped and self.process.exitcode is not None:
            self.reaped = True
            self.process.close()
            self.pool._processes.discard(self)

    def _fail(self, exc: Exception, kill: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.reply is not None:
            _deliver(self.reply, (False, exc))
        self.end(kill=kill)

    def end(self, kill: bool) -> None:
        """Take no more calls: stop reading, close our end (an idle process exits), kill it if asked."""
        if self.ended:
            return
        self.ended = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        if self._message is not None and isinstance(self._message, mmap.mmap):
            self._message.close()
        self._message = None
        if kill and self.process.exitcode is None:
            self.process.kill()


def _decode(message: bytearray | mmap.mmap) -> tuple[bool, object]:
    try:
        return pickle.loads(message)
    except Exception as exc:  # noqa: BLE001  (a result the parent cannot rebuild)
        return False, RuntimeError(f"the result of the call could not be unpickled: {exc!r}")
    finally:
        if isinstance(message, mmap.mmap):
            message.close()  # the memory back at once


def _decoded(decoding: asyncio.Future) -> tuple[bool, object]:
    if decoding.cancelled():  # the loop's executor was shut down meanwhile
        return False, WorkerDied(None, "the answer was dropped: the event loop is closing")
    return decoding.result()


def _deliver(reply: asyncio.Future, answer: tuple[bool, object]) -> None:
    ok, value = answer
    if reply.done():  # its caller was cancelled
        return
    if ok:
        reply.set_result(value)
    else:
        reply.set_exception(value)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class ProcessPool:
    """`size` worker processes, each initialised by `initializer(*initargs)`; `call` runs a function
    (module-level, picklable, as are its arguments and result) in one of them."""

    def __init__(self, size: int, initializer: Callable | None = None, initargs: tuple = (), *,
                 context: BaseContext | None = None):  # fmt: skip
        if size < 1:
            raise ValueError("a process pool needs at least one process")
        self.size = size
        self.initializer = initializer
        self.initargs = initargs
        # spawn, not fork: the parent runs an event loop and threads that must not be copied
        self.context = context or multiprocessing.get_context("spawn")
        self.replaced = 0  # processes replaced since start (killed for a budget, or dead)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._slots: list[_Process | None] = [None] * size
        self._free_slots: list[int] = list(range(size))
        # calls waiting for a slot, urgent ones first: each future gets the slot it may use
        self._waiting: tuple[deque[asyncio.Future], deque[asyncio.Future]] = (deque(), deque())
        self._closed = False
        self._processes: set[_Process] = set()  # started and not reaped yet, replaced ones too

    def idle(self) -> int:
        """Processes free for a call now (none while calls wait for one)."""
        return 0 if any(self._waiting) else len(self._free_slots)

    def pids(self) -> list[int]:
        """The worker processes' ids (those started and not ended)."""
        return [p.pid for p in self._slots if p is not None and not p.ended and p.pid]

    async def start(self) -> None:
        """Start every process not running yet and wait until all are initialised (WorkerDied if
        one ends first, or the exception of its initialiser)."""
        if self._closed:
            raise WorkerDied(None, "the worker pool is closed")
        processes = [self._live(slot) for slot in range(self.size)]
        await asyncio.gather(*(asyncio.shield(p.ready) for p in processes))

    async def call(self, fn: Callable, *args, budget: float | None = None, urgent: bool = False):
        """`fn(*args)` in a free process, at most `budget` seconds from when it starts there;
        `urgent`: before the waiting calls that are not. CallOverBudget: its process was killed;
        WorkerDied: its process ended meanwhile."""
        try:
            return await (await self._hand(fn, args, budget, urgent))
        except WorkerDied as died:
            if not died.before_call or self._closed:
                raise
        # its process died idle, unnoticed yet: nothing ran, so once more in a new one
        return await (await self._hand(fn, args, budget, urgent))

    async def _slot(self, urgent: bool) -> int:
        """A free slot, once the calls ahead of this one have theirs."""
        ahead = self._waiting[0] if urgent else (self._waiting[0] or self._waiting[1])
        if self._free_slots and not ahead:
            return self._free_slots.pop()
        given = asyncio.get_running_loop().create_future()
        self._waiting[0 if urgent else 1].append(given)
        try:
            return await given
        except asyncio.CancelledError:
            if given.done() and not given.cancelled():  # given a slot just as it was cancelled
                self._put_back(given.result())
            raise

    def _put_back(self, slot: int) -> None:
        """The slot to the first call waiting (urgent ones first), or free."""
        for waiting in self._waiting:
            while waiting:
                given = waiting.popleft()
                if not given.done():
                    given.set_result(slot)
                    return
        self._free_slots.append(slot)

    async def _hand(self, fn: Callable, args: tuple, budget: float | None, urgent: bool = False) -> asyncio.Future:
        """Send the call to a free, initialised process: the future of its answer."""
        slot = await self._slot(urgent)
        handed = False
        try:
            if self._closed:
                raise WorkerDied(None, "the worker pool is closed")
            process = self._live(slot)
            try:
                await asyncio.shield(process.ready)
            except WorkerDied:  # ended before it took the call: a new one, once
                if self._closed:
                    raise
                process = self._live(slot)
                await asyncio.shield(process.ready)
            reply = process.run(fn, args, budget)
            handed = True  # the process gives the slot back when it answers or ends
            return reply
        finally:
            if not handed:
                self._put_back(slot)

    def _live(self, slot: int) -> _Process:
        """The slot's process, started anew when there is none or it has ended."""
        process = self._slots[slot]
        if process is None or process.ended:
            if self.loop is None:
                self.loop = asyncio.get_running_loop()
            process = self._slots[slot] = _Process(self, slot)
        return process

    def _free(self, process: _Process) -> None:
        """`process` answered: its slot takes the next call."""
        if self._slots[process.slot] is process and not self._closed:
            self._put_back(process.slot)

    def _lost(self, process: _Process) -> None:
        """`process` was killed or died: a replacement now, unless it never got ready (an initialiser
        that fails is not started again and again; the next call tries once)."""
        if self._slots[process.slot] is not process or self._closed:
            return
        was_ready = process.ready.done() and not process.ready.cancelled() and process.ready.exception() is None
        if not was_ready:
            return
        self._slots[process.slot] = _Process(self, process.slot)
        self.replaced += 1
        log.info("worker process %s replaced by %s", process.pid, self._slots[process.slot].pid)
        if process.busy:  # it held its slot (an idle one's slot is free already)
            self._put_back(process.slot)

    def close(self, grace: float = 5.0) -> None:
        """Stop the processes: an idle one exits when its socket closes, one still running a call
        after `grace` seconds is killed. Calls still waiting fail with WorkerDied."""
        self._closed = True
        processes = list(self._processes)
        loop_open = self.loop is not None and not self.loop.is_closed()
        for process in processes:
            if loop_open:
                process._fail(WorkerDied(process.pid, "the worker pool was closed"), kill=False)
            else:
                process.end(kill=False)  # its socket closed: an idle process exits
        if loop_open:
            for slot in range(self.size):  # a call waiting for a slot wakes and finds the pool closed
                self._put_back(slot)
        deadline = time.monotonic() + grace
        for process in processes:
            if process.reaped:
                continue
            process.process.join(max(0.0, deadline - time.monotonic()))
            if process.process.exitcode is None:
                log.warning("worker process %s still running after %.0f s: killed", process.pid, grace)
                process.process.kill()
                process.process.join()
            process.reap()
