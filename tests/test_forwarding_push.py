"""Role ivan: the agency pushes its notices to the I-VAN (interchange.forwarding.push), in one
process: the I-VAN's store on SQLite and PostgreSQL, the agency on SQLite, both on loopback.
The registration of the callback upstream, a pushed KET_QUA relayed at once and kept once
(pushed twice, polled and pushed), and what is never kept: a wrong token, a notice signed by
another key, a notice of another dossier, an unknown transaction.

tests/test_forwarding_push_e2e.py runs the same with two real server processes."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from interchange.api.forwarding import PUSH
from interchange.api.http import SERVICES
from interchange.forwarding.client import MAX_ANSWER_BYTES, UpstreamClient, UpstreamError
from interchange.kinds import NOTICE_RESULT, WORK_RELAY
from interchange.notices.notice import NoticeData, NoticeSigner
from interchange.server import WORK, make_app
from interchange.store.types import DONE
from tests.helpers import (
    ALL,
    OTHER_UNIT,
    UNIT,
    XML,
    Pair,
    Served,
    agency_config,
    dossier,
    ivan_setup,
    notice_of,
    t,
)
from tests.serverproc import free_port

S = timedelta(seconds=1)
IVAN = "00123"


@pytest.fixture
async def push(world, cfg, store_url, tmp_path, aiohttp_client):
    """An agency (allowing loopback callbacks) and an I-VAN with [upstream] push_url set to itself."""
    agency_cfg = agency_config(world, tmp_path / "agency")
    agency_cfg.delivery.allow_private_urls = True
    agency_app = await make_app(agency_cfg, workers=0)
    agency = Served(agency_app)
    await agency.start()
    _, token = await agency_app[SERVICES].store.keys.create("ivan", ivan=IVAN)
    cfg.store.url = store_url
    ivan_setup(cfg, agency.url, token)
    port = free_port()
    cfg.upstream.push_url = f"http://127.0.0.1:{port}"
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    keys = {}
    for name, mst in (("unit", UNIT.mst), ("other", OTHER_UNIT.mst)):
        _, key = await app[SERVICES].store.keys.create("submitter", mst=mst)
        keys[name] = {"Authorization": f"Bearer {key}"}
    pair = Pair(client, agency, agency_app, [0], keys)
    assert await app[PUSH].register()  # (also done in the background at start)
    yield pair
    await agency.runner.cleanup()


async def forwarded(pair: Pair, world, seed: int) -> tuple[str, str]:
    """A dossier submitted to the I-VAN and forwarded: (the I-VAN's id, the agency's id)."""
    tx = await pair.submit(dossier(world.signer(world.unit), seed=seed))
    assert await pair.run(datetime.now(UTC) + S) == ["forward:done"]
    return tx, (await pair.forwarding(tx))["upstream_id"]


async def judged_upstream(pair: Pair, upstream_id: str) -> bytes:
    """The agency judges (its work run now, deliveries left for later): its KET_QUA."""
    runner = pair.agency_app[WORK]
    ran = await runner.run_due(now=datetime.now(UTC) + S)
    assert ("result", "done") in [(r.item.kind, r.outcome) for r in ran], ran
    return await pair.agency_store.dossiers.notice(upstream_id, "ket-qua", ALL)


async def push_to(pair: Pair, body: bytes, upstream_id: str, kind: str = "ket-qua", token: str | None = None):
    channel = pair.ivan_app[PUSH]
    path = f"/api/v1/upstream/notices/{token if token is not None else channel.token}"
    headers = {"Content-Type": "application/xml", "X-Transaction-Id": upstream_id, "X-Notice-Kind": kind}
    return await pair.ivan.post(path, data=body, headers=headers)


async def ket_qua(pair: Pair, tx: str) -> bytes | None:
    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=pair.keys["unit"])
    return await resp.read() if resp.status == 200 else None


async def test_the_callback_is_registered_with_the_agency_once(push):
    channel = push.ivan_app[PUSH]
    sub = await push.agency_store.deliveries.subscription(f"ivan:{IVAN}")
    assert sub is not None and sub.url == channel.url and channel.live
    assert channel.url.startswith(f"http://127.0.0.1:{push.ivan.server.port}/api/v1/upstream/notices/")
    assert await channel.register()  # looked at: the same URL, not registered again
    assert await push.agency_store.deliveries.subscription(f"ivan:{IVAN}") == sub


async def test_the_agency_pushes_its_ket_qua_and_the_ivan_relays_it_at_once(push, world):
    """The agency's own delivery work POSTs the KET_QUA to the I-VAN; no poll is made."""
    tx, upstream_id = await forwarded(push, world, seed=801)
    agency_ket_qua = await judged_upstream(push, upstream_id)
    assert await ket_qua(push, tx) is None  # not yet: the push is the agency's next work
    ran = await push.agency_app[WORK].run_due(now=datetime.now(UTC) + S)
    assert ("deliver:ket-qua:ivan", "done") in [(r.item.kind, r.outcome) for r in ran], ran
    assert await ket_qua(push, tx) == agency_ket_qua  # exactly as signed upstream
    fw = await push.forwarding(tx)
    assert [(a["kind"], a["outcome"]) for a in fw["tries"]] == [("forward", "accepted"), ("push", "relayed")]
    assert fw["result"]["relayed_at"] and fw["result"]["polls"] == 0 and fw["result"]["state"] in ("accepted", "rejected")
    relay = [w for w in await push.ivan_app[SERVICES].store.work.of(tx) if w.kind == WORK_RELAY]
    assert [w.state for w in relay] == [DONE]  # no poll will be made
    assert await push.run(datetime.now(UTC) + timedelta(days=3)) == []
    (delivery,) = [d for d, _ in await push.agency_store.deliveries.of(upstream_id) if d.recipient == f"ivan:{IVAN}"
                   and d.notice_kind == "ket-qua"]  # fmt: skip
    assert delivery.state == "delivered"
    metrics = await (await push.ivan.get("/metrics")).text()
    assert 'interchange_forward_attempts_total{kind="push",outcome="relayed"} 1.0' in metrics


