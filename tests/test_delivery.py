"""Result delivery over real HTTP, on SQLite and PostgreSQL: callback registration, every notice
POSTed byte for byte to the callback of its unit or I-VAN, retries with a capped doubling
backoff, give-up, the circuit breaker per host, attempts visible in the API (and to no one
else), e-mail of a KET_QUA to a registered unit (outbox file; SMTP over the wire), and work
killed mid-flight delivered once after its lease. Time is the tests' clock (run_due(now=...))."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from interchange.api.http import SERVICES
from interchange.delivery.callback import UrlRefused, check_url, check_url_shape, post_notice
from interchange.delivery.mail import OutboxSender, SmtpSender, build_message
from interchange.delivery.work import DELIVERY_KINDS
from interchange.jobs.runner import RetryAt, WorkRunner
from interchange.kinds import NOTICE_RESULT
from interchange.notices.notice import NoticeData
from interchange.server import WORK
from interchange.store.deliveries import DELIVERED, DELIVERY_TARGET, FAILED, PENDING
from interchange.store.types import ACCEPTED, DONE, QUEUED, Dossier, Scope, Settlement
from tests.helpers import (
    CONTACT,
    OTHER_UNIT,
    UNIT,
    dossier,
    new_dossier,
    notice_for,
    notice_of,
    post,
    registration,
    t,
)

T = timedelta(seconds=1)


@pytest.fixture
def cfg(cfg):
    cfg.jobs.interval_seconds = 0  # the tests run the work, on their own clock
    d = cfg.delivery
    d.allow_private_urls = True  # the receivers listen on loopback
    d.first_retry_seconds, d.max_retry_seconds = 180, 600
    d.give_up_hours, d.max_attempts = 24, 40
    d.breaker_failures, d.breaker_cooldown_seconds = 50, 300
    d.timeout_seconds = 0.5
    return cfg


class Receiver:
    """A callback receiver: records every request, answers with the queued statuses (then 200)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.retry_after: list[str | None] = []  # Retry-After of the next answers
        self.delay = 0.0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        wait = self.retry_after.pop(0) if self.retry_after else None
        return web.Response(status=status, text="ok" if status < 300 else "receiver is down for maintenance",
                            headers={"Retry-After": wait} if wait else None)  # fmt: skip


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    server = await aiohttp_server(app)
    r.url = str(server.make_url("/hook"))
    return r


async def subscribe(api, url: str, key: str = "unit") -> int:
    resp = await api.put("/api/v1/callback", json={"url": url}, headers=api.keys[key])
    assert resp.status in (200, 201), await resp.text()
    return resp.status


async def deliver(api, now: datetime):
    """Run the due delivery work only (whatever other work the server has), with the app's handler."""
    handlers = {k: api.app[WORK].handlers[k] for k in DELIVERY_KINDS}
    return await WorkRunner(api.store, handlers, worker="test").run_due(now)


async def submit(api, world, seed: int, key: str = "unit") -> str:
    status, body, _ = await post(api, dossier(world.signer(world.unit), seed=seed), key=key)
    assert status == 202, body
    return t(notice_of(body), "MaGiaoDich")


async def deliveries(api, tx: str, key: str = "unit") -> list[dict]:
    resp = await api.get(f"/api/v1/dossiers/{tx}/deliveries", headers=api.keys[key])
    assert resp.status == 200, await resp.text()
    return (await resp.json())["deliveries"]


async def notice(api, tx: str, kind: str) -> bytes:
    resp = await api.get(f"/api/v1/dossiers/{tx}/notices/{kind}", headers=api.keys["auditor"])
    assert resp.status == 200
    return await resp.read()


# ---- registration of a callback URL --------------------------------------------------------


