"""Runs the receipt pipeline and notice signing off the event loop: in worker processes
(default) or one thread.

Each worker builds its `Receiver` once (trust anchors, schemas); lxml schema objects cannot
be pickled, so they are built inside the worker rather than shipped to it.

The processes are an `interchange.workerpool.ProcessPool` (driven by the event loop, one call
per process at a time). With processes, every call has a CPU budget (`[limits] worker_seconds`
plus `worker_seconds_per_mib` per MiB of its input), counted from when it starts in its process.
A call past its budget kills its worker process, which is replaced, and raises
`WorkerBudgetExceeded`; the calls running in the other processes are not touched. A worker
process that dies on its own (killed, out of memory, a crash) fails the call it held with
`WorkerLost` (not retried: the input may be what killed it) and is replaced. Both are
`WorkerUnavailable`: nothing was done, the caller answers 503 and may retry. In thread mode
(`workers = 0`) there is no budget: a thread cannot be stopped.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from interchange.config import LimitsConfig, TrustConfig, TrustPaths
from interchange.intake.pipeline import Caller, Outcome, Read, Receiver
from interchange.legal.params import LegalParameters, configured_parameters
from interchange.notices.notice import NoticeData, NoticeSigner
from interchange.spool import LARGE, Spooled, as_bytes, sha256_of
from interchange.workerpool import CallOverBudget, ProcessPool, WorkerDied


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker builds its stages from, with every path resolved by the composition root
    (interchange.server); sent to each worker process, so picklable."""

    trust: TrustConfig
    trust_paths: TrustPaths
    limits: LimitsConfig
    signing_key: Path  # the notice key ([signing] key)
    signing_cert: Path  # ... and its certificate chain ([signing] cert)
    parameters: Path | None = None  # the legal parameters file ([rules] parameters); None: the shipped one
    # Called in the worker before each stage with its name ("receive", "judge", "verify",
    # "sign_notice") and its input: a seam for tests (a slow or crashing stage). A module-level
    # function, so that it can be sent to the worker processes. None in production.
    before_stage: Callable[[str, object], None] | None = None
    # A form file of at least this many bytes is validated in a forked helper beside the worker's
    # pass ([server] validate_aside_mib; trust/aside.py); 0: never. Not in thread mode.
    validate_aside_from: int = 0


log = logging.getLogger("interchange.workers")
MIB = 1024 * 1024


class WorkerUnavailable(Exception):
    """A call could not be completed in a worker process; nothing of it was done. Retry later."""

    retry_after = 5  # seconds, for the Retry-After of the 503 answering it

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class WorkerBudgetExceeded(WorkerUnavailable):
    """The call ran past its CPU budget; its worker process was ended."""


class WorkerLost(WorkerUnavailable):
    """The worker process running the call died (killed, out of memory, crashed)."""


def budget_seconds(limits: LimitsConfig, size: int) -> float | None:
    """The time one call on an input of `size` bytes may hold a worker; None: no budget."""
    if limits.worker_seconds <= 0:
        return None
    return limits.worker_seconds + max(0.0, limits.worker_seconds_per_mib) * size / MIB


_receiver: Receiver | None = None
_notice_signer: NoticeSigner | None = None
_settings: WorkerSettings | None = None
_params: LegalParameters | None = None


def _init(settings: WorkerSettings, parent_pid: int | None = None) -> None:
    global _receiver, _notice_signer, _settings, _params
    # the helper is forked only from a worker process (parent_pid given), never from the server's
    # own process, whose event loop and threads a fork would copy
    aside = settings.validate_aside_from if parent_pid is not None else 0
    _receiver = Receiver.from_config(settings.trust, settings.trust_paths, settings.limits, validate_aside_from=aside)
    _notice_signer = NoticeSigner.from_files(settings.signing_key, settings.signing_cert)
    _settings = settings
    _params = configured_parameters(settings.parameters)
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose server was killed (kill -9 leaves no time to stop the pool) ends itself."""
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(0)


def _before(stage: str, data: object) -> None:
    if _settings is not None and _settings.before_stage is not None:
        _settings.before_stage(stage, data)


def _receive(body: bytes | Spooled, at: datetime, caller: Caller | None, judge: bool = False,
             stored_data: frozenset[str] = frozenset(), aside: bool = True) -> Outcome:
    """A large body as its file: the receipt reads it a few MiB at a time (bounded memory). With
    `judge`, an accepted dossier of bytes is judged by the rule layer at once, on the trees the
    receipt read (`Outcome.judgement`): the result work need not read and parse it again. The
    revocation data named in `stored_data` (SHA-256 hex), stored already, is not sent back: a CRL
    runs to megabytes, and the same few serve every dossier. `aside` False: no forked validation
    helper this time (the other workers are busy: its CPU would be taken from them)."""
    assert _receiver is not None, "worker not initialised"
    _before("receive", body)
    try:
        if not judge or isinstance(body, Spooled):
            outcome = _receiver.receive(body, at, caller, aside=aside)
        else:
            outcome, read = _receiver.receive_and_read(body, at, caller, aside=aside)
            if read is not None and all(root is not None for _, root in read.forms):
                outcome.judgement = _judge_read(read)
        for digest in stored_data & outcome.revocation_data.keys():
            del outcome.revocation_data[digest]
        return outcome
    finally:
        if len(body) > LARGE_BODY:
            _give_memory_back()


LARGE_BODY = LARGE


def _give_memory_back() -> None:
    """After a large dossier, hand libxml2's freed trees back to the OS (glibc keeps them otherwise:
    a worker stayed at 770 MB after a 50,000-row dossier)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018  (glibc only)