async def test_a_ket_qua_pushed_twice_or_polled_and_pushed_is_kept_once(push, world):
    tx, upstream_id = await forwarded(push, world, seed=802)
    body = await judged_upstream(push, upstream_id)
    first, again = await push_to(push, body, upstream_id), await push_to(push, body, upstream_id)
    assert (first.status, (await first.json())["outcome"]) == (200, "relayed")
    assert (again.status, (await again.json())["outcome"]) == (200, "duplicate")
    assert await ket_qua(push, tx) == body

    tx2, upstream_id2 = await forwarded(push, world, seed=803)
    body2 = await judged_upstream(push, upstream_id2)
    assert await push.run(datetime.now(UTC) + timedelta(seconds=200)) == ["relay:done"]  # the poll first
    late = await push_to(push, body2, upstream_id2)
    assert (late.status, (await late.json())["outcome"]) == (200, "duplicate")
    assert await ket_qua(push, tx2) == body2

    store = push.ivan_app[SERVICES].store
    entries = await store.audit.entries(after=0, limit=1000)
    kept = [e.dossier_id for e in entries if e.kind == "notice.stored" and e.data.get("kind") == "ket-qua"]
    assert sorted(kept) == sorted([tx, tx2])  # one KET_QUA each


async def test_what_a_push_never_keeps(push, world):
    tx, upstream_id = await forwarded(push, world, seed=804)
    other_tx, other_upstream = await forwarded(push, world, seed=805)
    body = await judged_upstream(push, upstream_id)

    wrong_token = await push_to(push, body, upstream_id, token="0" * 32)
    assert wrong_token.status == 404

    unknown = await push_to(push, body, "no-such-transaction")  # perhaps not written here yet: come back soon
    assert (unknown.status, (await unknown.json())["code"]) == (503, "NOT-FORWARDED")
    assert unknown.headers["Retry-After"] == "5"

    # the KET_QUA of one dossier pushed as another's: its MaGiaoDich and BamHoSo are not that one's
    crossed = await push_to(push, body, other_upstream)
    assert (crossed.status, (await crossed.json())["code"]) == (422, "UPSTREAM-NOTICE")

    # signed by a key that is not the agency's pinned notice key (a unit's, chaining to a trusted CA)
    root = notice_of(body)
    now = datetime.now(UTC)
    forged = NoticeSigner(world.unit.key, [world.unit.cert, *world.unit.chain]).sign(NoticeData(
        kind=NOTICE_RESULT, transaction_id=upstream_id, received_at=now, issued_at=now, result="CHAP_NHAN",
        sha256=hashlib.sha256(await push.ivan_app[SERVICES].store.dossiers.original(tx, ALL)).digest(),
        so_ho_so=t(root, "SoHoSo"),
    ))  # fmt: skip
    refused = await push_to(push, forged, upstream_id)
    answer = await refused.json()
    assert refused.status == 422 and "pinned" in answer["message"], answer

    assert await ket_qua(push, tx) is None and await ket_qua(push, other_tx) is None
    fw = await push.forwarding(tx)
    assert [(a["kind"], a["outcome"]) for a in fw["tries"]][-1] == ("push", "bad_notice")
    assert fw["result"]["relayed_at"] is None

    ignored = await push_to(push, b"<ThongBao/>", upstream_id, kind="tiep-nhan")  # the receipt came with the forwarding
    assert (ignored.status, (await ignored.json())["outcome"]) == (200, "ignored")
    too_big = await push_to(push, b"x" * (4 * 1024 * 1024 + 1), upstream_id)
    assert too_big.status == 413

    async def chunked():  # no Content-Length: counted as it comes
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    assert (await push_to(push, chunked(), upstream_id)).status == 413

    # the genuine one is still kept afterwards
    ok = await push_to(push, body, upstream_id)
    assert (ok.status, (await ok.json())["outcome"]) == (200, "relayed")
    assert await ket_qua(push, tx) == body


async def test_no_push_channel_without_push_url(api):
    """An agency, or an I-VAN without [upstream] push_url, has no push channel."""
    resp = await api.post("/api/v1/upstream/notices/whatever", data=b"<ThongBao/>", headers=XML)
    assert resp.status == 404


async def test_the_upstream_client_reads_a_whole_answer_sent_in_chunks(aiohttp_server):
    """An answer streamed in many chunks is read whole (a single read stops at the first chunk),
    and one larger than MAX_ANSWER_BYTES is refused."""

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(int(request.match_info["mib"]) * 16):
            await resp.write(b"x" * 65536)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/dossiers/{mib}/notices/ket-qua", streamed)
    server = await aiohttp_server(app)
    client = UpstreamClient(str(server.make_url("")), "ik_x", 10)
    try:
        assert len((await client.ket_qua("3")).body) == 3 * 1024 * 1024
        with pytest.raises(UpstreamError, match="larger than"):
            await client.ket_qua(str(MAX_ANSWER_BYTES // (1024 * 1024) + 1))
    finally:
        await client.close()