async def test_callback_registration(api, receiver):
    h = api.keys["unit"]
    assert (await api.get("/api/v1/callback", headers=h)).status == 404
    assert await subscribe(api, receiver.url) == 201
    assert await subscribe(api, receiver.url + "?v=2") == 200  # replaced: one URL per unit
    got = await (await api.get("/api/v1/callback", headers=h)).json()
    assert got["url"] == receiver.url + "?v=2" and got["owner"] == f"mst:{UNIT.mst}"
    assert (await api.get("/api/v1/callback", headers=api.keys["other"])).status == 404  # per unit
    for bad, words in [
        ("ftp://example.org/x", "https:// or http://"),
        ("https://user:pw@example.org/x", "credentials"),
        ("https://example.org/x#frag", "fragment"),
        ("/relative", "https:// or http://"),
        ("https://does-not-exist.invalid/hook", "special-use name"),  # no DNS lookup at registration
        (42, "non-empty string"),
    ]:
        resp = await api.put("/api/v1/callback", json={"url": bad}, headers=h)
        body = await resp.json()
        assert (resp.status, body["code"]) == (422, "CALLBACK-URL"), (bad, body)
        assert words in body["message"], (bad, body)
    resp = await api.put("/api/v1/callback", data=b"not json", headers=h)
    assert resp.status == 415 and (await resp.json())["code"] == "CONTENT-TYPE"
    resp = await api.put("/api/v1/callback", data=b"not json", headers={**h, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["code"] == "BAD-JSON"
    for role in ("auditor", "admin"):
        resp = await api.put("/api/v1/callback", json={"url": receiver.url}, headers=api.keys[role])
        assert resp.status == 403 and "submitter" in (await resp.json())["message"]
    assert (await api.delete("/api/v1/callback", headers=h)).status == 204
    assert (await api.delete("/api/v1/callback", headers=h)).status == 404
    spec = await (await api.get("/api/openapi.json")).json()
    assert set(spec["paths"]["/api/v1/callback"]) == {"put", "get", "delete"}
    assert "get" in spec["paths"]["/api/v1/dossiers/{id}/deliveries"]
    # the change is in the audit log
    kinds = [e.kind for e in await api.store.audit.entries()]
    assert kinds.count("callback.set") == 2 and kinds.count("callback.deleted") == 1


async def test_private_addresses_are_refused_unless_allowed(api, receiver):
    api.app[SERVICES].delivery.allow_private_urls = False
    for url in (receiver.url, "http://10.1.2.3/hook", "http://[::1]:8080/x", "http://169.254.169.254/latest"):
        resp = await api.put("/api/v1/callback", json={"url": url}, headers=api.keys["unit"])
        body = await resp.json()
        assert resp.status == 422 and "not a public address" in body["message"], (url, body)
    with pytest.raises(UrlRefused, match="not a public address"):
        await check_url("http://localhost/x", allow_private=False)
    assert check_url_shape("https://bhxh.example.vn/cb?t=1", allow_private=False) == "https://bhxh.example.vn/cb?t=1"
    # at send time a name is checked by what it resolves to then
    port = receiver.url.split(":")[2].split("/")[0]
    answer = await post_notice(f"http://localhost:{port}/hook", b"<x/>", {}, timeout=1, allow_private=False)
    assert answer.status is None and "not a public address" in answer.error and receiver.got == []
    answer = await post_notice(f"http://localhost:{port}/hook", b"<x/>", {}, timeout=1, allow_private=True)
    assert (answer.status, answer.error, receiver.got[0][1]) == (200, None, b"<x/>")


async def test_a_changed_url_takes_the_waiting_retries_and_a_removed_one_skips_them(api, world, receiver):
    await subscribe(api, f"{receiver.url}?old")
    tx = await submit(api, world, seed=16)
    receiver.statuses = [500]
    now = datetime.now(UTC) + T
    await deliver(api, now)
    await subscribe(api, receiver.url)  # corrected
    (d,) = await deliveries(api, tx)
    assert d["target"] == receiver.url and d["state"] == PENDING
    await deliver(api, datetime.fromisoformat(d["next_at"]))
    assert [h["X-Delivery-Attempt"] for h, _ in receiver.got] == ["1", "2"]
    assert (await deliveries(api, tx))[0]["state"] == DELIVERED
    receiver.statuses = [500]
    tx2 = await submit(api, world, seed=17)
    await deliver(api, datetime.now(UTC) + T)
    assert (await api.delete("/api/v1/callback", headers=api.keys["unit"])).status == 204
    (d2,) = await deliveries(api, tx2)
    assert (d2["state"], d2["last_error"]) == ("skipped", "the callback URL was removed")
    sent = len(receiver.got)
    (ran,) = await deliver(api, datetime.now(UTC) + timedelta(hours=1))  # its work ends, sending nothing
    assert ran.outcome == "done" and len(receiver.got) == sent
    assert (await deliveries(api, tx))[0]["state"] == DELIVERED  # delivered ones stay


# ---- delivery of the notices -----------------------------------------------------------------


async def test_every_notice_after_the_registration_is_posted_as_stored(api, world, receiver):
    before = await submit(api, world, seed=1)  # before any registration: not delivered
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=2)
    ran = await deliver(api, datetime.now(UTC) + T)
    assert [r.outcome for r in ran] == ["done"]
    ((headers, body),) = receiver.got
    assert body == await notice(api, tx, "tiep-nhan")  # byte for byte the signed notice
    assert headers["Content-Type"].startswith("application/xml")
    assert headers["X-Transaction-Id"] == tx and headers["X-Notice-Kind"] == "tiep-nhan"
    assert headers["X-Delivery-Id"] == f"{tx}.tiep-nhan.mst" and headers["X-Delivery-Attempt"] == "1"
    (d,) = await deliveries(api, tx)
    assert (d["state"], d["channel"], d["target"], d["attempt_count"]) == (DELIVERED, "callback", receiver.url, 1)
    (a,) = d["attempts"]
    assert (a["n"], a["status"], a["error"]) == (1, 200, None) and a["duration_ms"] >= 0
    assert d["delivered_at"] == a["at"]
    assert await deliveries(api, before) == []
    assert await deliver(api, datetime.now(UTC) + 10 * T) == []  # nothing left
    metrics = (await (await api.get("/metrics")).read()).decode()
    assert 'interchange_deliveries_total{channel="callback",outcome="delivered"} 1.0' in metrics
    assert 'interchange_delivery_seconds_count{channel="callback"} 1.0' in metrics


async def test_an_ivan_and_its_client_unit_both_get_the_notices(api, world, receiver, aiohttp_server):
    unit_receiver = Receiver()
    app = web.Application()
    app.router.add_post("/unit", unit_receiver.handle)
    unit_receiver.url = str((await aiohttp_server(app)).make_url("/unit"))
    await subscribe(api, receiver.url, key="ivan")
    await subscribe(api, unit_receiver.url, key="unit")
    tx = await submit(api, world, seed=3, key="ivan")
    # a refused dossier goes to its sender only (the MST it names is not proven)
    status, refused, _ = await post(api, b"<Hoso><broken", key="ivan")
    assert status == 422
    tx_refused = t(notice_of(refused), "MaGiaoDich")
    await deliver(api, datetime.now(UTC) + T)
    assert sorted(h["X-Delivery-Id"] for h, _ in receiver.got) == sorted(
        [f"{tx}.tiep-nhan.ivan", f"{tx_refused}.tu-choi.ivan"]
    )
    ((h, body),) = unit_receiver.got
    assert h["X-Delivery-Id"] == f"{tx}.tiep-nhan.mst" and body == await notice(api, tx, "tiep-nhan")
    assert dict((h["X-Notice-Kind"], b) for h, b in receiver.got)["tu-choi"] == await notice(api, tx_refused, "tu-choi")


async def test_a_failing_receiver_is_retried_with_capped_doubling_backoff_until_it_heals(api, world, receiver):
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=4)
    receiver.statuses = [500, 503, 502, 500, 500]
    now = datetime.now(UTC) + T
    waits = []
    for _ in range(5):
        (ran,) = await deliver(api, now)
        assert ran.outcome == "retry"
        (d,) = await deliveries(api, tx)
        assert d["state"] == PENDING
        next_at = datetime.fromisoformat(d["next_at"])
        waits.append((next_at - now).total_seconds())
        assert await deliver(api, next_at - T) == []  # not before its time
        now = next_at
    assert waits == [180, 360, 600, 600, 600]  # 3 min doubling, capped (here at 10 min)
    (ran,) = await deliver(api, now)
    assert ran.outcome == "done"
    (d,) = await deliveries(api, tx)
    assert d["state"] == DELIVERED and d["next_at"] is None and d["last_error"] is None
    assert [(a["n"], a["status"]) for a in d["attempts"]] == [(1, 500), (2, 503), (3, 502), (4, 500), (5, 500), (6, 200)]
    assert "HTTP 503" in d["attempts"][1]["error"] and "maintenance" in d["attempts"][1]["error"]
    assert [h["X-Delivery-Attempt"] for h, _ in receiver.got] == ["1", "2", "3", "4", "5", "6"]
    assert {h["X-Delivery-Id"] for h, _ in receiver.got} == {f"{tx}.tiep-nhan.mst"}  # receivers dedupe by it
    assert {b for _, b in receiver.got} == {await notice(api, tx, "tiep-nhan")}


