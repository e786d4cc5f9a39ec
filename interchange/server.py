"""The composition root: assembling and running the server. It opens the store, the worker
processes and the notice key, makes the use cases and the work handlers, builds the HTTP app
and starts the scheduler that runs due work from the database. Nothing else wires components."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from functools import partial

from aiohttp import web
from sqlalchemy.engine import make_url

from interchange.api.app import build_app, quiet_bad_requests
from interchange.api.forwarding import PUSH
from interchange.api.http import Services
from interchange.api.logs import configure_logging
from interchange.api.metrics import Metrics
from interchange.config import Config, JobsConfig
from interchange.delivery.mail import make_sender
from interchange.delivery.work import DELIVERY_KINDS, DeliveryWork
from interchange.forwarding.notices import NoticeChecker
from interchange.forwarding.push import PushChannel
from interchange.forwarding.work import Forwarder, forwarder_of
from interchange.jobs.registration import RegistrationWork
from interchange.jobs.result import KnownJudgements, ResultWork
from interchange.jobs.runner import WorkRunner
from interchange.jobs.scheduler import WorkScheduler
from interchange.kinds import WORK_JUDGE, WORK_REGISTRATION
from interchange.legal.params import configured_parameters
from interchange.notices.notice import NoticeSigner
from interchange.processes import Supervisor, become_child
from interchange.receiving.receipt import Policy, Reception
from interchange.store.db import StoreUnavailable
from interchange.store.store import Store
from interchange.trust.revocation import crl_refresher
from interchange.workcal import WorkCalendar
from interchange.workers import ReceiptWorkers, WorkerSettings

log = logging.getLogger("interchange")
GC_YOUNG_THRESHOLD = 20_000  # net allocations between collections of the youngest generation

WORK = web.AppKey("work", WorkRunner)  # this process's work runner (tests drive it directly)


def reception_policy(cfg: Config) -> Policy:
    return Policy(
        role=cfg.server.role,
        office_code=cfg.server.office_code,
        targets=dict(cfg.targets),
        registration_required=cfg.registration.required,
        forward_within=timedelta(minutes=cfg.upstream.target_minutes),
    )


def worker_settings(cfg: Config) -> WorkerSettings:
    """What each worker process builds its stages from, every path resolved here."""
    return WorkerSettings(
        trust=cfg.trust,
        trust_paths=cfg.trust_paths,
        limits=cfg.limits,
        signing_key=cfg.signing_key_path,
        signing_cert=cfg.signing_cert_path,
        parameters=cfg.parameters_path,
        validate_aside_from=cfg.server.validate_aside_from,
    )


@asynccontextmanager
async def services_for(cfg: Config, *, workers: int | None = None):
    """Open everything the app needs, and close it in reverse order.

    Refuses to start (an exception with one clear message; `interchange serve` prints it and
    exits non-zero) when the notice key cannot sign (NoticeKeyError, a ValueError) or the database
    cannot be reached (ConnectionError). Failing fast rather than waiting: the schema must be
    migrated before anything is served, and a supervisor (systemd, Kubernetes) restarting the
    process with backoff makes the outage visible where it is watched; once running, an outage
    is answered 503 and /readyz says so, and the server recovers by itself."""
    signer = NoticeSigner.from_files(cfg.signing_key_path, cfg.signing_cert_path)  # before the workers load it
    try:
        store = await Store.open(cfg.store_url)
    except StoreUnavailable as exc:
        where = make_url(cfg.store_url).render_as_string(hide_password=True)
        raise ConnectionError(
            f"store: cannot start: the database {where} cannot be used: {exc} (start it, or fix [store] url)"
        ) from None
    pool = ReceiptWorkers(worker_settings(cfg), cfg.server.workers if workers is None else workers)
    try:
        await pool.start()
        calendar = WorkCalendar.from_config(cfg.calendar)
        reception = Reception(store, pool, calendar, reception_policy(cfg), KnownJudgements())
        yield Services(
            limits=cfg.limits, delivery=cfg.delivery, params=configured_parameters(cfg.parameters_path),
            store=store, workers=pool, signer=signer, calendar=calendar, reception=reception,
            anchors=cfg.trust_paths.anchors,
        )  # fmt: skip
    finally:
        pool.close()
        await store.close()


def forwarder(cfg: Config, store: Store, metrics: Metrics) -> Forwarder:
    """Role ivan: forwarding upstream and relaying its notices (ValueError: bad [upstream])."""
    up = cfg.upstream
    up.check()  # named before the notice anchors are looked at; the notice signer must be pinned
    checker = NoticeChecker.from_config(
        cfg.trust, cfg.limits,
        # without notice_anchors, notice_cert pins the signer's key and the units' anchors only
        # establish that its certificate is valid (a unit's certificate has another key)
        anchors=cfg.path(up.notice_anchors) if up.notice_anchors else cfg.trust_paths.anchors,
        crls=cfg.trust_paths.crls,
        pinned_cert=cfg.path(up.notice_cert) if up.notice_cert else None, subject=up.notice_subject,
    )  # fmt: skip
    return Forwarder.from_config(cfg.upstream, store, checker, hooks=metrics.forwarding_hooks(),
                                 on_breaker=metrics.breaker_changed)  # fmt: skip


def work_runner(cfg: Config, services: Services, metrics: Metrics) -> WorkRunner:
    """The work this process claims and runs (started by the scheduler below)."""
    store, workers = services.store, services.workers
    handlers = {
        WORK_REGISTRATION: RegistrationWork(store, workers.sign_notice, on_result=metrics.result_given),
        WORK_JUDGE: ResultWork(store, workers, on_result=metrics.result_given, known=services.reception.known),
    }
    if cfg.server.role == "ivan":
        handlers |= forwarder(cfg, store, metrics).handlers()
    deliver = DeliveryWork(store, services.delivery, make_sender(cfg.delivery, cfg.data_path),
                           on_outcome=metrics.delivery_ran)  # fmt: skip
    handlers |= dict.fromkeys(DELIVERY_KINDS, deliver)  # one handler for every route of every notice
    jobs = cfg.jobs
    if jobs.interval_seconds > jobs.heartbeat_seconds:
        raise ValueError(f"config: jobs.heartbeat_seconds ({jobs.heartbeat_seconds:g}) must be at least "
                         f"jobs.interval_seconds ({jobs.interval_seconds:g}): the heartbeat goes at a tick")  # fmt: skip
    return WorkRunner(
        store,
        handlers,
        batch=jobs.batch,
        concurrency=jobs.concurrency,
        lease=timedelta(seconds=jobs.lease_seconds),
        heartbeat=timedelta(seconds=jobs.heartbeat_seconds),
        instance=jobs.instance or None,
        max_attempts=jobs.max_attempts,
        on_ran=metrics.ran,
        on_overdue=lambda overdue, now: metrics.set_overdue(list(handlers), overdue, now),
    )


async def make_app(cfg: Config, *, workers: int | None = None) -> web.Application:
    """An app whose services are open now and close on the app's cleanup (for run_app and tests)."""
    stack = AsyncExitStack()
    services = await stack.enter_async_context(services_for(cfg, workers=workers))
    metrics = Metrics()
    app = build_app(services, metrics, cfg.server)
    app[WORK] = work_runner(cfg, services, metrics)
    if cfg.jobs.interval_seconds > 0 and cfg.jobs.wake_seconds > 0:  # this process runs the work
        services.reception.on_work = partial(app[WORK].wake, cfg.jobs.wake_seconds)

    async def close(_app: web.Application) -> None:
        await stack.aclose()

    app.on_cleanup.append(close)
    app.on_startup.append(freeze_startup_objects)
    app.cleanup_ctx.append(crl_refresher(cfg.trust, cfg.trust_paths))  # re-fetches CRLs when trust.fetch_revocation
    app.cleanup_ctx.append(work_scheduler(cfg.jobs))  # ends before `close` runs: cleanup contexts end first
    app.on_cleanup.append(close_forwarding)
    if cfg.upstream.push_url and (fw := forwarder_of(app[WORK].handlers)) is not None:
        app[PUSH] = PushChannel(fw, cfg.upstream.push_url, cfg.upstream.api_key)  # the agency pushes its notices
        app.cleanup_ctx.append(app[PUSH].running)  # and the callback stays registered there
    return app