except (OSError, AttributeError):
    _libc = None


def _sign_notice(data: NoticeData) -> bytes:
    assert _notice_signer is not None, "worker not initialised"
    _before("sign_notice", data)
    return _notice_signer.sign(data)


def _judge_read(read: Read):
    """The rule layer on what the receipt read; None when it fails (the result work judges the
    original then, and reports what it finds)."""
    from interchange.rules.judge import judge_read

    assert _settings is not None and _params is not None, "worker not initialised"
    try:
        return judge_read(read.envelope, read.forms, params=_params, limits=_settings.limits)
    except Exception:  # noqa: BLE001  (never a reason to refuse a receipt)
        log.exception("judging at receipt failed; the result work judges the original")
        return None


def _judge(original: bytes | Spooled):
    """The rule layer on a received dossier's original bytes (interchange.rules.judge)."""
    from interchange.rules.judge import judge

    assert _settings is not None and _params is not None, "worker not initialised"
    _before("judge", original)
    try:  # a Spooled as it is: judge reads it and lets the bytes go before the rows (bounded memory)
        return judge(original, params=_params, limits=_settings.limits)
    finally:
        if len(original) > LARGE_BODY:
            _give_memory_back()


def _judge_many(originals: list[bytes | Spooled]) -> list:
    """`_judge` of each (one hop for a group); an item that fails gives its exception, not the call."""
    out: list = []
    for original in originals:
        try:
            out.append(_judge(original))
        except Exception as exc:  # noqa: BLE001  (the caller fails that dossier's work item alone)
            out.append(exc)
    return out


def _sign_notices(data: list[NoticeData]) -> list[bytes]:
    return [_sign_notice(d) for d in data]


def _verify(data: bytes | Spooled, at: datetime) -> dict:
    """A signature report on any signed XML (POST /api/v1/verify), with the receipt's trust store."""
    from interchange.trust.report import signature_report

    data = as_bytes(data)
    assert _receiver is not None and _settings is not None, "worker not initialised"
    _before("verify", data)
    return signature_report(data, trust=_receiver.trust, limits=_receiver.limits, at=at,
                            legacy_sha1=_settings.trust.legacy_sha1)


def _ready() -> bool:
    return _receiver is not None


