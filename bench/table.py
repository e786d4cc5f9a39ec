"""Run the receipt benchmarks that say where we stand and write one short table, every figure
beside the floor measured in the same run (bench/receipts.py prints each run in full as well).

    .venv/bin/python bench/table.py [--count 3000] [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/test]
        [--out bench/out/table.md] [--only sqlite-results,...,large] [--large-rows 50000]

Runs, on SQLite and (with --pg) on PostgreSQL:
  results    closed loop at concurrency 32, result work on: receipts/s, results/s, result latency
  receipts   the same with the result work off (--no-results): the receipt alone
  paced      open loop at 25 % of the limit, result work on: the latency at the load issue #13 names
             (past this server's capacity: it only queues up)
  steady     open loop at 5 % of the limit, result work on: the latency at a load the server
             carries (about half its capacity on the 2-core machines here)
  employers  as `results`, the dossiers signed in turn by 1,100 certificates (each validated on
             its own the first time, as nearly every employer's is) against a licensed CA's CRL
             of 100,000 entries (3.1 MiB) held in crl_dir

and `large`: one 50,000-row D02-TS (bench/large_dossier.py, on SQLite) against its own floor (the
same work on whole trees in one process): in process and over HTTP, and the peak of each process.

The receipt p99 is followed by the p99 of each of its stages, as the server logs them (check: the
worker processes; sign: until its notice is signed; write: until its batch is committed).

The CPU ceiling is the receipts/s that the CPU per dossier of the receipts phase allows with
every core busy: near it (cores near 100 % busy) only less CPU per dossier goes faster.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

RUNS = {  # name: (arguments, most dossiers)
    "results": ([], None),
    "receipts": (["--no-results"], None),
    "paced": (["--rate", "25%"], 1000),  # open loop: past the server's capacity it only queues up
    "steady": (["--rate", "5%"], 1200),  # open loop at about half the capacity here: the latency then
    "employers": (["--signers", "1100", "--crl-entries", "100000"], 1000),
}


def run(name: str, store: str, extra: list[str], count: int, script: str = "receipts.py") -> dict | None:
    cmd = [sys.executable, str(BENCH / script), *(["--count", str(count)] if count else []), "--json", *extra]
    if store:
        cmd += ["--store-url", store]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout, end="")
    if done.returncode != 0 and done.stderr:
        print(done.stderr[-2000:], file=sys.stderr)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        print(f"!! {name}: no figures ({time.perf_counter() - started:.0f} s)")
        return None
    return json.loads(lines[-1])


def row(name: str, fig: dict) -> str:
    floor, limit = fig["floor_ms"], fig["limit_per_s"]
    res = fig.get("results_fig") or {}
    cpu = fig.get("cpu_all_s") or fig["cpu_receipts_s"]
    n = fig["count"]
    per = {role: cpu.get(role, 0.0) / n * 1000 for role in ("server", "worker")}
    total = per["server"] + per["worker"]
    mem = {}
    for p in fig["server_mem_kb"]:
        mem[p["role"]] = max(mem.get(p["role"], 0), p["vm_hwm"])
    results = (
        f"{res['during_receipts_per_s']:.1f} ({res['during_receipts_per_s'] / fig['receipts_per_s']:.2f}x) | "
        f"{res['latency_s']['99']:.1f} s"
        if res
        else "off | -"
    )
    return (
        f"| {name} | {fig['load'][0]:.1f} | {floor:.2f} ms, {limit:.0f}/s | "
        f"{fig['receipts_per_s']:.1f} ({fig['receipts_of_limit'] * 100:.1f} %) | "
        f"{fig['p99_ms']:.0f} ms ({fig['p99_ms'] / floor:.0f}x){stages(fig)} | {results} | "
        f"{per['server']:.1f} + {per['worker']:.1f} = {total:.1f} ms ({total / floor:.1f}x) | {ceiling(fig)} | "
        f"{mem.get('server', 0) / 1024:.0f} / {mem.get('worker', 0) / 1024:.0f} MiB |"
    )


def stages(fig: dict) -> str:
    """The p99 of each receipt stage, as the server logged them (bench/receipts.py)."""
    by_stage = fig.get("stage_ms") or {}
    if not by_stage:
        return ""
    return "; " + ", ".join(f"{stage} {q['p99']:.0f}" for stage, q in by_stage.items())


def ceiling(fig: dict) -> str:
    """receipts/s at the receipts phase's CPU per dossier with every core busy (of the limit), and
    how busy the cores were: near 100 %, only less CPU per dossier goes faster."""
    c = fig.get("cpu_ceiling")
    if not c:
        return "-"
    postgres = ""
    if not fig["store"].startswith("sqlite"):
        pg_ms = c.get("postgres_ms_per_dossier")
        postgres = " (PostgreSQL not counted)" if pg_ms is None else f" (PostgreSQL's {pg_ms:.1f} ms counted)"
    return f"{c['per_s']:.0f}/s ({c['per_s'] / fig['limit_per_s'] * 100:.1f} %), {c['busy'] * 100:.0f} % busy{postgres}"


def large_table(fig: dict) -> str:
    """The large dossier: every time against its floor, every peak against the 350 MiB target
    (500 MiB for the result work, `check` and `sign`)."""
    floor, pipe, http, mib = fig["floor"], fig["pipeline"], fig["http"], 1024
    runs = len(floor.get("runs_s") or [0])
    lines = [
        f"| large dossier ({fig['rows']:,} rows, body {fig['body_bytes'] / 2**20:.0f} MiB) | "
        f"time{f', median of {runs} interleaved runs' if runs > 1 else ''} (x floor) | peak |",
        "|---|---|---|",
        f"| floor: whole trees, one process | {floor['wall_s']:.2f} s | {floor['hwm_kb'] / mib:.0f} MiB |",
        f"| receipt in process (a worker's Receiver) | {pipe['wall_s']:.2f} s ({pipe['wall_s'] / floor['wall_s']:.2f}x) | "
        f"{pipe['hwm_kb'] / mib:.0f} MiB" + (f"; its XSD helper {pipe['helper_maxrss_kb'] / mib:.0f} MiB, "
                                             f"{pipe['helper_cpu_s']:.2f} s CPU" if pipe.get("helper_cpu_s") else "") + " |",
    ]
    if http:
        workers = [p["hwm_kb"] for p in http["after"] if p["role"] == "worker"]
        server = sum(p["hwm_kb"] for p in http["after"] if p["role"] == "server")
        lines.append(f"| POST to its 202 over HTTP (status {http['status']}) | {http['wall_s']:.2f} s "
                     f"({http['wall_s'] / floor['wall_s']:.2f}x) | worker {max(workers, default=0) / mib:.0f} MiB, "
                     f"server {server / mib:.0f} MiB |")
    for name, kind in (("result work: judge", "judge"), ("`check`", "check"), ("`sign`", "sign")):
        r = fig[kind]
        if "wall_s" in r:
            lines.append(f"| {name} | {r['wall_s']:.2f} s | {r['hwm_kb'] / mib:.0f} MiB |")
    return "\n".join(lines)


HEADER = (
    "| run | load | floor, limit | receipts/s (of limit) | receipt p99 (x floor); p99 by stage, ms | results/s while receiving "
    "(x receipts/s) | result latency p99 | CPU/dossier server + workers (x floor) | CPU ceiling (of limit), cores busy "
    "| peak RSS server / worker |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--pg", default="", help="a postgresql+asyncpg URL: the PostgreSQL runs too")
    ap.add_argument("--out", default=str(BENCH / "out" / "table.md"))
    ap.add_argument("--only", default="", help="comma-separated run names (e.g. sqlite-results,pg-paced,large)")
    ap.add_argument("--large-rows", type=int, default=50_000, help="rows of the large dossier (0: no large run)")
    args = ap.parse_args()
    stores = [("sqlite", "")] + ([("pg", args.pg)] if args.pg else [])
    only = {s for s in args.only.split(",") if s}
    rows = []
    for store_name, url in stores:
        for run_name, (extra, most) in RUNS.items():
            name = f"{store_name}-{run_name}"
            if only and name not in only:
                continue
            fig = run(name, url, extra, min(args.count, most or args.count))
            if fig is not None:
                rows.append(row(name, fig))
    table = "\n".join([HEADER, *rows]) if rows else ""
    if args.large_rows and (not only or "large" in only):
        fig = run("large", "", ["--rows", str(args.large_rows)], 0, script="large_dossier.py")
        if fig is not None:
            table += ("\n\n" if table else "") + large_table(fig)
    print()
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n", encoding="utf-8")
    print(f"\n(written to {args.out}; CPU/dossier counts the result work too when it ran; the load is the "
          f"1-minute load average at the end of each run, on a shared machine)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
