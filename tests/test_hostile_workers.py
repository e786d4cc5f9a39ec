"""The worker processes' CPU budget, and a worker process killed mid-dossier (the hardening of
interchange.workers): the call is ended, the pool replaced, the request answered 503 with a
signed TU_CHOI, nothing stored, and the next request served. Slow stages are injected with the
`before_stage` seam (tests/workerhooks.py), not with pathological bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from datetime import UTC, datetime

import pytest
from lxml import etree

from interchange import server
from interchange.api.http import SERVICES
from interchange.notices.notice import NS
from interchange.store.types import Scope
from interchange.workers import ReceiptWorkers, WorkerBudgetExceeded, WorkerLost
from tests.helpers import UNIT, dossier
from tests.workerhooks import sleep_if_asked

XML = {"Content-Type": "application/xml"}
NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def settings(cfg, seconds: float):
    cfg.limits.worker_seconds = seconds
    cfg.limits.worker_seconds_per_mib = 0.0
    return dataclasses.replace(server.worker_settings(cfg), before_stage=sleep_if_asked)


async def started(workers: ReceiptWorkers) -> ReceiptWorkers:
    await workers.start()
    return workers


async def test_a_call_past_its_budget_ends_the_worker_and_the_next_call_works(cfg, caplog):
    workers = await started(ReceiptWorkers(settings(cfg, 1.0), 1))
    try:
        before = workers.pids()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with caplog.at_level(logging.WARNING, "interchange.workers"), pytest.raises(WorkerBudgetExceeded):
            await workers.receive(b"<!--SLEEP:60-->", NOW, None)
        assert loop.time() - t0 < 10  # not the 60 s the stage wanted
        assert "sha256 " in caplog.text and " of 15 bytes" in caplog.text
        outcome = await workers.receive(b"<not a dossier", NOW, None)  # the new pool judges it
        assert not outcome.accepted
        assert workers.replaced == 1 and set(workers.pids()).isdisjoint(before)
        with pytest.raises(WorkerBudgetExceeded):  # the rule layer's call has its budget too
            await workers.judge(b"<!--SLEEP:60-->")
    finally:
        workers.close()


async def test_a_call_past_its_budget_ends_only_its_own_process(cfg):
    workers = await started(ReceiptWorkers(settings(cfg, 2.0), 2))
    try:
        slow = asyncio.ensure_future(workers.receive(b"<!--SLEEP:60-->", NOW, None))
        await asyncio.sleep(1.2)
        # running in the other process when the slow one is ended at 2 s: not touched
        innocent = await workers.receive(b"<!--SLEEP:1.5-->", NOW, None)
        assert not innocent.accepted  # judged (not a dossier), not failed
        with pytest.raises(WorkerBudgetExceeded):
            await slow
        assert workers.replaced == 1
    finally:
        workers.close()


async def test_a_worker_killed_by_someone_else_fails_its_call_and_is_replaced(cfg):
    workers = await started(ReceiptWorkers(settings(cfg, 0), 1))  # no budget: only the kill ends it
    try:
        call = asyncio.ensure_future(workers.receive(b"<!--SLEEP:60-->", NOW, None))
        await asyncio.sleep(1.0)
        for pid in workers.pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLost):
            await asyncio.wait_for(call, 20)
        assert not (await workers.receive(b"<x/>", NOW, None)).accepted
        # a worker that dies while idle is found at the next call, which runs in a new pool
        for pid in workers.pids():
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        assert not (await workers.receive(b"<x/>", NOW, None)).accepted
    finally:
        workers.close()


@pytest.fixture
async def proc_api(cfg, aiohttp_client, monkeypatch):
    """The app with one worker process, a budget of 3 s and the slow-stage hook."""
    cfg.limits.worker_seconds = 3.0
    made = server.worker_settings
    monkeypatch.setattr(server, "worker_settings", lambda c: dataclasses.replace(made(c), before_stage=sleep_if_asked))
    app = await server.make_app(cfg, workers=1)
    client = await aiohttp_client(app)
    client.services = app[SERVICES]
    _, token = await client.services.store.keys.create("submitter", mst=UNIT.mst)
    client.key = {"Authorization": f"Bearer {token}", **XML}
    return client


def slowed(body: bytes, seconds: float) -> bytes:
    """The signed dossier with a comment before its root that the hook reads (outside the signature)."""
    head, _, rest = body.partition(b"?>")
    return head + b"?>" + f"<!--SLEEP:{seconds}-->".encode() + rest


def refusal_code(body: bytes) -> tuple[str, list[str]]:
    root = etree.fromstring(body)
    return root.findtext(f"{{{NS}}}LoaiThongBao") or root.tag, [e.text for e in root.iterfind(f".//{{{NS}}}Loi/{{{NS}}}Ma")]


async def count_dossiers(client) -> int:
    items, _ = await client.services.store.dossiers.list_page(Scope(all=True), limit=500)
    return len(items)


async def test_http_a_dossier_past_the_budget_is_503_and_nothing_is_stored(proc_api, world):
    body = dossier(world.signer(world.unit), seed=41)
    resp = await proc_api.post("/api/v1/dossiers", data=slowed(body, 60), headers=proc_api.key)
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    _, errors = refusal_code(await resp.read())
    assert errors == ["WORKER-BUDGET"]
    assert await count_dossiers(proc_api) == 0
    resp = await proc_api.post("/api/v1/dossiers", data=body, headers=proc_api.key)
    assert resp.status == 202, await resp.text()


async def test_http_a_worker_killed_mid_dossier_is_503_and_the_next_request_works(proc_api, world):
    body = dossier(world.signer(world.unit), seed=42)
    sent = asyncio.ensure_future(proc_api.post("/api/v1/dossiers", data=slowed(body, 2.5), headers=proc_api.key))
    await asyncio.sleep(1.0)
    for pid in proc_api.services.workers.pids():
        os.kill(pid, signal.SIGKILL)
    resp = await asyncio.wait_for(sent, 20)
    assert resp.status == 503, await resp.text()
    assert refusal_code(await resp.read())[1] == ["WORKER-LOST"]
    assert await count_dossiers(proc_api) == 0
    resp = await proc_api.post("/api/v1/dossiers", data=body, headers=proc_api.key)
    assert resp.status == 202, await resp.text()


async def test_a_large_input_goes_to_the_worker_through_a_file_that_is_removed(cfg, world, monkeypatch, tmp_path):
    import tempfile

    from interchange import workers as workers_module

    monkeypatch.setattr(workers_module, "LARGE_BODY", 1024)  # a small dossier counts as large here
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the spilled input is written
    written = []
    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: written.append(kw) or real_mkstemp(**kw))
    workers = await started(ReceiptWorkers(settings(cfg, 30.0), 1))
    try:
        body = dossier(world.signer(world.unit))
        assert len(body) > 1024
        outcome = await workers.receive(body, NOW, None)
        assert outcome.size == len(body) and outcome.layers["envelope"] == "passed"
        judged = await workers.judge(body)
        assert judged.extracted.contribution_changes
        assert len(written) == 2  # one file per call, not a pickle
        assert not list(tmp_path.glob("interchange-input-*"))  # removed after each call
    finally:
        workers.close()