async def test_a_receiver_asking_to_come_back_is_tried_again_when_it_says(api, world, receiver):
    """A 503 or 429 with Retry-After (seconds or an HTTP date) sets the next attempt, within
    [1 s, max_retry_seconds], and does not count against the host's circuit; elsewhere it is ignored."""
    cfg = api.app[SERVICES].delivery
    cfg.breaker_failures = 2
    api.app[WORK].handlers[DELIVERY_KINDS[0]].breaker.failures = 2
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=3)
    now = datetime.now(UTC).replace(microsecond=0) + T
    receiver.statuses = [503, 429, 503, 503, 500]
    receiver.retry_after = ["5", format_datetime(now + timedelta(seconds=47), usegmt=True), "0", "86400", "7"]
    waits = []
    for _ in range(5):
        (ran,) = await deliver(api, now)
        assert ran.outcome == "retry"  # never deferred by the circuit: the 503/429 with Retry-After were not failures
        (d,) = await deliveries(api, tx)
        next_at = datetime.fromisoformat(d["next_at"])
        waits.append((next_at - now).total_seconds())
        now = next_at
    # 5 s; the HTTP date 47 s after the first try (its attempt came 5 s later); 0 → 1 s;
    # a day → max_retry_seconds (600); a 500's Retry-After is not a request to come back: backoff
    assert waits == [5, 42, 1, 600, 600]
    (ran,) = await deliver(api, now)
    assert ran.outcome == "done" and (await deliveries(api, tx))[0]["state"] == DELIVERED


