"""Assembling and running the server: store, worker processes, notice key, HTTP app, and the
scheduler that runs due work from the database."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp import web

from interchange.api.app import WORK, Services, build_app
from interchange.config import Config
from interchange.forwarding.work import forwarder_of
from interchange.jobs.scheduler import WorkScheduler
from interchange.notices.notice import NoticeSigner
from interchange.store.store import Store
from interchange.trust.revocation import crl_refresher
from interchange.workcal import WorkCalendar
from interchange.workers import ReceiptWorkers

log = logging.getLogger("interchange")


@asynccontextmanager
async def services_for(cfg: Config, *, workers: int | None = None):
    """Open everything the app needs, and close it in reverse order."""
    store = await Store.open(cfg.store_url)
    pool = ReceiptWorkers(cfg, workers)
    try:
        await pool.start()
        signer = NoticeSigner.from_files(cfg.signing_key_path, cfg.signing_cert_path)
        yield Services(cfg=cfg, store=store, workers=pool, signer=signer, calendar=WorkCalendar.from_config(cfg))
    finally:
        pool.close()
        await store.close()


async def make_app(cfg: Config, *, workers: int | None = None) -> web.Application:
    """An app whose services are open now and close on the app's cleanup (for run_app and tests)."""
    stack = AsyncExitStack()
    services = await stack.enter_async_context(services_for(cfg, workers=workers))
    app = build_app(services)

    async def close(_app: web.Application) -> None:
        await stack.aclose()

    app.on_cleanup.append(close)
    app.cleanup_ctx.append(crl_refresher(cfg))  # re-fetches CRLs on a schedule when trust.fetch_revocation
    app.cleanup_ctx.append(work_scheduler(cfg))  # ends before `close` runs: cleanup contexts end first
    app.on_cleanup.append(close_forwarding)
    return app


async def close_forwarding(app: web.Application) -> None:
    """Role ivan: close the HTTP session upstream (the scheduler has stopped by now)."""
    if (forwarder := forwarder_of(app[WORK].handlers)) is not None:
        await forwarder.close()


def work_scheduler(cfg: Config):
    """This process's own scheduler (memory job store, never shared): it claims due work from the
    database every `[jobs] interval_seconds`; 0 leaves the work to other processes."""

    async def run(app: web.Application):
        if cfg.jobs.interval_seconds <= 0:
            yield
            return
        scheduler = WorkScheduler(app[WORK], cfg.jobs.interval_seconds)
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()

    return run


def serve(cfg: Config) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("interchange %s role on http://%s:%s, store %s", cfg.server.role, cfg.server.host, cfg.server.port,
             cfg.store_url.split("@")[-1])
    web.run_app(make_app(cfg), host=cfg.server.host, port=cfg.server.port, access_log=None)