class ReceiptWorkers:
    def __init__(self, settings: WorkerSettings, processes: int):
        """`processes` worker processes ([server] workers); 0 runs the stages in one thread."""
        self.processes = processes
        self.settings = settings
        self.limits = settings.limits
        self._pool: ProcessPool | None = None
        self._to_sign: list[tuple[NoticeData, asyncio.Future]] = []  # sign_notice calls waiting
        self._signing: asyncio.Task | None = None
        self._thread: Executor | None = None
        if processes > 0:
            self._pool = ProcessPool(processes, _init, (settings, os.getpid()))
        else:
            # One thread: a Receiver is not shared between threads.
            self._thread = ThreadPoolExecutor(1, initializer=_init, initargs=(settings,), thread_name_prefix="receipt")

    @property
    def replaced(self) -> int:
        """Worker processes replaced since start (killed past a budget, or dead)."""
        return self._pool.replaced if self._pool is not None else 0

    def pids(self) -> list[int]:
        """The worker processes' ids (empty in thread mode, or before they started)."""
        return self._pool.pids() if self._pool is not None else []

    async def start(self) -> None:
        """Start every worker now, so that the first dossier does not pay for it."""
        if self._pool is None:
            await asyncio.get_running_loop().run_in_executor(self._thread, _ready)
            return
        await self._pool.start()

    async def _call(self, stage: str, fn, args: tuple, data: bytes | Spooled | None = None, *, size: int | None = None,
                    urgent: bool = False):
        """`fn(*args)` in a worker; in processes within the budget for `data`'s size (or `size`,
        the total of a call on many inputs). `urgent` (signing notices): before the waiting
        checks, for a notice finishes work already done and holds up its batch until signed."""
        if self._pool is None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        budget = budget_seconds(self.limits, len(data or b"") if size is None else size)
        try:
            return await self._pool.call(fn, *args, budget=budget, urgent=urgent)
        except CallOverBudget as over:
            what, digest = _describe(data, size)
            log.warning("worker budget exceeded: %s of %s bytes (sha256 %s) ran over %.1f s; "
                        "worker process %s ended and replaced", stage, what, digest, over.budget, over.pid)  # fmt: skip
            raise WorkerBudgetExceeded(stage, f"{stage} ran over its budget of {over.budget:.1f} s") from None
        except WorkerDied as died:
            what, digest = _describe(data, size)
            log.error("worker process died during %s of %s bytes (sha256 %s): %s",
                      stage, what, digest, died)  # fmt: skip
            raise WorkerLost(stage, f"the worker process running {stage} ended") from None

    async def receive(self, body: bytes | Spooled, at: datetime, caller: Caller | None, *, judge: bool = False,
                      stored_data: frozenset[str] = frozenset()) -> Outcome:
        """The receipt's layers in a worker; `stored_data`: the revocation data (SHA-256 hex) the
        store holds already, which the outcome need not carry back (`_receive`). A large form is
        validated in a forked helper beside the worker's pass only when another worker is idle
        now: on a busy machine the helper's CPU would be taken from the other dossiers."""
        aside = self._pool is not None and self._pool.idle() >= 2  # this call takes one of them
        return await self._call_large("receive", _receive, body, (at, caller, judge, stored_data, aside))

    async def _call_large(self, stage: str, fn, data: bytes | Spooled, rest: tuple):
        """`fn(data, *rest)`: a large `data` goes to a worker process through a file (`Spooled`)."""
        if self._pool is None or isinstance(data, Spooled) or len(data) <= LARGE_BODY:
            return await self._call(stage, fn, (data, *rest), data)
        loop = asyncio.get_running_loop()
        spilled = await loop.run_in_executor(None, Spooled.write, data)
        try:
            return await self._call(stage, fn, (spilled, *rest), data)
        finally:
            spilled.remove()

    async def sign_notice(self, data: NoticeData) -> bytes:
        """Sign a notice in a worker (RSA signing would otherwise hold up the event loop). The
        calls made together (the receipts of one group commit) are signed together, in one call
        per worker process, instead of one process hop each; should that call fail, every
        notice of it is signed again on its own, so that a failure reaches only its own caller."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._to_sign.append((data, future))
        if self._signing is None or self._signing.done():
            self._signing = loop.create_task(self._sign_waiting(), name="sign-notices")
        return await future

    async def _sign_waiting(self) -> None:
        await asyncio.sleep(0)  # the calls made in this turn of the event loop join
        while self._to_sign:
            batch, self._to_sign = self._to_sign, []
            try:
                signed = await self.sign_notices([data for data, _ in batch])
            except Exception as exc:  # noqa: BLE001  (each alone below: only its own caller sees an error)
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                else:
                    await asyncio.gather(*(self._sign_alone(data, future) for data, future in batch))
                continue
            for (_, future), xml in zip(batch, signed, strict=True):
                if not future.done():
                    future.set_result(xml)

    async def _sign_alone(self, data: NoticeData, future: asyncio.Future) -> None:
        if future.done():
            return
        try:
            xml = await self._call("sign_notice", _sign_notice, (data,), urgent=True)
        except Exception as exc:  # noqa: BLE001  (given to the caller)
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(xml)

    async def verify(self, data: bytes | Spooled, at: datetime) -> dict:
        return await self._call_large("verify", _verify, data, (at,))

    async def judge(self, original: bytes | Spooled):
        """Judge a received dossier by the business rules in a worker (a Judgement)."""
        return await self._call_large("judge", _judge, original, ())

    async def judge_many(self, originals: list[bytes | Spooled]) -> list:
        """`judge` of many dossiers, spread over the worker processes in one call each: a
        Judgement, or the exception of that one dossier, for each. WorkerUnavailable when a
        worker process died or ran past the budget of its share (the caller may judge them
        one by one: the input that killed it fails alone)."""
        shares = [originals[i :: self.processes or 1] for i in range(max(1, self.processes))]
        shares = [s for s in shares if s]
        got = await asyncio.gather(
            *(self._call("judge", _judge_many, (share,), size=sum(map(len, share))) for share in shares)
        )
        out: list = [None] * len(originals)
        for i, results in enumerate(got):
            out[i :: len(shares)] = results
        return out

    async def sign_notices(self, data: list[NoticeData]) -> list[bytes]:
        """Sign many notices, spread over the worker processes in one call each."""
        shares = [data[i :: self.processes or 1] for i in range(max(1, self.processes))]
        shares = [s for s in shares if s]
        got = await asyncio.gather(
            *(self._call("sign_notice", _sign_notices, (share,), urgent=True) for share in shares)
        )
        out: list[bytes] = [b""] * len(data)
        for i, signed in enumerate(got):
            out[i :: len(shares)] = signed
        return out

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            return
        assert self._pool is not None
        self._pool.close(grace=5.0)  # a stage stuck past its budget must not hold up the shutdown


def _describe(data: bytes | Spooled | None, size: int | None = None) -> tuple[str, str]:
    """(size, sha256) of a call's input for the log; `size`: the total of a call on many."""
    if size is not None:
        return f"{size} (a group)", "-"
    if data is None:
        return "-", "-"
    return str(len(data)), sha256_of(data).hex()