async def test_timeouts_and_refused_connections_are_failed_attempts(api, world, receiver, unused_tcp_port):
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=5)
    receiver.delay = 0.8  # over the 0.5 s timeout
    now = datetime.now(UTC) + T
    await deliver(api, now)
    (d,) = await deliveries(api, tx)
    assert d["attempts"][0]["status"] is None and d["attempts"][0]["error"].startswith("timeout")
    await subscribe(api, f"http://127.0.0.1:{unused_tcp_port}/nobody")
    tx2 = await submit(api, world, seed=6)
    await deliver(api, datetime.now(UTC) + T)
    (d2,) = await deliveries(api, tx2)
    assert d2["attempts"][0]["error"].startswith("connection failed")
    # the SSRF check holds at send time too: switched off, the stored loopback URL is refused
    receiver.delay = 0
    api.app[SERVICES].delivery.allow_private_urls = False
    await deliver(api, datetime.fromisoformat(d["next_at"]))
    (d,) = await deliveries(api, tx)
    assert "not a public address" in d["attempts"][1]["error"] and len(receiver.got) == 1


async def test_a_delivery_is_given_up_after_its_attempts_or_its_time(api, world, receiver):
    cfg = api.app[SERVICES].delivery
    cfg.max_attempts = 3
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=7)
    receiver.statuses = [500] * 10
    now = datetime.now(UTC) + T
    outcomes = []
    for _ in range(3):
        outcomes += [r.outcome for r in await deliver(api, now)]
        now += timedelta(hours=1)
    assert outcomes == ["retry", "retry", "done"]  # the work is done; the delivery failed
    (d,) = await deliveries(api, tx)
    assert (d["state"], d["attempt_count"], d["next_at"]) == (FAILED, 3, None)
    assert await deliver(api, now + timedelta(days=2)) == []
    (item,) = [w for w in await api.store.work.of(tx) if w.kind == "deliver:tiep-nhan:mst"]
    assert item.state == DONE

    cfg.max_attempts, cfg.give_up_hours = 40, 0.1  # 6 minutes: the second retry (at +9 min) is past it
    tx = await submit(api, world, seed=8)
    now = datetime.now(UTC) + T
    await deliver(api, now)
    await deliver(api, now + timedelta(minutes=3))
    (d,) = await deliveries(api, tx)
    assert (d["state"], d["attempt_count"]) == (FAILED, 2)
    metrics = (await (await api.get("/metrics")).read()).decode()
    assert 'interchange_deliveries_total{channel="callback",outcome="failed"} 2.0' in metrics


