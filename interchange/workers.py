"""Runs the receipt pipeline and notice signing off the event loop: in worker processes
(default) or one thread.

Each worker builds its `Receiver` once (trust anchors, schemas); lxml schema objects cannot
be pickled, so they are built inside the worker rather than shipped to it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from interchange.config import LimitsConfig, TrustConfig, TrustPaths
from interchange.intake.pipeline import Caller, Outcome, Receiver
from interchange.legal.params import LegalParameters, configured_parameters
from interchange.notices.notice import NoticeData, NoticeSigner


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


_receiver: Receiver | None = None
_notice_signer: NoticeSigner | None = None
_settings: WorkerSettings | None = None
_params: LegalParameters | None = None


def _init(settings: WorkerSettings, parent_pid: int | None = None) -> None:
    global _receiver, _notice_signer, _settings, _params
    _receiver = Receiver.from_config(settings.trust, settings.trust_paths, settings.limits)
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


def _receive(body: bytes, at: datetime, caller: Caller | None) -> Outcome:
    assert _receiver is not None, "worker not initialised"
    try:
        return _receiver.receive(body, at, caller)
    finally:
        if len(body) > LARGE_BODY:
            _give_memory_back()


LARGE_BODY = 8 * 1024 * 1024


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
    return _notice_signer.sign(data)


def _judge(original: bytes):
    """The rule layer on a received dossier's original bytes (interchange.rules.judge)."""
    from interchange.rules.judge import judge

    assert _settings is not None and _params is not None, "worker not initialised"
    try:
        return judge(original, params=_params, limits=_settings.limits)
    finally:
        if len(original) > LARGE_BODY:
            _give_memory_back()



def _verify(data: bytes, at: datetime) -> dict:
    """A signature report on any signed XML (POST /api/v1/verify), with the receipt's trust store."""
    from interchange.trust.report import signature_report

    assert _receiver is not None and _settings is not None, "worker not initialised"
    return signature_report(data, trust=_receiver.trust, limits=_receiver.limits, at=at,
                            legacy_sha1=_settings.trust.legacy_sha1)


def _ready() -> bool:
    return _receiver is not None


class ReceiptWorkers:
    def __init__(self, settings: WorkerSettings, processes: int):
        """`processes` worker processes ([server] workers); 0 runs the stages in one thread."""
        self.processes = processes
        self._pool: Executor
        if processes > 0:
            # spawn, not fork: the parent runs an event loop and threads that must not be copied.
            self._pool = ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(settings, os.getpid()),
            )
        else:
            # One thread: a Receiver is not shared between threads.
            self._pool = ThreadPoolExecutor(1, initializer=_init, initargs=(settings,), thread_name_prefix="receipt")

    async def start(self) -> None:
        """Start every worker now, so that the first dossier does not pay for it."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _ready) for _ in range(max(self.processes, 1))))

    async def receive(self, body: bytes, at: datetime, caller: Caller | None) -> Outcome:
        return await asyncio.get_running_loop().run_in_executor(self._pool, _receive, body, at, caller)

    async def sign_notice(self, data: NoticeData) -> bytes:
        """Sign a notice in a worker (RSA signing would otherwise hold up the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _sign_notice, data)

    async def verify(self, data: bytes, at: datetime) -> dict:
        return await asyncio.get_running_loop().run_in_executor(self._pool, _verify, data, at)

    async def judge(self, original: bytes):
        """Judge a received dossier by the business rules in a worker (a Judgement)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _judge, original)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