async def freeze_startup_objects(_app: web.Application) -> None:
    """What exists once the server has started (modules, the app, the services, the rule and
    schema tables) lives as long as the process: move it out of the garbage collector's sight,
    so that its full collections stop walking it while requests wait (card lookups: p99 49-73
    ms -> 24-40 ms at concurrency 32, 7 % more per second; bench/lookups.py).

    And collect the young generation every 20,000 net allocations instead of 700: a receipt
    and its result allocate thousands of short-lived objects, and the server spent about 9 % of
    its CPU in 1,200 collections per 2,000 dossiers (measured with gc.callbacks under
    bench/receipts.py); about 2 % with 17 collections now."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)


async def close_forwarding(app: web.Application) -> None:
    """Role ivan: close the HTTP session upstream (the scheduler has stopped by now)."""
    if (forwarder := forwarder_of(app[WORK].handlers)) is not None:
        await forwarder.close()


def work_scheduler(jobs: JobsConfig):
    """This process's own scheduler (memory job store, never shared): it claims due work from the
    database every `[jobs] interval_seconds`; 0 leaves the work to other processes."""

    async def run(app: web.Application):
        if jobs.interval_seconds <= 0:
            yield
            return
        scheduler = WorkScheduler(app[WORK], jobs.interval_seconds)
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()

    return run


def serve(cfg: Config, processes: int = 1) -> int:
    """`interchange serve [--processes N]`: the server in this process, or N HTTP processes on
    one port under a supervisor (interchange.processes; PostgreSQL only). Returns the exit code."""
    if processes < 1:
        raise ValueError(f"--processes must be 1 or more, not {processes}")
    if processes == 1:
        serve_one(cfg)
        return 0
    configure_logging(cfg.server.log_format)  # JSON lines unless [server] log_format = "text"
    several_processes_allowed(cfg, processes)
    preflight(cfg)
    what = (f"on {cfg.server.host}:{cfg.server.port} with SO_REUSEPORT, {cfg.server.workers} worker "
            "processes each ([server] workers)")  # fmt: skip
    return Supervisor(processes, partial(serve_child, cfg), what).run()


def several_processes_allowed(cfg: Config, processes: int) -> None:
    """Several processes need PostgreSQL (interchange.processes says why); ValueError otherwise."""
    if not cfg.store_url.startswith("postgresql"):
        raise ValueError(
            f"--processes {processes} needs PostgreSQL ([store] url = \"postgresql+asyncpg://...\"); "
            f"the store is {cfg.store_url.split(':')[0]}, whose single writer the processes would only "
            "wait for in turn. Run one process (its [server] workers use the other cores), or use PostgreSQL."
        )


def preflight(cfg: Config) -> None:
    """What every child would fail on, checked once with one clear message: the notice key
    (NoticeKeyError, a ValueError) and the database (ConnectionError; migrated to head here,
    once, rather than by N children at once)."""
    NoticeSigner.from_files(cfg.signing_key_path, cfg.signing_cert_path)

    async def migrate() -> None:
        store = await Store.open(cfg.store_url)
        await store.close()

    try:
        asyncio.run(migrate())
    except StoreUnavailable as exc:
        where = make_url(cfg.store_url).render_as_string(hide_password=True)
        raise ConnectionError(
            f"store: cannot start: the database {where} cannot be used: {exc} (start it, or fix [store] url)"
        ) from None


def serve_child(cfg: Config, index: int, parent: int) -> None:
    """One of several HTTP processes (run by interchange.processes in a spawned process)."""
    become_child(parent)
    serve_one(cfg, reuse_port=True, name=f"process {index}")


def serve_one(cfg: Config, *, reuse_port: bool = False, name: str = "") -> None:
    """Run the server until SIGTERM or SIGINT. `reuse_port`: one of several processes listening
    on the same port; `name` says which in its log lines."""
    configure_logging(cfg.server.log_format)  # JSON lines unless [server] log_format = "text"
    quiet_bad_requests()  # malformed HTTP that aiohttp answers 400 itself: one line, no traceback
    more_open_files()
    log.info("interchange %s role on http://%s:%s, store %s%s", cfg.server.role, cfg.server.host, cfg.server.port,
             cfg.store_url.split("@")[-1], f", {name} (pid {os.getpid()})" if name else "")
    web.run_app(
        make_app(cfg), host=cfg.server.host, port=cfg.server.port,
        # aiohttp's "Running on ..." once the socket listens, as a log line (what tests and benches wait for)
        print=lambda text: log.info("%s%s", text.splitlines()[0].strip("= "), f", {name}" if name else ""),
        access_log=None,  # interchange.api.observe writes the access log (with the request id)
        reuse_port=reuse_port or None,
        # also bounds the wait for a request head: aiohttp closes a connection whose head has not
        # come this long after it opened or after its last answer (slowloris, idle connections)
        keepalive_timeout=cfg.server.keepalive_seconds,
    )  # fmt: skip


def more_open_files() -> None:
    """Raise the soft limit of open files to the hard one: every idle connection holds one."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ValueError, OSError):
        pass