async def test_the_circuit_breaker_holds_attempts_to_a_failing_host_then_tries_one(api, world, receiver):
    cfg = api.app[SERVICES].delivery
    cfg.breaker_failures, cfg.breaker_cooldown_seconds = 2, 300
    api.app[WORK].handlers[DELIVERY_KINDS[0]].breaker.failures = 2
    await subscribe(api, receiver.url)
    receiver.statuses = [500] * 3
    a, b = await submit(api, world, seed=9), await submit(api, world, seed=10)
    now = datetime.now(UTC) + T
    assert [r.outcome for r in await deliver(api, now)] == ["retry", "retry"]  # 2 failures: the circuit opens
    c = await submit(api, world, seed=11)
    (ran,) = await deliver(api, now + T)
    assert ran.outcome == "retry" and len(receiver.got) == 2  # c waits: no request, no attempt
    (dc,) = await deliveries(api, c)
    assert dc["attempt_count"] == 0 and dc["attempts"] == [] and "circuit open" in dc["last_error"]
    assert datetime.fromisoformat(dc["next_at"]) == now + timedelta(seconds=300)
    # a's and b's retries (at +180 s) fall in the cool-down: they wait too
    assert [r.outcome for r in await deliver(api, now + timedelta(seconds=180))] == ["retry", "retry"]
    assert len(receiver.got) == 2
    # after the cool-down one trial goes; it fails: open again, the others wait
    ran = await deliver(api, now + timedelta(seconds=300))
    assert len(ran) == 3 and len(receiver.got) == 3
    tried = [d for tx in (a, b, c) for d in await deliveries(api, tx) if len(d["attempts"]) == (2 if tx != c else 1)]
    assert len(tried) == 1
    # healed: the next trial succeeds and closes the circuit; the rest follow
    later = now + timedelta(seconds=700)
    await deliver(api, later)
    await deliver(api, later + timedelta(minutes=30))
    assert [(await deliveries(api, tx))[0]["state"] for tx in (a, b, c)] == [DELIVERED] * 3
    assert len(receiver.got) == 6  # 2 failures, 1 failed trial, 1 good trial, then the 2 others
    metrics = (await (await api.get("/metrics")).read()).decode()
    assert 'interchange_deliveries_total{channel="callback",outcome="deferred"}' in metrics


