"""A real server gives a dossier's KET_QUA a fraction of a second after its receipt, not at its
next tick: the receipt wakes the process's work runner (`[jobs] wake_seconds`). With the tick
an hour away (only the first one, at start, runs during the test), the result comes only by the
wake; with `wake_seconds = 0` it does not come."""

from __future__ import annotations

import json
import time

import pytest

from interchange.devkit import samples
from interchange.trust.dossier_signing import sign_envelope
from tests.serverproc import ServerProc, make_site

pytestmark = pytest.mark.usefixtures("clean_environ")


def state_after(server: ServerProc, token: str, tx: str, wait: float) -> str:
    """The dossier's state once it is no longer `received`, or `received` after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        answer = server.get(f"/api/v1/dossiers/{tx}", token)
        assert answer.status == 200, answer
        state = json.loads(answer.body)["state"]
        if state != "received" or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


@pytest.mark.parametrize("wake", ["0.2", "0"])
def test_a_receipt_wakes_the_result_work(tmp_path, wake):
    site = make_site(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interchange.db'}")
    server = ServerProc(site, tmp_path / "server.log", JOBS_INTERVAL_SECONDS="3600", JOBS_HEARTBEAT_SECONDS="3600",
                        JOBS_LEASE_SECONDS="7200",
                        JOBS_WAKE_SECONDS=wake)  # fmt: skip
    try:
        server.wait_ready()
        time.sleep(0.5)  # the first tick (at start) has found nothing to do
        body = sign_envelope(samples.dossier_600(rows=2, seed=4242), site.signer())
        sent = time.monotonic()
        answer = server.request("POST", "/api/v1/dossiers", body=body, token=site.submitter)
        assert answer.status == 202, answer
        state = state_after(server, site.submitter, answer.headers["x-transaction-id"], wait=5.0)
        if wake == "0":
            assert state == "received"  # the next tick is an hour away
        else:
            assert state == "accepted", (tmp_path / "server.log").read_text()
            assert time.monotonic() - sent < 5.0
    finally:
        server.stop()
