"""A callback receiver or an upstream that accepts the connection and never answers: the attempt
ends within the configured timeout, is recorded as a failed try and retried later, and the other
work of the batch is not held up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import pytest

from interchange.delivery.callback import post_notice
from interchange.forwarding.client import UpstreamClient, UpstreamError
from interchange.jobs.runner import WorkRunner
from interchange.server import WORK
from tests.helpers import dossier, dossiers_with_work, ivan_client, ivan_setup

S = timedelta(seconds=1)


@pytest.fixture
async def hanging():
    """A loopback server that accepts, reads, and never answers: its URL."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for w in held:
        w.transport.abort()
    server.close()


async def test_a_callback_that_never_answers_ends_within_its_timeout(hanging):
    started = time.monotonic()
    answer = await post_notice(f"{hanging}/hook", b"<ThongBao/>", {}, timeout=0.5, allow_private=True)
    assert time.monotonic() - started < 1.5
    assert answer.status is None and answer.error.startswith("timeout")


async def test_an_upstream_that_never_answers_ends_within_its_timeout(hanging):
    client = UpstreamClient(hanging, "ik_x", 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamError) as raised:
            await client.submit(b"<Hoso/>", "tx-1")
    finally:
        await client.close()
    assert raised.value.outcome == "timeout" and time.monotonic() - started < 1.5


async def test_a_hanging_attempt_is_a_failed_try_and_does_not_hold_up_other_work(store, hanging):
    """Two items in one batch: the one whose receiver hangs fails at its timeout and is queued
    again; the other is done meanwhile."""
    finished: dict[str, float] = {}
    started = time.monotonic()

    async def deliver(item, now):
        answer = await post_notice(f"{hanging}/hook", b"<ThongBao/>", {}, timeout=0.5, allow_private=True)
        finished["slow"] = time.monotonic() - started
        if answer.error:
            raise RuntimeError(answer.error)

    async def quick(item, now):
        finished["quick"] = time.monotonic() - started

    await dossiers_with_work(store, [timedelta(0)], kind="slow")
    await dossiers_with_work(store, [timedelta(minutes=1)], kind="quick")
    runner = WorkRunner(store, {"slow": deliver, "quick": quick}, concurrency=4)
    ran = {r.item.kind: r for r in await runner.run_due()}
    assert ran["slow"].outcome == "retry" and "timeout" in ran["slow"].error
    assert ran["quick"].outcome == "done"
    assert finished["quick"] < 0.4 < finished["slow"] < 1.5
    (item,) = [w for w in await store.work.of(ran["slow"].item.dossier_id)]
    assert item.state == "queued" and item.not_before > datetime.now(UTC) and "timeout" in item.last_error


async def test_forwarding_to_a_hanging_upstream_is_a_timeout_try_retried_later(cfg, store_url, aiohttp_client, hanging,
                                                                               world):  # fmt: skip
    cfg.store.url = store_url
    ivan_setup(cfg, hanging, "ik_000000000000_x")
    cfg.upstream.timeout_seconds = 0.5
    client, keys = await ivan_client(cfg, aiohttp_client)
    resp = await client.post("/api/v1/dossiers", data=dossier(world.signer(world.unit), seed=601),
                             headers={"Content-Type": "application/xml", **keys["unit"]})  # fmt: skip
    assert resp.status == 202
    tx = resp.headers["X-Transaction-Id"]
    started = time.monotonic()
    t0 = datetime.now(UTC) + S
    ran = await client.app[WORK].run_due(now=t0)
    assert [f"{r.item.kind}:{r.outcome}" for r in ran] == ["forward:retry"]
    assert time.monotonic() - started < 3
    fw = await (await client.get(f"/api/v1/dossiers/{tx}/forwarding", headers=keys["unit"])).json()
    assert [a["outcome"] for a in fw["tries"]] == ["timeout"] and fw["state"] != "failed"
    assert datetime.fromisoformat(fw["next_try_at"]) > t0