async def test_deliveries_are_seen_only_where_the_dossier_is(api, world, receiver):
    await subscribe(api, receiver.url, key="ivan")
    tx = await submit(api, world, seed=12, key="ivan")
    await deliver(api, datetime.now(UTC) + T)
    resp = await api.get(f"/api/v1/dossiers/{tx}/deliveries", headers=api.keys["other"])
    assert resp.status == 404
    resp = await api.get(f"/api/v1/dossiers/{tx}/deliveries", headers=api.keys["other_ivan"])
    assert resp.status == 404
    assert (await api.get(f"/api/v1/dossiers/{tx}/deliveries")).status == 401
    (mine,) = await deliveries(api, tx, key="ivan")
    assert mine["target"] == receiver.url
    (theirs,) = await deliveries(api, tx, key="unit")  # the unit sees the delivery, not the I-VAN's URL
    assert theirs["state"] == DELIVERED and theirs["target"] is None
    (audited,) = await deliveries(api, tx, key="auditor")
    assert audited["target"] == receiver.url


# ---- results and e-mail ------------------------------------------------------------------------


async def settle_accepted(api, tx: str) -> bytes:
    """Give a dossier its KET_QUA the way the result work does (Store.results.settle)."""
    services = api.app[SERVICES]
    now = datetime.now(UTC)

    async def decide(d, unit):
        xml = services.signer.sign(NoticeData(
            kind=NOTICE_RESULT, transaction_id=d.id, received_at=d.received_at, issued_at=now, sha256=d.sha256,
            so_ho_so=d.so_ho_so, procedure=d.procedure, mst=d.unit_mst, result="CHAP_NHAN",
        ))  # fmt: skip
        return Settlement(state=ACCEPTED, notice=xml, problems=[])

    settled = await api.store.results.settle(tx, decide, now=now)
    return settled.notice


async def test_a_registered_unit_gets_its_results_by_email_in_the_outbox(api, world, receiver, cfg):
    status, body, _ = await post(api, registration(world.signer(world.unit)))
    assert status == 202
    reg = t(notice_of(body), "MaGiaoDich")
    await api.app[WORK].run_due(datetime.now(UTC) + T)  # the registration's KET_QUA: the unit is active
    await subscribe(api, receiver.url, key="ivan")
    tx = await submit(api, world, seed=13, key="ivan")
    ket_qua = await settle_accepted(api, tx)
    await deliver(api, datetime.now(UTC) + T)

    outbox = cfg.data_path / "outbox"
    files = sorted(p.name for p in outbox.iterdir())
    assert files == sorted([f"{reg}.ket-qua.email.eml", f"{tx}.ket-qua.email.eml"])  # its registration too
    msg = email.message_from_bytes((outbox / f"{tx}.ket-qua.email.eml").read_bytes(), policy=email.policy.default)
    assert msg["To"] == CONTACT["Email"] and msg["X-Delivery-Id"] == f"{tx}.ket-qua.email"
    assert msg["Message-ID"] == f"<{tx}.ket-qua.email@localhost>"
    assert "CHẤP NHẬN" in msg["Subject"] and "accepted" in msg["Subject"]
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/xml" and attachment.get_content() == ket_qua
    assert tx in msg.get_body(("plain",)).get_content()

    made = {tuple(d["id"].split(".")[1:]): d for d in await deliveries(api, tx, key="auditor")}
    assert set(made) == {("tiep-nhan", "ivan"), ("ket-qua", "ivan"), ("ket-qua", "email")}  # the unit has no callback
    mail = made[("ket-qua", "email")]
    assert (mail["state"], mail["channel"], mail["target"], mail["recipient"]) == (
        DELIVERED, "email", CONTACT["Email"], f"mst:{UNIT.mst}"
    )
    posted = {h["X-Notice-Kind"]: body for h, body in receiver.got}  # run concurrently: any order
    assert len(receiver.got) == 2 and posted["ket-qua"] == ket_qua and posted["tiep-nhan"] == await notice(api, tx, "tiep-nhan")
    # a unit that is not registered gets no e-mail
    status, body, _ = await post(api, dossier(world.signer(world.other_unit), unit=OTHER_UNIT, seed=14), key="other")
    other = t(notice_of(body), "MaGiaoDich")
    await settle_accepted(api, other)
    assert await deliveries(api, other, key="other") == []


