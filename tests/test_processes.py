"""`interchange serve --processes N` (interchange.processes): several HTTP processes on one port
(SO_REUSEPORT) and one PostgreSQL, supervised.

The main test starts three processes, spreads signed dossiers over them from several threads
(each request on a new connection, so the kernel spreads them over the processes), SIGKILLs one
of the three in the middle of the load and shows:
- the supervisor starts the killed process again;
- nothing acknowledged is lost: every 202 has its stored original and TIEP_NHAN, as answered,
  and a KET_QUA in the end (the killed process's claimed work is taken up by the others when
  its lease, 3 s here, runs out); what was lost in flight is received when sent again;
- every dossier is judged exactly once (one KET_QUA, one settlement in the audit log);
- dossier numbers (SoHoSo) are unique; the audit chain verifies;
- the work was judged by more than one process (claimed_by), and SIGTERM to the supervisor
  stops everything cleanly (exit 0), every process writing its queued card lookup log first.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from interchange.cli import main as cli_main
from interchange.devkit import samples
from interchange.kinds import WORK_JUDGE
from interchange.store import Store
from interchange.trust.dossier_signing import sign_envelope
from tests.serverproc import Answer, ServerProc, Site, all_dossiers, make_site, on_private_loop

pytestmark = pytest.mark.usefixtures("clean_environ")

PROCESSES = 3
DOSSIERS = 90
THREADS = 8
KILL_AFTER = 30  # answers before one process is SIGKILLed
LOOKUPS = 60  # card lookups just before the SIGTERM
LEASE = 3  # seconds: the killed process's claimed work is claimed again this soon
STARTED = re.compile(r"HTTP process (\d+) started \(pid (\d+)\)")


def pids(log: Path) -> dict[int, list[int]]:
    """Each HTTP process's pids, in the order the supervisor started them."""
    out: dict[int, list[int]] = {}
    for index, pid in STARTED.findall(log.read_text(errors="replace")):
        out.setdefault(int(index), []).append(int(pid))
    return out


def wait_for(what: str, check, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s\n{log.read_text(errors='replace')}"
        time.sleep(0.1)


def post(server: ServerProc, site: Site, body: bytes) -> Answer:
    return server.request("POST", "/api/v1/dossiers", body=body, token=site.submitter)


async def facility_key(store_url: str) -> str:
    store = await Store.open(store_url)
    try:
        return (await store.keys.create("facility", facility="01001", label="processes test"))[1]
    finally:
        await store.close()


async def lookups_logged(store_url: str, asked: list[str]) -> dict[str, int]:
    store = await Store.open(store_url)
    try:
        return {pid: len(await store.cards.lookups_of(pid)) for pid in asked}
    finally:
        await store.close()


def stored_facts(store_url: str, txs: list[str]):
    """The audit log (entries and verification) and who claimed each judging item."""

    async def read():
        store = await Store.open(store_url)
        try:
            entries, after = [], 0
            while page := await store.audit.entries(after=after):
                entries += page
                after = page[-1].seq
            judged = {tx: [w for w in await store.work.of(tx) if w.kind == WORK_JUDGE] for tx in txs}
            return entries, await store.audit.verify(), judged
        finally:
            await store.close()

    return on_private_loop(read())


def send_and_kill(server: ServerProc, site: Site, bodies: list[bytes], victim: int) -> dict[int, list[Answer]]:
    """POST every body from THREADS threads; SIGKILL `victim` at the KILL_AFTER-th answer."""
    answers: dict[int, list[Answer]] = {n: [] for n in range(len(bodies))}
    count, lock = 0, threading.Lock()

    def one(n: int) -> None:
        nonlocal count
        answer = post(server, site, bodies[n])
        answers[n].append(answer)
        if answer.lost:
            return
        with lock:
            count += 1
            kill = count == KILL_AFTER
        if kill:
            os.kill(victim, signal.SIGKILL)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(len(bodies))))
    return answers


def check_acknowledged(server: ServerProc, site: Site, bodies: list[bytes], answers, tx: dict[int, str]) -> None:
    """Every acknowledgement: its original and its TIEP_NHAN stored as answered."""
    for n, body in enumerate(bodies):
        a = answers[n][0]
        if a.lost:
            continue
        original = server.get(f"/api/v1/dossiers/{tx[n]}/original", site.auditor)
        assert original.status == 200 and original.body == body, (n, original.status)
        notice = server.get(f"/api/v1/dossiers/{tx[n]}/notices/tiep-nhan", site.auditor)
        assert notice.status == 200 and notice.body == a.body, (n, notice.status)


def check_judged(server: ServerProc, site: Site, tx: dict[int, str]) -> None:
    """Every dossier judged: one KET_QUA each, one dossier per content, unique numbers."""
    deadline = time.monotonic() + 40
    while pending := [i["id"] for i in all_dossiers(server, site) if i["state"] == "received"]:
        assert time.monotonic() < deadline, f"{len(pending)} dossiers without a result: {pending}"
        time.sleep(0.5)
    items = all_dossiers(server, site)
    assert sorted(i["id"] for i in items) == sorted(tx.values()), "a dossier missing or stored twice"
    numbers = [i["so_ho_so"] for i in items]
    assert None not in numbers and len(set(numbers)) == len(numbers), Counter(numbers).most_common(3)
    for n, t in tx.items():
        ket_qua = server.get(f"/api/v1/dossiers/{t}/notices/ket-qua", site.auditor)
        assert ket_qua.status == 200 and b"KET_QUA" in ket_qua.body, (n, t, ket_qua.status)


