"""E-HI card lookups: single lookups over HTTP at a fixed concurrency and batches of 500, against
many synthetic insured persons, each beside its floor (the same lookup straight against the
database in this process, one at a time) and the ratio.

    python bench/lookups.py --persons 1000000            # the issue's size (seeding takes minutes)
    python bench/lookups.py --store-url postgresql+asyncpg://... --processes 1,2

Seeding writes rows directly (persons, one D02-TS increase each, a reduction or a level change for
some, a TK1-TS facility for half), not through dossiers: the lookup reads the same tables either
way. Prints figures; asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench import benchlib  # noqa: E402
from interchange.records.card import build_card, matches  # noqa: E402

CHUNK = 20_000
NAME = "Người Bảo Hiểm {}"


def person(i: int) -> tuple[str, str, str, date]:
    """(personal ID, SI code, name, birth date) of synthetic person i (0-based)."""
    return f"{i + 1:012d}", f"{i + 1:010d}", NAME.format(i), date(1960 + i % 40, 1 + i % 12, 1 + i % 28)


async def seed(store, n: int, log=print) -> None:
    from interchange.store import RECEIVED, NewDossier
    from interchange.store.tables import contribution_changes, personal_data_changes, persons

    now = datetime.now(UTC)
    data = b"<Hoso bench='lookups'/>"
    new = NewDossier(id="bench-lookups", state=RECEIVED, owner=f"mst:{benchlib.UNIT.mst}", submitter_key_id="k",
                     original=data, sha256=hashlib.sha256(data).digest(), received_at=now, office_code="BENCH",
                     unit_mst=benchlib.UNIT.mst, unit_code=benchlib.UNIT.code, unit_name=benchlib.UNIT.name,
                     procedure="600", period="01/2020", due_at=now)  # fmt: skip

    async def receipt(_d) -> bytes:
        return b"<ThongBao/>"

    await store.receipts.save(new, receipt)
    rng = random.Random(12)
    base = {"dossier_id": new.id, "received_at": now, "unit_mst": benchlib.UNIT.mst, "unit_code": benchlib.UNIT.code}
    started = time.perf_counter()
    for lo in range(0, n, CHUNK):
        people, changes, data_rows = [], [], []
        for i in range(lo, min(n, lo + CHUNK)):
            pid, si, name, born = person(i)
            people.append({"id": i + 1, "personal_id": pid, "si_code": si if i % 2 else None, "name": name,
                           "birth_date": born, "gender": i % 2, "data_rank": 1, "data_at": now,
                           "created_at": now, "updated_at": now})  # fmt: skip
            row = {**base, "person_id": i + 1, "personal_id": pid, "si_code": None, "name": name,
                   "coefficient": False, "allowances": {}, "salary": 10_000_000, "rate": 32}  # fmt: skip
            start = f"{2010 + rng.randrange(15)}-{1 + rng.randrange(12):02d}"
            changes.append({**row, "xpath": f"/D02-TS/NoiDung/LaoDong[{i}]", "stt": 1, "pa": "TM",
                            "direction": "increase", "from_month": start, "benefit_level": "4"})  # fmt: skip
            if i % 5 == 0:
                changes.append({**row, "xpath": f"/D02-TS/NoiDung/LaoDong[{i}]/g", "stt": 2, "pa": "GH",
                                "direction": "decrease", "from_month": "2026-01", "benefit_level": None})  # fmt: skip
            if i % 2 == 0:
                data_rows.append({**base, "person_id": i + 1, "xpath": f"/TK1-TS/NoiDung/LaoDong[{i}]", "stt": 1,
                                  "personal_id": pid, "si_code": None, "name": name, "birth_date": born,
                                  "data": {"MaTinhBenhVien": "01", "MaBenhVien": f"01{i % 200:03d}"}})  # fmt: skip
        async with store.db.writing() as conn:
            await conn.execute(persons.insert(), people)
            await conn.execute(contribution_changes.insert(), changes)
            await conn.execute(personal_data_changes.insert(), data_rows)
        done = min(n, lo + CHUNK)
        if done % 200_000 == 0 or done == n:
            log(f"  seeded {done:,} persons ({time.perf_counter() - started:.0f} s)")
    async with store.db.writing() as conn:  # the planner's statistics, as a database in use has them
        await conn.execute(text("ANALYZE"))


async def persons_held(store) -> int:
    async with store.db.reading() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM persons"))).scalar() or 0)


async def database_size(store) -> str:
    """The whole database (SQLite: the file; PostgreSQL: the bench's schema, indexes included)."""
    async with store.db.reading() as conn:
        if store.db.postgres:
            size = (await conn.execute(text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"))).scalar()  # fmt: skip
        else:
            size = (await conn.execute(text(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"))).scalar()  # fmt: skip
    return f"{int(size or 0) / 2**20:,.0f} MiB"


async def floor(store, ids: list[int], batch: int) -> tuple[float, float]:
    """In-process: mean seconds per single lookup, and per batch of `batch` lookups."""
    today = date.today()

    async def one(chunk: list[int]) -> None:
        asked = [person(i) for i in chunk]
        found = await store.cards.inputs([a[0] for a in asked])
        for pid, _, name, born in asked:
            records = found.get(pid)
            if records is not None and matches(records.identity, name, born):
                build_card(records, today)

    started = time.perf_counter()
    for i in ids:
        await one([i])
    single = (time.perf_counter() - started) / len(ids)
    chunks = [ids[k : k + batch] for k in range(0, len(ids), batch) if len(ids[k : k + batch]) == batch] or [ids]
    started = time.perf_counter()
    for chunk in chunks:
        await one(chunk)
    return single, (time.perf_counter() - started) / len(chunks)


async def over_http(url: str, token: str, ids: list[int], concurrency: int, batch: int, batches: int, cpu):
    """Single lookups at `concurrency`, then `batches` batches; `cpu()` is the server's CPU seconds
    so far (all its processes): its CPU per single lookup is robust to a loaded machine."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(ids)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def lane() -> None:
            while queue:
                pid, _, name, born = person(queue.pop())
                t0 = time.perf_counter()
                async with session.get(f"{url}/api/v1/hi-cards/{pid}", headers=headers,
                                       params={"name": name, "birth": born.isoformat()}) as resp:  # fmt: skip
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        started, cpu0 = time.perf_counter(), cpu()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        single_s, single_cpu = time.perf_counter() - started, cpu() - cpu0
        batch_lat = []
        for b in range(batches):
            chunk = ids[(b * batch) % len(ids) :][:batch]
            items = [{"id": p, "name": nm, "birth": bd.isoformat()} for p, _, nm, bd in map(person, chunk)]
            t0 = time.perf_counter()
            async with session.post(f"{url}/api/v1/hi-cards/lookups", json={"items": items}, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            batch_lat.append(time.perf_counter() - t0)
    return latencies, single_s, single_cpu, batch_lat, statuses


def facility_key(store_url: str) -> str:
    from interchange.store.store import Store

    async def make() -> str:
        store = await Store.open(store_url)
        try:
            return (await store.keys.create("facility", facility="01001", label="bench"))[1]
        finally:
            await store.close()

    return asyncio.run(make())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=100_000, help="synthetic insured persons seeded (issue: 1000000)")
    ap.add_argument("--count", type=int, default=5000, help="single lookups over HTTP (and for the floor)")
    ap.add_argument("--concurrency", type=int, default=32, help="single lookups in flight")
    ap.add_argument("--batches", type=int, default=20, help="batch requests of --batch-size lookups")
    ap.add_argument("--batch-size", type=int, default=500, help="lookups per batch request (at most 500)")
    ap.add_argument("--workers", type=int, default=0, help="server worker processes (server.workers)")
    ap.add_argument("--processes", default="1", help="HTTP server processes (serve --processes), or several "
                    "counts measured one after the other on the same data, e.g. 1,2 (more than 1 needs PostgreSQL)")  # fmt: skip
    ap.add_argument("--store-url", default="", help="store (default: SQLite in a temp folder); a postgresql+asyncpg "
                    "URL gets a fresh schema bench_<random>, dropped at the end")  # fmt: skip
    ap.add_argument("--reuse", type=Path, help="SQLite only: keep the seeded store in this folder and reuse it when "
                    "it already holds --persons persons (seeding 1,000,000 takes minutes)")  # fmt: skip
    args = ap.parse_args()

    from interchange.store.store import Store

    bench_pki = benchlib.ensure_pki()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lookups-"))
    schema = server = None
    try:
        if args.reuse is not None:
            if args.store_url:
                ap.error("--reuse is for the default SQLite store")
            store_url = benchlib.sqlite_url(args.reuse.resolve())
        else:
            store_url, schema = benchlib.bench_store(args.store_url, tmp)
        (tmp / "data").mkdir(exist_ok=True)
        rng = random.Random(7)
        ids = [rng.randrange(args.persons) for _ in range(args.count)]

        async def prepare() -> tuple[float, float]:
            store = await Store.open(store_url)
            try:
                t0 = time.perf_counter()
                held = await persons_held(store)
                if held == args.persons:
                    print(f"reusing {held:,} persons ({benchlib.describe_store(store_url)}, {await database_size(store)})")
                elif held:
                    raise SystemExit(f"{args.reuse} holds {held:,} persons, not {args.persons:,}: use another folder")
                else:
                    await seed(store, args.persons)
                    print(f"seeded {args.persons:,} persons in {time.perf_counter() - t0:.0f} s "
                          f"({benchlib.describe_store(store_url)}, {await database_size(store)})")  # fmt: skip
                return await floor(store, ids, args.batch_size)
            finally:
                await store.close()

        floor_single, floor_batch = asyncio.run(prepare())
        token = facility_key(store_url)
        config = benchlib.write_config(tmp, bench_pki, store_url)
        failed = False
        for processes in [int(x) for x in args.processes.split(",")]:
            server = benchlib.Server(config, workers=args.workers, processes=processes)
            server.start()
            pid = server.pid

            def cpu(pid=pid) -> float:
                return sum(p.cpu_s for p in benchlib.server_processes(pid))

            measured = asyncio.run(
                over_http(server.url, token, ids, args.concurrency, args.batch_size, args.batches, cpu)
            )
            server.stop()
            server = None
            failed |= report(args, processes, floor_single, floor_batch, *measured)
    finally:
        if server is not None:
            server.stop()
        if schema is not None:
            schema.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def report(args, processes, floor_single, floor_batch, lat, elapsed, single_cpu, batch_lat, statuses) -> bool:
    """Print one server's figures beside the floor; True when an answer was not 200."""
    lat.sort()
    rate, floor_rate = len(lat) / elapsed, 1 / floor_single
    print(f"--- serve --processes {processes}: statuses {dict(sorted(statuses.items()))}")
    print(f"single over HTTP: {rate:,.0f} lookups/s at concurrency {args.concurrency}; latency p50 "
          f"{statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")  # fmt: skip
    print(f"single floor (in process, one at a time): {floor_rate:,.0f} lookups/s "
          f"({floor_single * 1000:.2f} ms each); HTTP / floor = {rate / floor_rate:.2f}")  # fmt: skip
    per = single_cpu / len(lat)
    print(f"server CPU per single lookup over HTTP: {per * 1000:.2f} ms = {per / floor_single:.2f} x the floor's "
          f"time; {os.cpu_count()} CPUs would give at most {(os.cpu_count() or 1) / per:,.0f} lookups/s "
          "with no client on the machine")  # fmt: skip
    batch_rate = args.batch_size / statistics.mean(batch_lat)
    print(f"batch of {args.batch_size} over HTTP: {statistics.mean(batch_lat) * 1000:.0f} ms each, "
          f"{batch_rate:,.0f} lookups/s; floor {floor_batch * 1000:.0f} ms, {args.batch_size / floor_batch:,.0f} "
          f"lookups/s; HTTP / floor = {batch_rate / (args.batch_size / floor_batch):.2f}")  # fmt: skip
    return set(statuses) != {200}


if __name__ == "__main__":
    sys.exit(main())