async def test_email_switched_off_is_skipped_and_a_failing_mailer_is_retried(api, world):
    status, body, _ = await post(api, registration(world.signer(world.unit)))
    reg = t(notice_of(body), "MaGiaoDich")
    handler = api.app[WORK].handlers["deliver:ket-qua:email"]

    class Broken:
        async def send(self, message, name):
            raise ConnectionRefusedError("SMTP server at mail.example.vn:587 refused the connection")

    handler.mailer = Broken()
    await api.app[WORK].run_due(datetime.now(UTC) + T)
    now = datetime.now(UTC) + 2 * T
    await deliver(api, now)
    (d,) = await deliveries(api, reg)
    assert d["state"] == PENDING and "refused the connection" in d["attempts"][0]["error"]
    handler.mailer = None  # [delivery] email_sender = "off"
    await deliver(api, datetime.fromisoformat(d["next_at"]))
    (d,) = await deliveries(api, reg)
    assert d["state"] == "skipped" and "email_sender = off" in d["last_error"]


async def test_smtp_sender_over_the_wire(world, unused_tcp_port):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
            return "250 OK"

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    try:
        sender = SmtpSender("127.0.0.1", unused_tcp_port, starttls=False, user="", password="", timeout=5)
        msg = build_message(delivery_id="x.ket-qua.email", mail_from="bhxh@example.vn", to="ketoan@mauviet.vn",
                            dossier=a_result(), notice=b"<ThongBao/>", now=datetime.now(UTC))  # fmt: skip
        await sender.send(msg, "x.ket-qua.email")
    finally:
        controller.stop()
    ((mail_from, rcpt, content),) = sink.messages
    assert (mail_from, rcpt) == ("bhxh@example.vn", ["ketoan@mauviet.vn"])
    got = email.message_from_bytes(content, policy=email.policy.default)
    assert got["Message-ID"] == "<x.ket-qua.email@example.vn>"
    assert next(got.iter_attachments()).get_content() == b"<ThongBao/>"
    # nobody listening: the sender raises (the handler records a failed attempt)
    with pytest.raises(OSError):
        await SmtpSender("127.0.0.1", unused_tcp_port, starttls=False, user="", password="", timeout=1).send(msg, "y")


def a_result() -> Dossier:
    return Dossier(
        id="d" * 32, so_ho_so="00001/2026/TEST", state=ACCEPTED, owner=f"mst:{UNIT.mst}", submitter_key_id="k",
        sha256=b"\0" * 32, size=10, received_at=datetime.now(UTC), unit_mst=UNIT.mst, unit_code=None,
        unit_name=None, ivan_code=None, procedure="600", period="01/2026", due_at=None, idempotency_key=None,
        problems=[], layers={}, signers=[], facts={},
    )  # fmt: skip


async def test_outbox_replaces_a_resent_message(tmp_path):
    sender = OutboxSender(tmp_path / "outbox")
    msg = email.message.EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("one")
    await sender.send(msg, "d1")
    msg.set_content("two")
    await sender.send(msg, "d1")
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["d1.eml"]
    assert b"two" in (tmp_path / "outbox" / "d1.eml").read_bytes()


# ---- crashes -------------------------------------------------------------------------------------


async def test_work_claimed_by_a_killed_process_is_delivered_once_after_its_lease(api, world, receiver):
    await subscribe(api, receiver.url)
    tx = await submit(api, world, seed=15)
    now = datetime.now(UTC) + T
    lease = timedelta(minutes=2)
    (item,) = await api.store.work.claim("killed", now, limit=10, lease=lease, kinds=DELIVERY_KINDS)
    assert await deliver(api, now + T) == []  # still leased to the dead process
    (ran,) = await deliver(api, now + lease + T)
    assert ran.outcome == "done" and len(receiver.got) == 1
    # the dead process's handler, had it woken up, sends nothing more: the attempt is recorded
    handler = api.app[WORK].handlers[item.kind]
    await handler(item, now + lease + 2 * T)
    assert len(receiver.got) == 1
    (d,) = await deliveries(api, tx)
    assert (d["state"], d["attempt_count"]) == (DELIVERED, 1)


