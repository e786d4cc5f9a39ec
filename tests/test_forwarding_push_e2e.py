"""The agency's push to the I-VAN with two real server processes over HTTP on loopback: an agency
(SQLite) and an I-VAN in role ivan (its store on SQLite and PostgreSQL: `store_url`), both
`python -m interchange serve` as deployed, their dev PKIs sharing one CA.

- With `[upstream] push_url`, the I-VAN registers its callback with the agency by itself at
  start, and the KET_QUA reaches the I-VAN's client within seconds of the agency's, while the
  first poll would come only after `first_retry_seconds` (180 s): the push brought it.
- When the push cannot reach the I-VAN (its push_url names a port nobody listens on), the poll
  still brings the KET_QUA (first_retry_seconds shortened here so that the test is short).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from interchange.devkit import samples
from interchange.store import Store
from interchange.trust.dossier_signing import sign_envelope
from tests.serverproc import ServerProc, Site, free_port, make_site, on_private_loop

pytestmark = pytest.mark.usefixtures("clean_environ")

IVAN = "00123"  # the samples' MaIVAN
DOSSIERS = 4
# The relayed KET_QUA comes within this of the agency's (a correctness bound on the push path,
# far below the first poll at first_retry_seconds = 180 s; not a speed target).
PUSH_BOUND = 20.0
DEADLINE = 90.0  # seconds for anything the tests wait for


def sites(tmp_path: Path, ivan_store_url: str) -> tuple[Site, Site, str]:
    """The agency's site, the I-VAN's (same dev CA) and the I-VAN's key at the agency."""
    (tmp_path / "agency").mkdir()
    agency = make_site(tmp_path / "agency", f"sqlite+aiosqlite:///{tmp_path / 'agency' / 'data' / 'agency.db'}")
    ivan_root = tmp_path / "ivan"
    (ivan_root / "trusted").mkdir(parents=True)
    (ivan_root / "data" / "dev-ca").mkdir(parents=True)
    shutil.copy(agency.root / "trusted" / "dev-ca.pem", ivan_root / "trusted" / "dev-ca.pem")
    shutil.copy(agency.root / "data" / "dev-ca" / "ca-key.pem", ivan_root / "data" / "dev-ca" / "ca-key.pem")
    ivan = make_site(ivan_root, ivan_store_url)  # its notice key and demo unit from the same CA

    async def ivan_key() -> str:
        store = await Store.open(agency.store_url)
        try:
            return (await store.keys.create("ivan", ivan=IVAN, label="push test"))[1]
        finally:
            await store.close()

    return agency, ivan, on_private_loop(ivan_key())


def ivan_settings(agency: Site, ivan: Site, token: str, push_url: str, **more: str) -> dict[str, str]:
    notice_ca = ivan.root / "agency-notice-ca"
    notice_ca.mkdir(exist_ok=True)
    shutil.copy(agency.root / "trusted" / "dev-ca.pem", notice_ca / "agency-ca.pem")
    return {
        "SERVER_ROLE": "ivan",
        "UPSTREAM_URL": f"http://127.0.0.1:{agency.port}",
        "UPSTREAM_API_KEY": token,
        "UPSTREAM_NOTICE_CERT": str(agency.root / "data" / "server" / "notice-cert.pem"),
        "UPSTREAM_NOTICE_ANCHORS": str(notice_ca),
        "UPSTREAM_PUSH_URL": push_url,
        "DELIVERY_ALLOW_PRIVATE_URLS": "true",
        **more,
    }


def get_json(server: ServerProc, path: str, token: str) -> dict:
    answer = server.get(path, token)
    assert answer.status == 200, (path, answer)
    return json.loads(answer.body)


def submit_all(ivan_server: ServerProc, ivan: Site, seed: int) -> list[str]:
    signer = ivan.signer()
    txs = []
    for n in range(DOSSIERS):
        body = sign_envelope(samples.dossier_600(rows=2, seed=seed + n), signer)
        answer = ivan_server.request("POST", "/api/v1/dossiers", body=body, token=ivan.submitter)
        assert answer.status == 202, answer
        txs.append(answer.headers["x-transaction-id"])
    return txs


def wait_for_results(ivan_server: ServerProc, ivan: Site, txs: list[str]) -> dict[str, float]:
    """Until each dossier's KET_QUA is at the I-VAN, as its client reads it; when each came."""
    came: dict[str, float] = {}
    deadline = time.monotonic() + DEADLINE
    while len(came) < len(txs):
        for tx in txs:
            if tx not in came and ivan_server.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", ivan.submitter).status == 200:
                came[tx] = time.monotonic()
        assert time.monotonic() < deadline, f"no KET_QUA at the I-VAN for {sorted(set(txs) - set(came))}"
        time.sleep(0.1)
    return came


