"""Receipts per second and latency over real HTTP, for small fresh dossiers.

Each dossier is a procedure-600 Hoso with one D02-TS of `--rows` rows, the form and the
envelope both signed, every one with a different seed (so none is a replay). The server
runs as a separate process (`python -m interchange serve`) on a fresh store; an aiohttp
client fires the dossiers at a fixed concurrency after a warm-up, and prints the figures.

    .venv/bin/python bench/receipts.py [--count 3000] [--concurrency 32 | --rate 25%] [--workers 2]
        [--rows 20] [--store-url postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--no-results] [--json]

Every figure is printed beside the floor measured in the same run (bench/dossier_floor.py: the
unavoidable work of one dossier in this process on one core) and the ratio to it: receipts/s and
results/s against the limit (cores / floor), the CPU per dossier of the server process and of the
worker processes against the floor. The result latency (KET_QUA stored minus receipt, per
dossier) is read from the store after the run. `--rate R` (or `--rate 25%` of the limit) sends
open-loop at a fixed pace instead of a fixed concurrency; its latencies count from the time each
request was due, so a server that falls behind shows it.

The client shares the machine's cores with the server: its CPU time is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import benchlib
import dossier_floor

from interchange.config import Config

WARMUP = 100


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def wait_for_results(url: str, token: str, timeout: float = 900.0) -> float:
    """Seconds until no dossier is left without its result (state `received`)."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout:
            async with session.get(f"{url}/api/v1/dossiers?state=received&limit=1", headers=headers) as resp:
                if not (await resp.json())["items"]:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise TimeoutError(f"dossiers still without a result after {timeout:.0f} s")


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter = collections.Counter()
        self.odd: list[str] = []

    async def post(self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, t0: float) -> None:
        try:
            async with session.post(f"{url}/api/v1/dossiers", data=body, headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            status, answer = f"error {type(exc).__name__}", str(exc).encode()
        self.latencies.append(time.perf_counter() - t0)
        self.statuses[status] += 1
        if status != 202 and len(self.odd) < 3:
            self.odd.append(f"{status}: {answer[:400].decode(errors='replace')}")


HEADERS = {"Content-Type": "application/xml"}


async def fire(url: str, token: str, bodies: list[bytes], concurrency: int) -> tuple[Tally, float]:
    """POST every body with `concurrency` requests in flight (closed loop); (tally, elapsed)."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    tally = Tally()
    it = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def lane() -> None:
            for body in it:
                await tally.post(session, url, body, headers, time.perf_counter())

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return tally, elapsed


async def fire_paced(url: str, token: str, bodies: list[bytes], rate: float) -> tuple[Tally, float]:
    """Open loop: request i is due at start + i/rate, whatever the answers before it; its latency
    counts from when it was due (a client that waited would hide a server falling behind)."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=1024, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        started = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            due = started + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(tally.post(session, url, body, headers, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return tally, elapsed


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def result_times(store_url: str, since: datetime) -> list[tuple[datetime, datetime | None]]:
    """(received_at, result_at) of every dossier received at or after `since`, from the store."""
    from sqlalchemy import select

    from interchange.store.store import Store
    from interchange.store.tables import dossiers

    store = await Store.open(store_url)
    try:
        async with store.db.reading() as conn:
            query = select(dossiers.c.received_at, dossiers.c.result_at).where(dossiers.c.received_at >= since)
            return [(r.received_at, r.result_at) for r in (await conn.execute(query)).all()]
    finally:
        await store.close()


def cpu_by_role(before: dict, after: list) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in after:
        out[p.role] = out.get(p.role, 0.0) + p.cpu_s - (before[p.pid].cpu_s if p.pid in before else 0.0)
    return out


def parse_rate(text: str | None, limit: float) -> float | None:
    if not text:
        return None
    return limit * float(text[:-1]) / 100 if text.endswith("%") else float(text)


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--count", type=int, default=3000, help=f"dossiers measured (after a warm-up of {WARMUP})"
    )
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (closed loop)")
    ap.add_argument(
        "--rate",
        help="open loop instead: requests per second, or a percentage of the limit measured in this "
        "run (`25%%`); latencies count from when each request was due",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=Config().server.workers,
        help="server worker processes (server.workers; 0 = one thread)",
    )
    ap.add_argument(
        "--processes", type=int, default=1, help="HTTP server processes (serve --processes N; PostgreSQL only)"
    )
    ap.add_argument("--rows", type=int, default=20, help="rows of the D02-TS in each dossier")
    ap.add_argument(
        "--store-url",
        default="",
        help="store to use (default: SQLite in a temp folder); a postgresql+asyncpg URL gets a "
        "fresh schema bench_<random>, dropped at the end",
    )
    ap.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the server and its workers with py-spy during the measured phase "
        "(raw collapsed stacks to FILE; py-spy from the [bench] extra, `make bench` installs it, or $PY_SPY)",
    )
    ap.add_argument(
        "--py-spy-gil", action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (py-spy --gil), so that threads "
        "waiting for it (aiosqlite's, the event loop's while a thread runs) are not counted as CPU",
    )  # fmt: skip
    ap.add_argument(
        "--no-results",
        action="store_true",
        help="switch the result work off (INTERCHANGE_JOBS_INTERVAL_SECONDS=0): receipts alone",
    )
    ap.add_argument(
        "--signers", type=int, default=1, metavar="N",
        help="dossiers signed in turn by N certificates (as N employers' would be; each is validated "
        "on its own the first time, then from the path cache); default 1",
    )  # fmt: skip
    ap.add_argument(
        "--crl-entries", type=int, default=0, metavar="N",
        help="put a CRL of the bench CA listing N revoked serials in [trust] crl_dir (a licensed CA's "
        "CRL runs to tens of thousands of entries): every signature's revocation is checked against it",
    )  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (store, server log)")
    ap.add_argument("--json", action="store_true", help="also print one machine-readable JSON line")
    return ap.parse_args()


