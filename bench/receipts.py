"""Receipts per second and latency over real HTTP, for small fresh dossiers.

Each dossier is a procedure-600 Hoso with one D02-TS of `--rows` rows, the form and the
envelope both signed, every one with a different seed (so none is a replay). The server
runs as a separate process (`python -m interchange serve`) on a fresh store; an aiohttp
client fires the dossiers at a fixed concurrency after a warm-up, and prints the figures.

    .venv/bin/python bench/receipts.py [--count 3000] [--concurrency 32] [--workers 2]
        [--rows 20] [--store-url postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--json]

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
from pathlib import Path

import aiohttp
import benchlib

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
    import aiohttp

    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout:
            async with session.get(f"{url}/api/v1/dossiers?state=received&limit=1", headers=headers) as resp:
                if not (await resp.json())["items"]:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise TimeoutError(f"dossiers still without a result after {timeout:.0f} s")


async def fire(
    url: str, token: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], collections.Counter, list[str], float]:
    """POST every body with `concurrency` requests in flight; (latencies, statuses, odd answers, elapsed)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    odd: list[str] = []
    it = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def lane() -> None:
            for body in it:
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{url}/api/v1/dossiers", data=body, headers=headers) as resp:
                        answer = await resp.read()
                        status = resp.status
                except aiohttp.ClientError as exc:
                    status, answer = f"error {type(exc).__name__}", str(exc).encode()
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                if status != 202 and len(odd) < 3:
                    odd.append(f"{status}: {answer[:400].decode(errors='replace')}")

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, statuses, odd, elapsed


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--count", type=int, default=3000, help=f"dossiers measured (after a warm-up of {WARMUP})"
    )
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument(
        "--workers",
        type=int,
        default=Config().server.workers,
        help="server worker processes (server.workers; 0 = one thread)",
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
        "(raw collapsed stacks to FILE; needs py-spy on PATH or $PY_SPY)",
    )
    ap.add_argument(
        "--no-results",
        action="store_true",
        help="do not wait for the work queue to judge every dossier (KET_QUA) after the receipts",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (store, server log)")
    ap.add_argument("--json", action="store_true", help="also print one machine-readable JSON line")
    args = ap.parse_args()

    bench_pki = benchlib.ensure_pki()
    bodies = benchlib.signed_dossiers(bench_pki, args.rows, args.count + WARMUP)
    warmup, measured = bodies[:WARMUP], bodies[WARMUP:]
    mean_size = sum(map(len, measured)) / len(measured)

    tmp = Path(tempfile.mkdtemp(prefix="bench-receipts-"))
    schema = None
    server = None
    try:
        store_url, schema = benchlib.bench_store(args.store_url, tmp)
        config = benchlib.write_config(tmp, bench_pki, store_url)
        token = benchlib.create_submitter_key(store_url)
        server = benchlib.Server(config, workers=args.workers)
        ready_s = server.start()
        print(
            f"server pid {server.pid} on {server.url}, workers={args.workers}, ready in {ready_s:.1f} s, "
            f"store {benchlib.describe_store(store_url)}"
        )

        _, warm_status, warm_odd, warm_s = asyncio.run(fire(server.url, token, warmup, args.concurrency))
        print(f"warm-up: {len(warmup)} dossiers in {warm_s:.2f} s {dict(warm_status)}")

        spy = None
        if args.py_spy:
            exe = shutil.which(os.environ.get("PY_SPY", "py-spy"))
            if exe is None:
                print("!! --py-spy: py-spy not found; not profiling", file=sys.stderr)
            else:
                spy = subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--subprocesses",
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--output",
                        args.py_spy,
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # let it attach

        before = {p.pid: p for p in benchlib.server_processes(server.pid)}
        client_cpu0 = cpu_seconds()
        latencies, statuses, odd, elapsed = asyncio.run(fire(server.url, token, measured, args.concurrency))
        client_cpu = cpu_seconds() - client_cpu0
        after = benchlib.server_processes(server.pid)
        results_s = None if args.no_results else asyncio.run(wait_for_results(server.url, token)) + elapsed
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
    finally:
        exit_code = server.stop() if server is not None else None
        if schema is not None:
            schema.drop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    latencies.sort()
    ms = {q: percentile(latencies, q) * 1000 for q in (50, 90, 99)}
    rate = len(latencies) / elapsed
    ok = statuses.get(202, 0) == len(measured) and warm_status.get(202, 0) == len(warmup)
    server_cpu = {p.role: 0.0 for p in after}
    for p in after:
        server_cpu[p.role] += p.cpu_s - (before[p.pid].cpu_s if p.pid in before else 0.0)

    print()
    print(
        f"dossiers      {len(latencies)} fresh, D02-TS {args.rows} rows, {mean_size / 1024:.1f} KiB each, "
        f"signed form + envelope"
    )
    print(f"concurrency   {args.concurrency}")
    print(f"workers       {args.workers}")
    print(f"store         {benchlib.describe_store(store_url)}")
    print(f"elapsed       {elapsed:.2f} s")
    print(f"receipts/s    {rate:.1f}")
    print(
        f"latency ms    p50 {ms[50]:.1f}   p90 {ms[90]:.1f}   p99 {ms[99]:.1f}   max {latencies[-1] * 1000:.1f}"
    )
    print(f"statuses      {dict(sorted(statuses.items(), key=str))}")
    if results_s is not None:
        total = len(latencies) + len(warmup)
        print(
            f"results       every KET_QUA {results_s:.2f} s after the first measured request "
            f"({total} incl. warm-up: {total / results_s:.1f} results/s, judged, recorded and signed by the work queue)"
        )
    if not ok:
        print(f"!!!!!!!! NOT EVERY ANSWER WAS 202 !!!!!!!!  (warm-up: {dict(warm_status)})")
        for line in warm_odd + odd:
            print(f"!! {line}")
    print(
        f"client CPU    {client_cpu:.2f} s ({client_cpu / elapsed * 100:.0f}% of one core) "
        f"on the same {os.cpu_count()} cores"
    )
    print(
        "server CPU    "
        + ", ".join(
            f"{role} {s:.2f} s ({s / elapsed * 100:.0f}% of a core)" for role, s in server_cpu.items()
        )
    )
    for p in after:
        print(
            f"server mem    {p.role:<7} pid {p.pid:<7} VmHWM {benchlib.mib(p.hwm_kb):>10}  VmRSS {benchlib.mib(p.rss_kb):>10}"
        )
    total_rss = sum(p.rss_kb for p in after)
    print(
        f"server mem    total VmRSS {benchlib.mib(total_rss)} (sum of VmHWM {benchlib.mib(sum(p.hwm_kb for p in after))})"
    )
    if exit_code not in (0, None):
        print(f"!! the server exited with {exit_code} after SIGTERM")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "receipts",
                    "count": len(latencies),
                    "rows": args.rows,
                    "concurrency": args.concurrency,
                    "workers": args.workers,
                    "store": benchlib.describe_store(store_url),
                    "elapsed_s": round(elapsed, 3),
                    "receipts_per_s": round(rate, 1),
                    "p50_ms": round(ms[50], 2),
                    "p90_ms": round(ms[90], 2),
                    "p99_ms": round(ms[99], 2),
                    "max_ms": round(latencies[-1] * 1000, 2),
                    "statuses": {str(k): v for k, v in statuses.items()},
                    "all_202": ok,
                    "client_cpu_s": round(client_cpu, 2),
                    "server_cpu_s": {k: round(v, 2) for k, v in server_cpu.items()},
                    "server_mem_kb": [
                        {"pid": p.pid, "role": p.role, "vm_hwm": p.hwm_kb, "vm_rss": p.rss_kb} for p in after
                    ],
                }
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