def relayed(ivan_server: ServerProc, ivan: Site, agency_server: ServerProc, agency: Site, tx: str) -> dict:
    """The forwarding of `tx` at the I-VAN, and the lag of its KET_QUA behind the agency's."""
    fw = get_json(ivan_server, f"/api/v1/dossiers/{tx}/forwarding", ivan.auditor)
    upstream = get_json(agency_server, f"/api/v1/dossiers/{fw['upstream_id']}", agency.auditor)
    mine = get_json(ivan_server, f"/api/v1/dossiers/{tx}", ivan.auditor)
    ours = ivan_server.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", ivan.submitter).body
    theirs = agency_server.get(f"/api/v1/dossiers/{fw['upstream_id']}/notices/ket-qua", agency.auditor).body
    assert ours == theirs, "the relayed KET_QUA is not the agency's, byte for byte"
    lag = (datetime.fromisoformat(mine["result_at"]) - datetime.fromisoformat(upstream["result_at"])).total_seconds()
    return {"tries": [(a["kind"], a["outcome"]) for a in fw["tries"]], "lag": lag, "polls": fw["result"]["polls"]}


def test_the_agency_pushes_the_ket_qua_to_the_ivan_within_seconds(store_url, tmp_path):
    agency, ivan, token = sites(tmp_path, store_url)
    log = tmp_path / "servers.log"
    servers = [ServerProc(agency, log, DELIVERY_ALLOW_PRIVATE_URLS="true")]
    try:
        servers[0].wait_ready()
        servers.append(ServerProc(ivan, log, **ivan_settings(agency, ivan, token, f"http://127.0.0.1:{ivan.port}")))
        agency_server, ivan_server = servers
        ivan_server.wait_ready()
        deadline = time.monotonic() + DEADLINE
        while (answer := agency_server.get("/api/v1/callback", token)).status != 200:  # registered by itself
            assert time.monotonic() < deadline, f"the I-VAN registered no callback with the agency: {answer}"
            time.sleep(0.1)
        assert json.loads(answer.body)["url"].startswith(f"http://127.0.0.1:{ivan.port}/api/v1/upstream/notices/")

        started = time.monotonic()
        txs = submit_all(ivan_server, ivan, seed=4100)
        came = wait_for_results(ivan_server, ivan, txs)
        seen = {tx: relayed(ivan_server, ivan, agency_server, agency, tx) for tx in txs}
        for tx, r in seen.items():
            assert r["tries"] == [("forward", "accepted"), ("push", "relayed")] and r["polls"] == 0, (tx, r)
            assert 0 <= r["lag"] < PUSH_BOUND, (tx, r)
        lags = sorted(r["lag"] for r in seen.values())
        print(f"\n[{store_url.split('+')[0]}] {len(txs)} KET_QUA pushed: {lags[0]:.2f}-{lags[-1]:.2f} s behind the "
              f"agency's; submit to KET_QUA at the I-VAN's client {min(came.values()) - started:.1f}-"
              f"{max(came.values()) - started:.1f} s (first poll would be at 180 s)")  # fmt: skip
    finally:
        for s in reversed(servers):
            s.stop()


def test_when_the_push_fails_the_poll_brings_the_ket_qua(store_url, tmp_path):
    agency, ivan, token = sites(tmp_path, store_url)
    log = tmp_path / "servers.log"
    dead = free_port()  # nobody listens there: every push fails
    servers = [ServerProc(agency, log, DELIVERY_ALLOW_PRIVATE_URLS="true")]
    try:
        servers[0].wait_ready()
        settings = ivan_settings(agency, ivan, token, f"http://127.0.0.1:{dead}",
                                 UPSTREAM_FIRST_RETRY_SECONDS="3", UPSTREAM_MAX_RETRY_SECONDS="6")  # fmt: skip
        servers.append(ServerProc(ivan, log, **settings))
        agency_server, ivan_server = servers
        ivan_server.wait_ready()
        txs = submit_all(ivan_server, ivan, seed=4200)
        wait_for_results(ivan_server, ivan, txs)
        failed = 0
        for tx in txs:
            r = relayed(ivan_server, ivan, agency_server, agency, tx)
            assert r["tries"][0] == ("forward", "accepted") and r["tries"][-1] == ("poll", "relayed"), (tx, r)
            assert ("push", "relayed") not in r["tries"], (tx, r)
            fw = get_json(ivan_server, f"/api/v1/dossiers/{tx}/forwarding", ivan.auditor)
            deliveries = get_json(agency_server, f"/api/v1/dossiers/{fw['upstream_id']}/deliveries", agency.auditor)
            pushes = [d for d in deliveries["deliveries"] if d["recipient"] == f"ivan:{IVAN}" and d["notice"] == "ket-qua"]
            # failed: connection refused, or waiting for the I-VAN host's circuit that those failures opened
            assert len(pushes) == 1 and pushes[0]["state"] != "delivered" and pushes[0]["last_error"], pushes
            failed += pushes[0]["attempt_count"]
        assert failed, "the agency never tried to push"
    finally:
        for s in reversed(servers):
            s.stop()