async def test_a_delivery_is_made_in_the_notices_transaction(store, now):
    """Store-level: no subscription, no delivery rows (and no work); a rolled-back receipt leaves none."""
    saved = await store.receipts.save(new_dossier(b"<Hoso n='1'/>"), notice_for)
    assert await store.deliveries.of(saved.dossier.id) == []
    await store.deliveries.subscribe(saved.dossier.owner, "https://cb.example.vn/hook", "k1", now)
    saved = await store.receipts.save(new_dossier(b"<Hoso n='2'/>"), notice_for)
    ((d, attempts),) = await store.deliveries.of(saved.dossier.id)
    assert (d.state, d.target, attempts) == (PENDING, "https://cb.example.vn/hook", [])
    (item,) = [w for w in await store.work.of(saved.dossier.id) if w.kind.startswith("deliver:")]
    assert item.state == QUEUED and item.not_before == d.created_at == saved.dossier.received_at
    assert item.due_at == d.created_at + DELIVERY_TARGET and item.kind == "deliver:tiep-nhan:mst"
    assert d.id == f"{saved.dossier.id}.tiep-nhan.mst" and d.recipient == saved.dossier.owner
    assert (await store.dossiers.get(saved.dossier.id, Scope(all=True))) is not None


# ---- the runner's retry time ----------------------------------------------------------------------


async def test_a_handler_may_set_its_own_retry_time_and_attempt_limit(store, now):
    saved = await store.receipts.save(new_dossier(), notice_for)
    await store.work.enqueue(saved.dossier.id, "own-schedule", now, now=now)
    whens = [now + timedelta(hours=h) for h in (1, 5, 6, 7, 8, 9, 10, 11, 12)]

    class Handler:
        max_attempts = 100  # beyond the runner's 2

        def __init__(self):
            self.calls = 0

        async def __call__(self, item, at):
            self.calls += 1
            if self.calls <= len(whens) - 1:
                raise RetryAt(whens[self.calls - 1], f"not yet ({self.calls})")

    handler = Handler()
    runner = WorkRunner(store, {"own-schedule": handler}, worker="w", max_attempts=2)
    at = now
    for n in range(len(whens)):
        (ran,) = await runner.run_due(at)
        if n < len(whens) - 1:
            assert ran.outcome == "retry" and ran.error == f"not yet ({n + 1})"
            (item,) = await store.work.of(saved.dossier.id)
            assert item.not_before == whens[n] and item.state == QUEUED
            assert await runner.run_due(whens[n] - T) == []
            at = whens[n]
    assert ran.outcome == "done" and handler.calls == len(whens)


def test_the_email_sender_comes_from_the_config(cfg):
    from interchange.delivery.mail import make_sender

    assert isinstance(make_sender(cfg.delivery, cfg.data_path), OutboxSender) and make_sender(cfg.delivery, cfg.data_path).folder == cfg.data_path / "outbox"
    cfg.delivery.email_sender = "smtp"
    cfg.delivery.smtp_host, cfg.delivery.smtp_port = "mail.example.vn", 2525
    smtp = make_sender(cfg.delivery, cfg.data_path)
    assert isinstance(smtp, SmtpSender) and (smtp.host, smtp.port, smtp.starttls) == ("mail.example.vn", 2525, True)
    cfg.delivery.email_sender = "off"
    assert make_sender(cfg.delivery, cfg.data_path) is None
    cfg.delivery.email_sender = "pigeon"
    with pytest.raises(ValueError, match="outbox, smtp or off, not 'pigeon'"):
        make_sender(cfg.delivery, cfg.data_path)
