"""Take-up of a killed server's work (docs/work-leases.md): a judging server is SIGKILLed while it
holds judging work and restarted on the same database; how long until the KET_QUA of what it
held. Prints figures; asserts nothing about time (tests/test_kill.py checks the bound).

    PYTHONPATH=. .venv/bin/python bench/takeup.py [--store postgresql+asyncpg://...] [--trials 3]
        [--other-instance]

The floor, measured in the same run, is the time from the kill until the restarted server is
ready (its start: nothing can be taken up sooner by it); the ratio is the take-up against it.
With --other-instance the restarted server has another instance name, so nothing is released
at its start and the work comes back when the dead server's leases run out (lease_seconds).
Before this change (120 s leases, no release) the take-up was about 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import bench_store, describe_store  # noqa: E402
from sqlalchemy import select  # noqa: E402

from interchange.devkit import samples  # noqa: E402
from interchange.kinds import WORK_JUDGE  # noqa: E402
from interchange.store import Store  # noqa: E402
from interchange.store.tables import work_items  # noqa: E402
from interchange.store.types import RUNNING  # noqa: E402
from interchange.trust.dossier_signing import sign_envelope  # noqa: E402
from tests.serverproc import ServerProc, make_site  # noqa: E402

DOSSIERS = 40
RELEASED = re.compile(rb"released (\d+) items held by an earlier run")


async def running_judging(store: Store) -> list[str]:
    async with store.db.reading() as conn:
        query = select(work_items.c.dossier_id).where(work_items.c.state == RUNNING, work_items.c.kind == WORK_JUDGE)
        return list((await conn.execute(query)).scalars())


async def kill_while_judging(judge: ServerProc, store_url: str) -> list[str]:
    store = await Store.open(store_url)
    try:
        deadline = time.monotonic() + 60
        while not await running_judging(store):
            if time.monotonic() > deadline:
                raise SystemExit("no judging work seen running within 60 s")
            await asyncio.sleep(0.005)
        judge.kill()
        return await running_judging(store)
    finally:
        await store.close()


def trial(tmp: Path, store_url: str, other_instance: bool, seed: int) -> dict:
    site = make_site(tmp, store_url)
    signer = site.signer()
    log = tmp / "server.log"
    receiver = ServerProc(site, log, JOBS_INTERVAL_SECONDS="0")
    try:
        receiver.wait_ready()
        for n in range(DOSSIERS):
            body = sign_envelope(samples.dossier_600(rows=2, seed=seed + n), signer)
            assert receiver.request("POST", "/api/v1/dossiers", body=body, token=site.submitter).status == 202
    finally:
        receiver.stop()
    judge = ServerProc(site, log, JOBS_BATCH="8", JOBS_CONCURRENCY="1")
    servers = [judge]
    try:
        judge.wait_ready()
        held = asyncio.run(kill_while_judging(judge, store_url))
        log_from = log.stat().st_size
        server = ServerProc(site, log, **({"JOBS_INSTANCE": "another-host"} if other_instance else {}))
        servers.append(server)
        server.wait_ready(timeout=120)
        ready = time.monotonic()
        waiting = set(held)
        while waiting:
            waiting = {d for d in waiting if server.get(f"/api/v1/dossiers/{d}/notices/ket-qua", site.auditor).status != 200}
            if waiting:
                time.sleep(0.05)
        done = time.monotonic()
        released = sum(int(n) for n in RELEASED.findall(log.read_bytes()[log_from:]))
    finally:
        for s in servers:
            s.stop()
    return {"held": len(held), "released": released, "floor": ready - judge.killed_at,
            "take_up": done - judge.killed_at, "after_ready": done - ready}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="", help="a PostgreSQL URL (a fresh schema per trial); default SQLite")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--other-instance", action="store_true", help="restart under another instance name")
    args = parser.parse_args()
    rows = []
    for n in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="takeup-") as tmp:
            url, schema = bench_store(args.store, Path(tmp))
            try:
                rows.append(trial(Path(tmp), url, args.other_instance, seed=7000 + 100 * n))
            finally:
                if schema is not None:
                    schema.drop()
        r = rows[-1]
        print(f"trial {n + 1}: {r['held']} judging items held at the kill, {r['released']} released at the restart; "
              f"kill->ready (floor) {r['floor']:.2f} s, kill->KET_QUA {r['take_up']:.2f} s "
              f"(ratio {r['take_up'] / r['floor']:.2f}), ready->KET_QUA {r['after_ready']:.2f} s", flush=True)  # fmt: skip
    print(f"\n{describe_store(url)}, {'another instance' if args.other_instance else 'same instance'}, "
          f"lease 15 s, heartbeat 5 s, {args.trials} trials")  # fmt: skip
    print("| figure | median | min | max |\n|---|---|---|---|")
    for key, label in (("floor", "kill -> restarted server ready (floor)"), ("take_up", "kill -> KET_QUA of held work"),
                       ("after_ready", "ready -> KET_QUA of held work")):  # fmt: skip
        values = [r[key] for r in rows]
        print(f"| {label} | {statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s |")
    ratios = [r["take_up"] / r["floor"] for r in rows]
    print(f"| take-up / floor | {statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
