"""The `ivan` role end to end: two real servers on loopback (I-VAN -> agency), the I-VAN's store
on SQLite and PostgreSQL. Forwarding the exact bytes, relaying the upstream's receipt and
KET_QUA, an outage that heals (backoff, circuit breaker, deferral), a lost answer (Idempotency-Key
replay), bad upstream notices, permanent refusals. The work runs with a controllable clock."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from interchange.api.http import SERVICES
from interchange.config import UpstreamConfig
from interchange.evidence.bundle import verify_bundle
from interchange.jobs.policy import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, backoff, retry_after
from interchange.notices.notice import NoticeData, NoticeSigner
from interchange.server import WORK, make_app
from interchange.store.types import FAILED
from tests.helpers import (
    ALL,
    XML,
    Pair,
    Served,
    agency_config,
    dossier,
    ivan_client,
    ivan_setup,
    notice_of,
    registration,
    t,
    upstream_receipt,
)

S = timedelta(seconds=1)



@pytest.fixture
async def pair(world, cfg, store_url, tmp_path, aiohttp_client):
    agency_app = await make_app(agency_config(world, tmp_path / "agency"), workers=0)
    lose_answers = [0]

    @web.middleware
    async def lose(request: web.Request, handler):
        response = await handler(request)  # stored and answered: only the answer is lost on the way
        if request.method == "POST" and lose_answers[0] > 0:
            lose_answers[0] -= 1
            request.transport.close()
        return response

    agency_app.middlewares.append(lose)
    agency = Served(agency_app)
    await agency.start()
    _, token = await agency_app[SERVICES].store.keys.create("ivan", ivan="00123")
    cfg.store.url = store_url
    ivan_setup(cfg, agency.url, token)
    client, keys = await ivan_client(cfg, aiohttp_client)
    yield Pair(client, agency, agency_app, lose_answers, keys)
    await agency.runner.cleanup()


async def agency_dossiers(pair: Pair) -> list:
    return (await pair.agency_store.dossiers.list_page(ALL))[0]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---- end to end ----------------------------------------------------------------------------


async def test_forwards_the_exact_bytes_and_relays_receipt_and_result(pair, world):
    body = registration(world.signer(world.unit))  # 04/DK-IVAN: the agency decides it within 2 working hours
    tx = await pair.submit(body)
    t0 = datetime.now(UTC) + S
    assert await pair.run(t0) == ["forward:done"]

    (upstream,) = await agency_dossiers(pair)
    assert upstream.sha256 == hashlib.sha256(body).digest() and upstream.owner == "ivan:00123"
    assert await pair.agency_store.dossiers.original(upstream.id, ALL) == body  # the exact bytes
    fw = await pair.forwarding(tx)
    assert fw["state"] == "forwarded" and fw["upstream_id"] == upstream.id and not fw["overdue"]
    assert [(a["kind"], a["outcome"], a["http_status"], a["upstream_id"]) for a in fw["tries"]] == [
        ("forward", "accepted", 202, upstream.id)
    ]
    assert at(fw["due_at"]) - at(fw["legal_deadline_at"]) == timedelta(minutes=15) - timedelta(hours=2)

    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/notices/bhxh-tiep-nhan", headers=pair.keys["unit"])
    kept = await resp.read()
    assert resp.status == 200
    assert kept == await pair.agency_store.dossiers.notice(upstream.id, "tiep-nhan", ALL)  # as signed upstream
    assert t(notice_of(kept), "MaGiaoDich") == upstream.id
    info = await (await pair.ivan.get(f"/api/v1/dossiers/{tx}", headers=pair.keys["unit"])).json()
    assert set(info["notices"]) == {"tiep-nhan", "bhxh-tiep-nhan"}
    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/forwarding", headers=pair.keys["other"])
    assert resp.status == 404  # another unit sees nothing of it

    # The first poll comes after the first backoff; the agency has not decided yet.
    assert await pair.run(t0 + timedelta(seconds=179)) == []
    poll1 = t0 + timedelta(seconds=181)
    assert await pair.run(poll1) == ["relay:retry"]
    fw = await pair.forwarding(tx)
    assert [(a["kind"], a["outcome"]) for a in fw["tries"]][-1] == ("poll", "not_yet")
    assert at(fw["next_try_at"]) == poll1 + timedelta(seconds=180) and fw["result"]["polls"] == 1

    assert [r.outcome for r in await pair.agency_app[WORK].run_due(now=datetime.now(UTC) + S)] == ["done"]
    assert await pair.run(poll1 + timedelta(seconds=180)) == ["relay:done"]
    fw = await pair.forwarding(tx)
    assert fw["tries"][-1]["outcome"] == "relayed" and fw["result"]["state"] == "accepted"
    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=pair.keys["unit"])
    assert await resp.read() == await pair.agency_store.dossiers.notice(upstream.id, "ket-qua", ALL)
    info = await (await pair.ivan.get(f"/api/v1/dossiers/{tx}", headers=pair.keys["unit"])).json()
    assert info["state"] == "accepted" and info["result_at"]
    assert await pair.run(poll1 + timedelta(days=3)) == []  # nothing left to do
    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/evidence", headers=pair.keys["unit"])
    report = await asyncio.to_thread(verify_bundle, await resp.read(), [world.root.cert])
    # The upstream's notices are in the bundle: their signatures, BamHoSo and the upstream transaction
    # id logged with the forwarding all check out offline.
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
    assert {"notice bhxh-tiep-nhan content", "notice ket-qua content", "notice bhxh-tiep-nhan signature",
            "notice ket-qua signature"} <= {c.name for c in report.checks if c.ok}

    metrics = await (await pair.ivan.get("/metrics")).text()
    assert "interchange_time_to_forward_seconds_count 1.0" in metrics
    assert 'interchange_forward_attempts_total{kind="forward",outcome="accepted"} 1.0' in metrics
    assert 'interchange_forward_attempts_total{kind="poll",outcome="not_yet"} 1.0' in metrics
    assert "interchange_forward_breaker_state 0.0" in metrics


@pytest.mark.parametrize("staged", [False, True])  # True: the I-VAN read the body into a file and staged it
async def test_a_large_original_is_forwarded_from_its_file(pair, world, store_url, monkeypatch, tmp_path, staged):
    import tempfile

    from sqlalchemy import func, select

    from interchange.api import http as api_http
    from interchange.spool import SpoolWriter
    from interchange.store import originals
    from interchange.store.tables import staged_originals

    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(originals, "LARGE", 1024)  # the I-VAN's (SQLite) store reads it back into a file
    if staged:
        monkeypatch.setattr(api_http, "LARGE", 1024)
    made = []
    real_init = SpoolWriter.__init__
    monkeypatch.setattr(SpoolWriter, "__init__", lambda self, **kw: real_init(self, **kw) or made.append(self))
    body = dossier(world.signer(world.unit), seed=301)
    tx = await pair.submit(body)
    async with pair.ivan_app[SERVICES].store.db.reading() as conn:
        query = select(func.count()).select_from(staged_originals).where(staged_originals.c.dossier_id == tx)
        assert (await conn.execute(query)).scalar_one() == (1 if staged else 0)
    made.clear()
    assert await pair.run(datetime.now(UTC) + S) == ["forward:done"]
    (upstream,) = await agency_dossiers(pair)
    assert await pair.agency_store.dossiers.original(upstream.id, ALL) == body  # the exact bytes
    assert (await pair.forwarding(tx))["state"] == "forwarded"
    if store_url.startswith("sqlite"):
        assert made and made[0].size == len(body)  # sent from a file ...
    assert not list(folder.iterdir())  # ... removed once sent


async def test_the_evidence_bundle_of_a_forwarded_dossier_verifies(pair, world):
    tx = await pair.submit(dossier(world.signer(world.unit), seed=300))
    assert await pair.run(datetime.now(UTC) + S) == ["forward:done"]
    resp = await pair.ivan.get(f"/api/v1/dossiers/{tx}/evidence", headers=pair.keys["unit"])
    report = await asyncio.to_thread(verify_bundle, await resp.read(), [world.root.cert])
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)


async def test_an_outage_that_heals(pair, world):
    await pair.agency.stop()
    first = await pair.submit(dossier(world.signer(world.unit), seed=301))
    t0 = datetime.now(UTC) + S
    assert await pair.run(t0) == ["forward:retry"]
    assert await pair.run(t0 + timedelta(seconds=179)) == []  # not before its backoff
    assert await pair.run(t0 + timedelta(seconds=180)) == ["forward:retry"]
    assert await pair.run(t0 + timedelta(seconds=540)) == ["forward:retry"]  # the third failure opens the circuit
    fw = await pair.forwarding(first)
    tried = [at(a["at"]) for a in fw["tries"]]
    assert [b - a for a, b in zip(tried, tried[1:], strict=False)] == [timedelta(seconds=180), timedelta(seconds=360)]
    assert {a["outcome"] for a in fw["tries"]} == {"unreachable"} and fw["attempts"] == 3
    assert at(fw["next_try_at"]) == t0 + timedelta(seconds=540 + 720) and fw["state"] == "pending"
    assert "interchange_forward_breaker_state 2.0" in await (await pair.ivan.get("/metrics")).text()

    # While the circuit is open a new dossier is deferred to its end, no try made or counted.
    second = await pair.submit(dossier(world.signer(world.unit), seed=302))
    assert await pair.run(t0 + timedelta(seconds=600)) == ["forward:retry"]
    fw2 = await pair.forwarding(second)
    assert fw2["tries"] == [] and fw2["attempts"] == 0 and fw2["last_error"].startswith("deferred: circuit open")
    assert at(fw2["next_try_at"]) == t0 + timedelta(seconds=540 + 600)

    await pair.agency.start()  # back, on the same port
    assert await pair.run(t0 + timedelta(seconds=1140)) == ["forward:done"]  # the probe closes the circuit
    assert await pair.run(t0 + timedelta(seconds=1260)) == ["forward:done"]
    fw = await pair.forwarding(first)
    assert fw["state"] == "forwarded" and fw["attempts"] == 4 and fw["tries"][-1]["outcome"] == "accepted"
    assert fw["overdue"] and not fw["past_legal_deadline"]  # 21 minutes: past the 15-minute target, visibly
    assert (await pair.forwarding(second))["state"] == "forwarded"
    assert len(await agency_dossiers(pair)) == 2
    assert "interchange_forward_breaker_state 0.0" in await (await pair.ivan.get("/metrics")).text()


async def test_a_lost_answer_is_replayed_not_sent_twice(pair, world):
    body = dossier(world.signer(world.unit), seed=303)
    tx = await pair.submit(body)
    pair.lose_answers[0] = 1
    t0 = datetime.now(UTC) + S
    assert await pair.run(t0) == ["forward:retry"]
    (upstream,) = await agency_dossiers(pair)  # received upstream, though the I-VAN never heard it
    assert await pair.run(t0 + timedelta(seconds=180)) == ["forward:done"]
    fw = await pair.forwarding(tx)
    assert [(a["outcome"], a["http_status"]) for a in fw["tries"]] == [("unreachable", None), ("replayed", 200)]
    assert fw["upstream_id"] == upstream.id and upstream.idempotency_key == tx
    assert len(await agency_dossiers(pair)) == 1


# ---- a scripted upstream: answers the real agency would not give ----------------------------





async def test_bad_upstream_notices_are_not_kept_and_a_refused_request_is_not_retried(scripted, world):
    body = dossier(world.signer(world.unit), seed=304)
    tx = await scripted.submit(body)
    good = upstream_receipt(world, body)
    tampered = good.replace(b"00001/2026/AGCY", b"00002/2026/AGCY")  # the signature no longer covers it
    other_bytes = upstream_receipt(world, body + b" ")  # signed, but about other bytes
    scripted.script.extend([
        (202, tampered, {}),
        (202, other_bytes, {}),
        (503, b"", {"Retry-After": "120"}),
        (409, b"<ThongBao/>", {}),
    ])  # fmt: skip
    t0 = datetime.now(UTC) + S
    assert await scripted.run(t0) == ["forward:retry"]
    assert await scripted.run(t0 + timedelta(seconds=180)) == ["forward:retry"]
    assert await scripted.run(t0 + timedelta(seconds=540)) == ["forward:retry"]
    fw = await scripted.forwarding(tx)
    assert at(fw["next_try_at"]) == t0 + timedelta(seconds=660)  # Retry-After, not the backoff (720 s)
    assert await scripted.run(t0 + timedelta(seconds=660)) == ["forward:failed"]  # a 409: no retry helps
    fw = await scripted.forwarding(tx)
    assert [a["outcome"] for a in fw["tries"]] == ["bad_notice", "bad_notice", "server_error", "client_error"]
    assert "SIG-DIGEST" in fw["tries"][0]["error"] and "BamHoSo" in fw["tries"][1]["error"]
    assert fw["state"] == "failed" and "HTTP 409" in fw["last_error"]
    assert scripted.seen == [body] * 4  # the exact bytes, every time
    resp = await scripted.ivan.get(f"/api/v1/dossiers/{tx}/notices/bhxh-tiep-nhan", headers=scripted.keys["unit"])
    assert resp.status == 404  # nothing unverified was kept
    assert await scripted.run(t0 + timedelta(days=1)) == []  # failed for good: no endless retry
    (item,) = await scripted.ivan_app[SERVICES].store.work.of(tx)
    assert item.kind == "forward" and item.state == FAILED and "409" in item.last_error


async def test_a_dossier_refused_upstream_keeps_its_tu_choi(scripted, world):
    body = dossier(world.signer(world.unit), seed=305)
    tx = await scripted.submit(body)
    now = datetime.now(UTC)
    refusal = NoticeSigner(world.server.key, [world.server.cert, *world.server.chain]).sign(NoticeData(
        kind="TU_CHOI", transaction_id="up-0002", received_at=now, issued_at=now, sha256=hashlib.sha256(body).digest(),
    ))  # fmt: skip
    scripted.script.extend([(502, b"", {}), (200, refusal, {})])  # the TU_CHOI replayed after a lost answer
    assert await scripted.run(now + S) == ["forward:retry"]
    assert await scripted.run(now + S + timedelta(seconds=180)) == ["forward:done"]
    fw = await scripted.forwarding(tx)
    assert fw["state"] == "refused_upstream" and [(a["outcome"], a["http_status"]) for a in fw["tries"]] == [
        ("server_error", 502), ("refused", 200)
    ]
    resp = await scripted.ivan.get(f"/api/v1/dossiers/{tx}/notices/bhxh-tu-choi", headers=scripted.keys["unit"])
    assert await resp.read() == refusal
    assert [w.kind for w in await scripted.ivan_app[SERVICES].store.work.of(tx) if w.kind == "forward"] == ["forward"]
    assert "relay" not in [w.kind for w in await scripted.ivan_app[SERVICES].store.work.of(tx)]  # nothing to poll
    # the dossier ends there: refused, not waiting (or overdue) for a KET_QUA that cannot come
    info = await (await scripted.ivan.get(f"/api/v1/dossiers/{tx}", headers=scripted.keys["unit"])).json()
    assert info["state"] == "refused" and info["result_at"] and info["overdue"] is False
    # sent again (corrected or not), the same bytes are received and forwarded again, as after any refusal
    again = await scripted.ivan.post("/api/v1/dossiers", data=body, headers={**XML, **scripted.keys["unit"]})
    assert again.status == 202 and again.headers["X-Transaction-Id"] != tx


async def test_agency_role_forwards_nothing(api, world):
    resp = await api.post("/api/v1/dossiers", data=dossier(world.signer(world.unit), seed=306),
                          headers={**XML, **api.keys["unit"]})  # fmt: skip
    tx = t(notice_of(await resp.read()), "MaGiaoDich")
    assert "forward" not in [w.kind for w in await api.store.work.of(tx)]
    resp = await api.get(f"/api/v1/dossiers/{tx}/forwarding", headers=api.keys["unit"])
    assert resp.status == 404 and (await resp.json())["code"] == "NOT-FORWARDED"


# ---- the parts -------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap():
    first, cap = timedelta(minutes=3), timedelta(hours=1)
    assert [backoff(n, first, cap) / timedelta(minutes=1) for n in range(1, 8)] == [3, 6, 12, 24, 48, 60, 60]
    assert backoff(10_000, first, cap) == cap
    with pytest.raises(ValueError):
        backoff(0, first, cap)


def test_retry_after_seconds_or_http_date():
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert retry_after("120", now) == timedelta(seconds=120)
    assert retry_after("Mon, 02 Mar 2026 08:05:00 GMT", now) == timedelta(minutes=5)
    assert retry_after("Mon, 02 Mar 2026 07:00:00 GMT", now) == timedelta(0)
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_circuit_breaker_opens_probes_and_closes():
    changes = []
    b = CircuitBreaker(3, timedelta(minutes=10), on_change=changes.append)
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    for _ in range(2):
        assert b.allow(t0)
        b.failure(t0)
    assert b.state == CLOSED
    b.failure(t0)
    assert b.state == OPEN and not b.allow(t0 + timedelta(minutes=9))
    assert b.retry_at(t0) == t0 + timedelta(minutes=10)
    assert b.allow(t0 + timedelta(minutes=10)) and b.state == HALF_OPEN  # the probe
    assert not b.allow(t0 + timedelta(minutes=11))  # one probe at a time
    b.failure(t0 + timedelta(minutes=11))  # the probe failed: open again for a cool-down
    assert b.state == OPEN and b.open_until == t0 + timedelta(minutes=21)
    assert b.allow(t0 + timedelta(minutes=21))
    b.success()
    assert b.state == CLOSED and b.consecutive == 0 and b.allow(t0 + timedelta(minutes=21))
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_a_probe_that_never_reports_is_replaced():
    b = CircuitBreaker(1, timedelta(minutes=5))
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    b.failure(t0)
    assert b.allow(t0 + timedelta(minutes=5))  # the probe's process dies here
    assert not b.allow(t0 + timedelta(minutes=6))
    assert b.allow(t0 + timedelta(minutes=10))


def test_retry_after_opens_the_circuit_at_once():
    b = CircuitBreaker(5, timedelta(minutes=10))
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    b.failure(t0, pause=timedelta(seconds=30))
    assert b.state == OPEN and b.retry_at(t0) == t0 + timedelta(seconds=30)
    assert b.allow(t0 + timedelta(seconds=30))


def test_upstream_config_is_checked_for_role_ivan():
    with pytest.raises(ValueError, match="upstream.url"):
        UpstreamConfig().check()
    with pytest.raises(ValueError, match="upstream.api_key"):
        UpstreamConfig(url="https://agency.example").check()
    with pytest.raises(ValueError, match="upstream.target_minutes"):
        UpstreamConfig(url="https://agency.example", api_key="k", target_minutes=0).check()
    with pytest.raises(ValueError, match="notice signer pinned"):  # no fallback to the units' anchors
        UpstreamConfig(url="https://agency.example", api_key="k").check()
    UpstreamConfig(url="https://agency.example", api_key="k", notice_cert="agency.pem").check()
    UpstreamConfig(url="https://agency.example", api_key="k", notice_anchors="agency-ca").check()


async def test_a_refused_upstream_key_is_retried_not_given_up(scripted, world):
    """401/403 most likely mean the upstream key is being rotated: the dossier waits for the fix."""
    body = dossier(world.signer(world.unit), seed=307)
    tx = await scripted.submit(body)
    now = datetime.now(UTC)
    receipt = NoticeSigner(world.server.key, [world.server.cert, *world.server.chain]).sign(NoticeData(
        kind="TIEP_NHAN", transaction_id="up-0003", received_at=now, issued_at=now, so_ho_so="00003/2026/BHXH",
        sha256=hashlib.sha256(body).digest(), due_at=now + timedelta(days=5),
    ))  # fmt: skip
    scripted.script.extend([(401, b'{"code": "AUTH-MISSING"}', {}), (202, receipt, {})])
    assert await scripted.run(now + S) == ["forward:retry"]
    fw = await scripted.forwarding(tx)
    assert fw["state"] == "pending" and [(a["outcome"], a["http_status"]) for a in fw["tries"]] == [("client_error", 401)]
    assert "api_key" in fw["last_error"]
    assert await scripted.run(now + S + timedelta(seconds=180)) == ["forward:done"]
    assert (await scripted.forwarding(tx))["state"] == "forwarded"