def check_audit(store_url: str, txs: list[str]) -> tuple[Counter, int]:
    """The chain verifies; one receipt, one settlement, one KET_QUA per dossier; each judging
    item done. Returns the judging items per process (pid) and how many were claimed again."""
    entries, report, judged = stored_facts(store_url, txs)
    assert report.ok, report.as_dict()
    each = Counter(dict.fromkeys(txs, 1))
    kinds: dict[str, Counter] = {}
    for e in entries:
        label = e.kind + (f":{e.data.get('kind')}" if e.kind == "notice.stored" else "")
        kinds.setdefault(label, Counter())[e.dossier_id] += 1
    assert kinds.get("dossier.received") == each
    assert kinds.get("dossier.settled") == each, "a dossier settled twice or never"
    assert kinds.get("notice.stored:ket-qua") == each, "a KET_QUA given twice or never"
    assert all([w.state for w in items] == ["done"] for items in judged.values()), judged
    judges = Counter(pid_of(w.claimed_by) for items in judged.values() for w in items)
    return judges, sum(w.attempts > 1 for items in judged.values() for w in items)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
def test_three_processes_one_killed_lose_nothing_and_judge_once(store_url, tmp_path):
    started = time.monotonic()
    site = make_site(tmp_path, store_url, lease_seconds=LEASE)
    signer = site.signer()
    bodies = [sign_envelope(samples.dossier_600(rows=2, seed=5000 + n), signer) for n in range(DOSSIERS)]
    log = tmp_path / "server.log"
    server = ServerProc(site, log, "--processes", str(PROCESSES))
    try:
        wait_for("three processes listening", lambda: log.read_text().count("Running on") == PROCESSES, log, 90)
        server.wait_ready()
        first = pids(log)
        assert sorted(first) == list(range(1, PROCESSES + 1)), first
        answers = send_and_kill(server, site, bodies, victim=first[2][0])
        lost = [n for n in range(DOSSIERS) if answers[n][0].lost]
        assert all(answers[n][0].status == 202 for n in range(DOSSIERS) if n not in lost), [
            (n, a[0].status, a[0].body[:200]) for n, a in answers.items() if not a[0].lost and a[0].status != 202
        ]

        # the supervisor starts the killed process again (on the same port)
        wait_for("the killed process started again", lambda: len(pids(log).get(2, [])) == 2, log, 30)
        wait_for("it listens", lambda: log.read_text().count("Running on") == PROCESSES + 1, log, 60)

        # what was lost in flight is sent again: received now, or replayed when it was stored
        for n in lost:
            again = post(server, site, bodies[n])
            answers[n].append(again)
            assert again.status in (200, 202), (n, again.status, again.error, again.body[:300])
        first_notice = {n: next(a for a in answers[n] if a.status in (200, 202)) for n in range(DOSSIERS)}
        tx = {n: a.headers["x-transaction-id"] for n, a in first_notice.items()}
        check_acknowledged(server, site, bodies, answers, tx)
        check_judged(server, site, tx)

        # card lookups spread over the processes, then SIGTERM at once: each process writes its
        # queued lookup log before it ends (a clean shutdown loses no lookup record)
        facility = on_private_loop(facility_key(store_url))
        asked = [f"{900000000000 + n:012d}" for n in range(LOOKUPS)]
        for pid in asked:
            answer = server.get(f"/api/v1/hi-cards/{pid}?name=Nguyen+Van+A&birth=1990-01-01", facility)
            assert answer.status == 404, (pid, answer)
        server.stop(timeout=90)
        assert server.proc.returncode == 0, f"supervisor exit {server.proc.returncode}\n{log.read_text()}"
        logged = on_private_loop(lookups_logged(store_url, asked))
        assert logged == dict.fromkeys(asked, 1), f"lookups not logged once each: {logged}"

        judges, retried = check_audit(store_url, list(tx.values()))
        assert len(judges) >= 2, f"the work was judged by one process only: {judges}"
        print(
            f"\n{PROCESSES} processes, {DOSSIERS} dossiers: {len(lost)} answers lost with the killed process "
            f"(sent again), judging work per process pid {dict(judges)}, {retried} items claimed again; "
            f"{time.monotonic() - started:.1f} s"
        )
    finally:
        server.stop()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
def test_children_that_keep_dying_end_the_supervisor_non_zero(store_url, tmp_path):
    """The port is held by a socket without SO_REUSEPORT: no child can listen, each dies at
    start; the supervisor restarts them with a growing pause, then gives up with exit 1."""
    site = make_site(tmp_path, store_url)
    log = tmp_path / "server.log"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", site.port))
        squatter.listen()
        server = ServerProc(site, log, "--processes", "2")
        try:
            server.proc.wait(120)
        finally:
            server.stop()
    text = log.read_text(errors="replace")
    assert server.proc.returncode == 1, text
    assert "giving up" in text and "starting it again" in text, text


def test_several_processes_refuse_sqlite(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n', encoding="utf-8")
    assert cli_main(["--config", str(config), "serve", "--processes", "2"]) == 2
    err = capsys.readouterr().err
    assert "--processes 2 needs PostgreSQL" in err and "sqlite" in err, err
    assert not (tmp_path / "interchange.db").exists(), "nothing is opened before refusing"


def pid_of(worker: str) -> int:
    """The process id in a worker's name: `<instance>#<slot>/<pid>.<boot>`, or `<instance>:<pid>:<hex>`
    before the runner has its slot (jobs/runner.py)."""
    if "/" in worker:
        return int(worker.rsplit("/", 1)[-1].split(".")[0])
    return int(worker.split(":")[1])
