"""Crash tests: a real server SIGKILLed in the middle of its work, restarted on the same
database (SQLite, and PostgreSQL in a schema of its own: `store_url`).

What a crash must not break (SPEC §5, README "Storage", "Work after receipt"):
- every dossier answered 202 (TIEP_NHAN) or 422 (TU_CHOI) is stored with its exact bytes and
  the exact notice that was answered;
- sending again whatever was sent (answered or not) gives one dossier per content: a 200 replay
  with the same notice and transaction, never a second dossier;
- every received dossier gets exactly one KET_QUA after the restart (work claimed by the dead
  server is claimed again when its lease runs out): one `ket-qua` notice, one `notice.stored`
  ket-qua and one `dossier.settled` audit entry each; a KET_QUA given before the crash is kept
  as it was, never given again; and the audit chain still verifies.

Refused dossiers are sent with an Idempotency-Key: without one, a refused dossier sent again is
judged again and stored again by design (README "Storage"), which is not a crash effect.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from interchange.devkit import samples
from interchange.kinds import WORK_JUDGE
from interchange.store import Store
from interchange.trust.dossier_signing import sign_envelope
from tests.serverproc import Answer, ServerProc, Site, make_site, on_private_loop

pytestmark = pytest.mark.usefixtures("clean_environ")

RECEIVED = 48  # signed dossiers: 202 TIEP_NHAN, then a KET_QUA each
REFUSED = 12  # unsigned dossiers: 422 TU_CHOI (SIG-MISSING), each with an Idempotency-Key
THREADS = 8
KILL_AFTER = 20  # answers before the SIGKILL (the other threads are mid-request then)
RESULT_DEADLINE = 45.0  # seconds after the restart for every KET_QUA (the lease is 8 s)

NOTICE_KIND = re.compile(rb"<(?:\w+:)?LoaiThongBao>(\w+)</")


@dataclass
class Sent:
    """One content and every answer to it, in order (a lost one included)."""

    n: int
    body: bytes
    idempotency_key: str | None
    signed: bool
    answers: list[Answer] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}

    def first_notice(self) -> Answer:
        """The first answer that carried a notice (202, 422 or 200)."""
        return next(a for a in self.answers if a.status in (200, 202, 422))

    @property
    def tx(self) -> str:
        return self.first_notice().headers["x-transaction-id"]


def dossiers_to_send(site: Site) -> list[Sent]:
    signer = site.signer()
    out = []
    for n in range(RECEIVED + REFUSED):
        unsigned = samples.dossier_600(rows=2, seed=1000 + n)
        if n < RECEIVED:
            key = f"kill-{n}" if n % 3 == 0 else None  # a third of them with an Idempotency-Key
            out.append(Sent(n, sign_envelope(unsigned, signer), key, True))
        else:
            out.append(Sent(n, unsigned, f"kill-{n}", False))
    assert len({s.sha256 for s in out}) == len(out)
    return out


def post(server: ServerProc, site: Site, sent: Sent) -> Answer:
    answer = server.request(
        "POST", "/api/v1/dossiers", body=sent.body, token=site.submitter, headers=sent.headers
    )
    sent.answers.append(answer)
    return answer


def send_all(server: ServerProc, site: Site, dossiers: list[Sent], *, kill_after: int | None = None) -> None:
    """POST every dossier from THREADS threads; SIGKILL the server at the `kill_after`-th answer."""
    answered = 0
    lock = threading.Lock()

    def one(sent: Sent) -> None:
        nonlocal answered
        if post(server, site, sent).lost:
            return
        with lock:
            answered += 1
            crash = answered == kill_after
        if crash:
            server.kill()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, dossiers))


def resend_all(server: ServerProc, site: Site, dossiers: list[Sent]) -> list[Answer]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda s: post(server, site, s), dossiers))


def all_dossiers(server: ServerProc, site: Site) -> list[dict]:
    """Every stored dossier, as the auditor lists them (page by page)."""
    items, cursor = [], None
    while True:
        path = "/api/v1/dossiers?limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        answer = server.get(path, site.auditor)
        assert answer.status == 200, answer
        page = json.loads(answer.body)
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def kind_of(notice: bytes) -> str:
    found = NOTICE_KIND.search(notice)
    return found.group(1).decode() if found else "?"


def check_stored_as_answered(server: ServerProc, site: Site, sent: Sent, first: Answer) -> None:
    """`first` (a 202 or 422) is what the server stored: the exact bytes and the exact notice."""
    tx = first.headers["x-transaction-id"]
    original = server.get(f"/api/v1/dossiers/{tx}/original", site.auditor)
    assert original.status == 200 and original.body == sent.body, (sent.n, tx, original.status)
    slug = "tiep-nhan" if first.status == 202 else "tu-choi"
    notice = server.get(f"/api/v1/dossiers/{tx}/notices/{slug}", site.auditor)
    assert notice.status == 200 and notice.body == first.body, (sent.n, tx, slug, notice.status)


def check_one_dossier_per_content(server: ServerProc, site: Site, dossiers: list[Sent]) -> None:
    items = all_dossiers(server, site)
    per_content = Counter(item["sha256"] for item in items)
    doubles = {sha: count for sha, count in per_content.items() if count > 1}
    assert not doubles, f"contents stored more than once: {doubles}"
    assert sorted(per_content) == sorted(s.sha256 for s in dossiers)
    assert {item["sha256"]: item["id"] for item in items} == {s.sha256: s.tx for s in dossiers}


def wait_for_results(server: ServerProc, site: Site, deadline: float) -> None:
    """Until no dossier is left in state `received` (each has its KET_QUA), or fail at `deadline`."""
    while True:
        pending = [i["id"] for i in all_dossiers(server, site) if i["state"] == "received"]
        if not pending:
            return
        assert time.monotonic() < deadline, f"{len(pending)} dossiers still without a result: {pending}"
        time.sleep(0.5)


def check_results(
    server: ServerProc, site: Site, dossiers: list[Sent]
) -> tuple[dict[str, bytes], dict[str, int]]:
    """Every received dossier has one KET_QUA and its judging work is done; refused ones have
    none. Returns the KET_QUA of each received dossier, and how many tries its work took."""
    results, attempts = {}, {}
    for s in dossiers:
        result = server.get(f"/api/v1/dossiers/{s.tx}/notices/ket-qua", site.auditor)
        if not s.signed:
            assert result.status == 404, (s.n, s.tx, result.status)
            continue
        assert result.status == 200 and kind_of(result.body) == "KET_QUA", (s.n, s.tx, result.status)
        results[s.tx] = result.body
        work = json.loads(server.get(f"/api/v1/dossiers/{s.tx}", site.auditor).body)["work"]
        judged = [w for w in work if w["kind"] == WORK_JUDGE]
        assert [w["state"] for w in judged] == ["done"], (s.n, work)
        attempts[s.tx] = judged[0]["attempts"]
    return results, attempts


def check_audit_log(store_url: str, dossiers: list[Sent]) -> None:
    """One receipt entry per dossier, one KET_QUA and one settlement per received dossier, one
    replay entry per 200 answer; the hash chain verifies across the crashes."""

    async def read():
        store = await Store.open(store_url)
        try:
            entries, after = [], 0
            while page := await store.audit.entries(after=after):
                entries += page
                after = page[-1].seq
            return entries, await store.audit.verify()
        finally:
            await store.close()

    entries, report = on_private_loop(read())
    assert report.ok, report.as_dict()
    by_kind: dict[str, Counter] = {}
    for e in entries:
        label = e.kind + (f":{e.data.get('kind')}" if e.kind == "notice.stored" else "")
        by_kind.setdefault(label, Counter())[e.dossier_id] += 1
    received = Counter({s.tx: 1 for s in dossiers if s.signed})
    assert by_kind.get("dossier.received") == received
    assert by_kind.get("dossier.refused") == Counter({s.tx: 1 for s in dossiers if not s.signed})
    assert by_kind.get("notice.stored:ket-qua") == received, "a KET_QUA missing or given twice"
    assert by_kind.get("dossier.settled") == received, "a settlement missing or made twice"
    replays = Counter({s.tx: sum(a.status == 200 for a in s.answers) for s in dossiers})
    assert by_kind.get("dossier.replayed", Counter()) == +replays


def test_sigkill_under_load_keeps_every_answer_and_stores_nothing_twice(store_url, tmp_path):
    started = time.monotonic()
    site = make_site(tmp_path, store_url)
    dossiers = dossiers_to_send(site)
    log = tmp_path / "server.log"
    servers = [ServerProc(site, log)]
    try:
        servers[0].wait_ready()
        send_all(servers[0], site, dossiers, kill_after=KILL_AFTER)
        acked = [s for s in dossiers if not s.answers[0].lost]
        lost = [s for s in dossiers if s.answers[0].lost]
        in_flight = [s.n for s in lost if not s.answers[0].error.startswith("ConnectionRefusedError")]
        for s in acked:
            assert s.answers[0].status == (202 if s.signed else 422), (
                s.n,
                s.answers[0].status,
                s.answers[0].body[:300],
            )
        assert len(acked) >= KILL_AFTER and in_flight, (
            "the kill hit no request in flight",
            len(acked),
            [s.n for s in lost],
        )

        server = ServerProc(site, log)
        servers.append(server)
        server.wait_ready()

        # 1. every answered dossier is stored with its exact bytes and the exact notice answered
        for s in acked:
            check_stored_as_answered(server, site, s, s.answers[0])

        # 2. everything sent again: answered ones replay (200, same notice, same transaction);
        #    lost ones are received now or, when stored before the crash, replayed
        for s, again in zip(dossiers, resend_all(server, site, dossiers), strict=True):
            assert not again.lost, (s.n, again.error)
            if s in acked:
                assert again.status == 200 and again.body == s.answers[0].body, (
                    s.n,
                    again.status,
                    again.body[:300],
                )
                assert again.headers["x-transaction-id"] == s.answers[0].headers["x-transaction-id"]
            else:
                assert again.status in ((200, 202) if s.signed else (200, 422)), (
                    s.n,
                    again.status,
                    again.body[:300],
                )
                if again.status != 200:
                    check_stored_as_answered(server, site, s, again)
        stored_unanswered = [s.n for s in lost if s.answers[1].status == 200]

        # ... and once more: now every content has one answer, a replay of its first notice
        for s, again in zip(dossiers, resend_all(server, site, dossiers), strict=True):
            assert again.status == 200 and again.body == s.first_notice().body, (s.n, again.status)
            assert again.headers["x-transaction-id"] == s.tx

        # 3. one dossier per content, no more
        check_one_dossier_per_content(server, site, dossiers)

        # 4. every received dossier gets its KET_QUA after the restart, exactly once
        wait_for_results(server, site, time.monotonic() + RESULT_DEADLINE)
        _, attempts = check_results(server, site, dossiers)
        server.stop()
        check_audit_log(store_url, dossiers)

        print(
            f"\n[{store_url.split('+')[0]}] {len(acked)} answered before the kill, {len(lost)} lost "
            f"({len(in_flight)} in flight, {len(stored_unanswered)} of them stored before the kill: "
            f"{stored_unanswered}); judging work run twice: {sum(a > 1 for a in attempts.values())}; "
            f"{time.monotonic() - started:.1f} s"
        )
    finally:
        for s in servers:
            s.stop()


def test_sigkill_while_results_are_given_gives_each_dossier_one_ket_qua(store_url, tmp_path):
    started = time.monotonic()
    site = make_site(tmp_path, store_url)
    dossiers = dossiers_to_send(site)
    log = tmp_path / "server.log"
    # a server that runs no work receives everything ...
    servers = [ServerProc(site, log, JOBS_INTERVAL_SECONDS="0")]
    try:
        servers[0].wait_ready()
        send_all(servers[0], site, dossiers)
        assert [s.answers[0].status for s in dossiers] == [202 if s.signed else 422 for s in dossiers]
        servers[0].stop()

        # ... then one that judges, in small batches, is SIGKILLed once some results are given
        judge = ServerProc(site, log, JOBS_BATCH="2", JOBS_CONCURRENCY="1")
        servers.append(judge)
        judge.wait_ready()
        deadline = time.monotonic() + RESULT_DEADLINE
        while True:
            settled = [i["id"] for i in all_dossiers(judge, site) if i["state"] in ("accepted", "rejected")]
            if len(settled) >= RECEIVED // 6:
                break
            assert time.monotonic() < deadline, "no results given"
            time.sleep(0.05)
        before = {
            tx: judge.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", site.auditor).body for tx in settled
        }
        judge.kill()
        assert len(settled) < RECEIVED, "every result was given before the kill: nothing was in progress"

        server = ServerProc(site, log)
        servers.append(server)
        server.wait_ready()
        wait_for_results(server, site, time.monotonic() + RESULT_DEADLINE)
        results, attempts = check_results(server, site, dossiers)
        kept = {tx: results[tx] for tx in before}
        assert kept == before, "a KET_QUA given before the crash was given again (different bytes)"
        for s in dossiers:  # the receipts are as answered, too
            check_stored_as_answered(server, site, s, s.answers[0])
        check_one_dossier_per_content(server, site, dossiers)
        server.stop()
        check_audit_log(store_url, dossiers)

        print(
            f"\n[{store_url.split('+')[0]}] {len(settled)} results before the kill; judging work run "
            f"twice: {sum(a > 1 for a in attempts.values())}; {time.monotonic() - started:.1f} s"
        )
    finally:
        for s in servers:
            s.stop()