def start_spy(path: str, pid: int, *, gil: bool = False) -> subprocess.Popen | None:
    exe = shutil.which(os.environ.get("PY_SPY", "py-spy")) or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if exe is None:
        print("!! --py-spy: py-spy not found; not profiling", file=sys.stderr)
        return None
    spy = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--subprocesses", "--rate", "200", "--format", "raw",
         "--output", path, "--nonblocking", *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # let it attach
    return spy


def run(args: argparse.Namespace) -> dict:
    """Start a server, measure, stop it; every raw figure in a dict."""
    bench_pki = benchlib.ensure_pki()
    bodies = benchlib.signed_dossiers(bench_pki, args.rows, args.count + WARMUP, signers=args.signers)
    warmup, measured = bodies[:WARMUP], bodies[WARMUP:]
    floor = dossier_floor.measure(measured[:300], bench_pki.signing_key)
    rate = parse_rate(args.rate, floor.limit_per_s)
    fig: dict = {"floor": floor, "rate": rate, "mean_size": sum(map(len, measured)) / len(measured)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-receipts-"))
    schema = None
    server = None
    try:
        store_url, schema = benchlib.bench_store(args.store_url, tmp)
        fig["store"] = benchlib.describe_store(store_url)
        config = benchlib.write_config(tmp, bench_pki, store_url)
        if args.crl_entries:
            fig["crl_size"] = benchlib.write_crl(bench_pki, tmp / "crl", args.crl_entries)
            print(f"CRL of {args.crl_entries} entries ({fig['crl_size'] / 2**20:.1f} MiB) in crl_dir")
        token = benchlib.create_submitter_key(store_url)
        env = {"INTERCHANGE_JOBS_INTERVAL_SECONDS": "0"} if args.no_results else {}
        server = benchlib.Server(config, workers=args.workers, env=env, processes=args.processes)
        ready_s = server.start()
        print(f"server pid {server.pid} on {server.url}, processes={args.processes}, workers={args.workers}, ready in {ready_s:.1f} s, "
              f"store {fig['store']}; {floor.describe()}")  # fmt: skip
        warm, warm_s = asyncio.run(fire(server.url, token, warmup, args.concurrency))
        fig["warm"] = warm
        if not args.no_results:
            asyncio.run(wait_for_results(server.url, token))
        print(f"warm-up: {len(warmup)} dossiers in {warm_s:.2f} s {dict(warm.statuses)}")
        spy = start_spy(args.py_spy, server.pid, gil=args.py_spy_gil) if args.py_spy else None
        before = {p.pid: p for p in benchlib.server_processes(server.pid, args.processes > 1)}
        log_from = server.log_path.stat().st_size  # the receipts' log lines of the measured phase follow
        since = datetime.now(UTC)
        client_cpu0 = cpu_seconds()
        postgres0 = benchlib.postgres_cpu_s() if args.store_url else None  # on the same cores, when local
        if rate is not None:
            fig["tally"], fig["elapsed"] = asyncio.run(fire_paced(server.url, token, measured, rate))
        else:
            fig["tally"], fig["elapsed"] = asyncio.run(fire(server.url, token, measured, args.concurrency))
        fig["client_cpu"] = cpu_seconds() - client_cpu0
        postgres1 = benchlib.postgres_cpu_s() if postgres0 is not None else None
        fig["postgres_cpu"] = postgres1 - postgres0 if postgres1 is not None else None
        fired_until = datetime.now(UTC)
        fig["stages"] = receipt_stages(server.log_path, log_from)
        after_receipts = benchlib.server_processes(server.pid, args.processes > 1)
        fig["cpu_receipts"] = cpu_by_role(before, after_receipts)
        if not args.no_results:
            asyncio.run(wait_for_results(server.url, token))
            fig["cpu_all"] = cpu_by_role(before, benchlib.server_processes(server.pid, args.processes > 1))
            fig["times"] = asyncio.run(result_times(store_url, since))
            fig["since"], fig["fired_until"] = since, fired_until
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        fig["procs"] = benchlib.server_processes(server.pid, args.processes > 1)
    finally:
        fig["exit_code"] = server.stop() if server is not None else None
        if schema is not None:
            schema.drop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return fig


def receipt_stages(log_path: Path, offset: int) -> dict[str, list[float]]:
    """The milliseconds of each receipt stage (check, sign, write: the server's JSON log line of
    each receipt, interchange.receiving.receipt.RECEIPT_STAGES) logged from `offset`, sorted."""
    out: dict[str, list[float]] = {}
    with log_path.open("rb") as log:
        log.seek(offset)
        for line in log:
            if b'"stage_ms"' not in line:
                continue
            try:
                stages = json.loads(line).get("stage_ms") or {}
            except ValueError:
                continue
            for stage, ms in stages.items():
                out.setdefault(stage, []).append(ms)
    return {stage: sorted(values) for stage, values in out.items()}


def per_dossier(cpu: dict[str, float], n: int, floor_s: float) -> str:
    parts = [(role, s) for role, s in cpu.items() if role in ("server", "worker")]
    total = sum(s for _, s in parts)
    return ", ".join(
        f"{'workers' if role == 'worker' else role} {s / n * 1000:.2f} ms ({s / n / floor_s:.1f}x)"
        for role, s in [*parts, ("total", total)]
    )


def cpu_ceiling(fig: dict, n: int, cores: int) -> dict:
    """The receipts/s this CPU per dossier allows, were the cores busy with nothing else, and how
    busy they were. Near full, only less CPU per dossier goes faster; well below, something waits
    (a lock, a queue, too few requests in flight). The CPU is the server's and its workers', and
    a local PostgreSQL's (it shares the cores) when the store is one."""
    postgres = fig.get("postgres_cpu") or 0.0
    cpu = sum(s for role, s in fig["cpu_receipts"].items() if role in ("server", "worker")) + postgres
    return {"ms_per_dossier": cpu / n * 1000, "per_s": cores * n / cpu if cpu else float("nan"),
            "postgres_ms_per_dossier": postgres / n * 1000 if fig.get("postgres_cpu") is not None else None,
            "busy": (cpu + fig["client_cpu"]) / fig["elapsed"] / cores, "client": fig["client_cpu"] / fig["elapsed"] / cores}


def result_figures(fig: dict, n: int) -> dict:
    """Results/s and the result latency of the measured dossiers, from the store's times."""
    times = fig["times"]
    done = sorted((res - rec).total_seconds() for rec, res in times if res is not None)
    results = sorted(res for _, res in times if res is not None)
    within = sum(1 for r in results if r <= fig["fired_until"])
    span = (results[-1] - fig["since"]).total_seconds() if results else float("nan")
    return {
        "given": len(results),
        "missing": len(times) - len(results),
        "during_receipts_per_s": within / fig["elapsed"],
        "end_to_end_per_s": len(results) / span if results else float("nan"),
        "steady_per_s": (len(results) - 1) / (results[-1] - results[0]).total_seconds() if len(results) > 1 else float("nan"),
        "drain_s": (results[-1] - fig["fired_until"]).total_seconds() if results else float("nan"),
        "latency_s": {q: percentile(done, q) for q in (50, 90, 99)} | {"max": done[-1] if done else float("nan")},
    }


def report(args: argparse.Namespace, fig: dict) -> bool:
    floor = fig["floor"]
    tally, warm, elapsed = fig["tally"], fig["warm"], fig["elapsed"]
    lat = sorted(tally.latencies)
    n = len(lat)
    ms = {q: percentile(lat, q) * 1000 for q in (50, 90, 99)}
    rate = n / elapsed
    ok = tally.statuses.get(202, 0) == args.count and warm.statuses.get(202, 0) == WARMUP
    limit, floor_ms = floor.limit_per_s, floor.per_dossier_s * 1000
    load = os.getloadavg()
    mode = f"open loop at {fig['rate']:.1f}/s ({fig['rate'] / limit * 100:.0f}% of the limit)" if fig["rate"] else (
        f"closed loop, concurrency {args.concurrency}")  # fmt: skip
    print()
    signed = f"{args.signers} signing certificates in turn" if args.signers > 1 else "one signing certificate"
    crl = f"; a CRL of {args.crl_entries} entries ({fig['crl_size'] / 2**20:.1f} MiB) held" if args.crl_entries else ""
    print(f"dossiers      {n} fresh, D02-TS {args.rows} rows, {fig['mean_size'] / 1024:.1f} KiB each, signed form + "
          f"envelope, {signed}{crl}")  # fmt: skip
    print(f"mode          {mode}; processes {args.processes}; workers {args.workers}; store {fig['store']}; "
          f"result work {'OFF' if args.no_results else 'on'}")  # fmt: skip
    print(f"machine       {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared)")
    print(f"floor         {floor_ms:.2f} ms CPU per dossier on one core, this run; limit {limit:.0f}/s on {floor.cores} cores")
    print(f"elapsed       {elapsed:.2f} s")
    print(f"receipts/s    {rate:.1f}   = {rate / limit * 100:.1f} % of the limit")
    print(f"latency ms    p50 {ms[50]:.1f}   p90 {ms[90]:.1f}   p99 {ms[99]:.1f}   max {lat[-1] * 1000:.1f}   "
          f"(p99 = {ms[99] / floor_ms:.0f}x the floor)")  # fmt: skip
    if fig.get("stages"):  # where the receipts' time went, as the server logged it
        print("stages ms     " + "   ".join(
            f"{stage} p50 {percentile(v, 50):.1f} p99 {percentile(v, 99):.1f}" for stage, v in fig["stages"].items()
        ) + "   (server log: check = workers, sign = to its notice signed, write = to the commit)")  # fmt: skip
    print(f"statuses      {dict(sorted(tally.statuses.items(), key=str))}")
    if not ok:
        print(f"!!!!!!!! NOT EVERY ANSWER WAS 202 !!!!!!!!  (warm-up: {dict(warm.statuses)})")
        for line in warm.odd + tally.odd:
            print(f"!! {line}")
    res = None
    if "times" in fig:
        res = result_figures(fig, n)
        lat_s = res["latency_s"]
        print(f"results       {res['given']} KET_QUA given ({res['missing']} missing); "
              f"{res['during_receipts_per_s']:.1f}/s while receiving = {res['during_receipts_per_s'] / rate:.2f}x receipts/s, "
              f"{res['during_receipts_per_s'] / limit * 100:.1f} % of the limit")  # fmt: skip
        print(f"results/s     first to last KET_QUA {res['steady_per_s']:.1f}/s ({res['steady_per_s'] / rate:.2f}x receipts/s); "
              f"first receipt to last KET_QUA {res['end_to_end_per_s']:.1f}/s; "
              f"last KET_QUA {res['drain_s']:.1f} s after the last receipt")  # fmt: skip
        print(f"result lat. s p50 {lat_s[50]:.2f}   p90 {lat_s[90]:.2f}   p99 {lat_s[99]:.2f}   max {lat_s['max']:.2f}   "
              f"(KET_QUA stored minus received_at; target p99 <= 60 s)")  # fmt: skip
    print(f"CPU/dossier   receipts phase: {per_dossier(fig['cpu_receipts'], n, floor.per_dossier_s)}   (x = times the floor)")
    if "cpu_all" in fig:
        print(f"CPU/dossier   receipt + result: {per_dossier(fig['cpu_all'], n, floor.per_dossier_s)}")
    print(f"client CPU    {fig['client_cpu']:.2f} s ({fig['client_cpu'] / elapsed * 100:.0f}% of one core) on the same cores")
    ceiling = cpu_ceiling(fig, n, floor.cores)
    pg_ms = ceiling["postgres_ms_per_dossier"]
    if pg_ms is not None:
        print(f"PostgreSQL    {pg_ms:.2f} ms CPU per dossier ({pg_ms / floor_ms:.1f}x the floor), its local processes in the receipts phase")
    whose = "server + workers" + (" + PostgreSQL" if pg_ms is not None else "")
    unseen = "; a PostgreSQL elsewhere not counted" if args.store_url and pg_ms is None else ""
    print(f"CPU ceiling   {floor.cores} cores / {ceiling['ms_per_dossier']:.2f} ms ({whose}) per dossier "
          f"= {ceiling['per_s']:.0f}/s = {ceiling['per_s'] / limit * 100:.1f} % of the limit; the cores were "
          f"{ceiling['busy'] * 100:.0f} % busy ({ceiling['client'] * 100:.0f} % of it the client{unseen})")  # fmt: skip
    for p in fig["procs"]:
        print(f"server mem    {p.role:<7} pid {p.pid:<7} peak VmHWM {benchlib.mib(p.hwm_kb):>10}  VmRSS {benchlib.mib(p.rss_kb):>10}")
    if fig["exit_code"] not in (0, None):
        print(f"!! the server exited with {fig['exit_code']} after SIGTERM")
    if args.json:
        print(json.dumps({
            "bench": "receipts", "count": n, "rows": args.rows, "concurrency": args.concurrency,
            "rate": fig["rate"], "processes": args.processes, "workers": args.workers, "store": fig["store"], "results": not args.no_results,
            "floor_ms": round(floor_ms, 3), "limit_per_s": round(limit, 1), "load": load,
            "elapsed_s": round(elapsed, 3), "receipts_per_s": round(rate, 1),
            "receipts_of_limit": round(rate / limit, 4),
            "p50_ms": round(ms[50], 2), "p90_ms": round(ms[90], 2), "p99_ms": round(ms[99], 2),
            "stage_ms": {stage: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for stage, v in fig.get("stages", {}).items()},
            "statuses": {str(k): v for k, v in tally.statuses.items()}, "all_202": ok,
            "results_fig": res and {k: v for k, v in res.items()},
            "cpu_receipts_s": fig["cpu_receipts"], "cpu_all_s": fig.get("cpu_all"), "cpu_ceiling": ceiling,
            "server_mem_kb": [{"pid": p.pid, "role": p.role, "vm_hwm": p.hwm_kb, "vm_rss": p.rss_kb} for p in fig["procs"]],
        }, default=str))  # fmt: skip
    return ok


def main() -> int:
    args = arguments()
    return 0 if report(args, run(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
