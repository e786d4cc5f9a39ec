"""What a signing certificate seen for the first time costs the receipt, in one process.

Nearly every dossier comes from another employer's certificate, so nearly every receipt
validates a certificate path it has not validated before (pyhanko-certvalidator: path building,
the CA's signature, the CRL). This runs `Receiver.receive` (the whole receipt's checking, as a
worker process runs it) in a fresh process over small fresh dossiers, one way each:

  one signer      every dossier signed by the same certificate (its path validated once)
  new signers     each signed by another certificate of the unit (`--signers`, each new)
  + fetching      the same with `[trust] fetch_revocation = true` (pyhanko may fetch CRLs)

with a CRL of `--crl-entries` revoked serials of the bench CA held in `[trust] crl_dir` (a
licensed CA's runs to 100,000 entries), and prints the CPU time per dossier of each beside the
floor measured in the same run (bench/dossier_floor.py) and the ratio to it.

    .venv/bin/python bench/signers.py [--count 300] [--signers 1100] [--crl-entries 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import benchlib
import dossier_floor


def per_dossier_ms(config: Path, bodies: list[bytes], warm: list[bytes]) -> float:
    """CPU ms per dossier of `Receiver.receive` over `bodies`, after `warm` went through."""
    from interchange.config import load_config
    from interchange.intake.pipeline import Caller, Receiver

    cfg = load_config(config, environ={})
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    caller = Caller(role="submitter", mst=benchlib.UNIT.mst)
    for body in warm:  # imports, the trust store, the CRL read and indexed
        receiver.receive(body, datetime.now(UTC), caller)
    started = time.process_time()
    for body in bodies:
        out = receiver.receive(body, datetime.now(UTC), caller)
        if not out.accepted:
            raise SystemExit(f"a dossier was refused: {out.layers} {[p.as_dict() for p in out.problems[:2]]}")
    return (time.process_time() - started) / len(bodies) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=300, help="dossiers measured each way")
    ap.add_argument("--signers", type=int, default=1100, help="certificates of the unit signing in turn")
    ap.add_argument("--crl-entries", type=int, default=100_000, help="entries of the CRL held (0: none)")
    ap.add_argument("--rounds", type=int, default=3, help="the ways run in turn this many times; best kept")
    args = ap.parse_args()
    if args.signers < args.count + 5:
        ap.error("--signers must exceed --count by 5: every measured dossier's certificate is new")

    bench_pki = benchlib.ensure_pki()
    one = benchlib.signed_dossiers(bench_pki, 20, args.count + 5)
    many = benchlib.signed_dossiers(bench_pki, 20, args.count + 5, signers=args.signers)
    floor = dossier_floor.measure(one[5:], bench_pki.signing_key)
    tmp = Path(tempfile.mkdtemp(prefix="bench-signers-"))
    config = benchlib.write_config(tmp, bench_pki, benchlib.sqlite_url(tmp))
    crl = ""
    if args.crl_entries:
        size = benchlib.write_crl(bench_pki, tmp / "crl", args.crl_entries)
        crl = f"; a CRL of {args.crl_entries} entries ({size / 2**20:.1f} MiB) held"
    fetching = tmp / "fetching.toml"
    fetching.write_text(config.read_text().replace("[trust]\n", "[trust]\nfetch_revocation = true\n"))

    print(f"{args.count} small fresh dossiers each way (D02-TS of 20 rows), each way in a process of its own{crl}")
    print(f"floor         {floor.per_dossier_s * 1000:.2f} ms CPU per dossier on one core, this run")
    floor_ms = floor.per_dossier_s * 1000
    ways = [
        ("one signer", config, one),
        ("new signers", config, many),
        ("+ fetching", fetching, many),
    ]
    # each way in a process of its own (nothing remembered from another way), the ways in turn
    # `--rounds` times, the best of each kept: the machines are shared and their speed drifts
    spawn = multiprocessing.get_context("spawn")
    best = dict.fromkeys((name for name, _, _ in ways), float("inf"))
    for _ in range(args.rounds):
        for name, cfg, bodies in ways:
            with spawn.Pool(1) as pool:
                best[name] = min(best[name], pool.apply(per_dossier_ms, (cfg, bodies[5:], bodies[:5])))
    for name, ms in best.items():
        print(f"{name:<13} {ms:6.2f} ms CPU per dossier ({ms / floor_ms:.1f}x the floor), best of {args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
