"""Time of the rule layer on ONE large dossier: a procedure-600 dossier whose D02-TS has `--rows`
rows (default 50,000), judged by `interchange.rules.judge.judge(original)`.

Prints, for a few runs after a small warm-up: wall time and CPU time of the whole `judge` (parse
the envelope, decode the files, parse the form, the rules, the records), and separately of the
rule pass over the already parsed form (`judge_form`). CPU time is printed because wall time on a
shared 2-core machine moves with whatever else runs. Asserts nothing about timings.

    .venv/bin/python bench/rules.py [--rows 50000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from interchange.devkit import samples
from interchange.rules.judge import judge, judge_form
from interchange.xmlparse import XmlLimits, parse_xml


def _timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    original = samples.dossier_600(rows=args.rows)
    form = samples.d02ts(args.rows)
    made = time.perf_counter() - t0
    judge(samples.dossier_600(rows=5))  # imports, parameter file, caches

    whole, rules = [], []
    judgement = None
    for _ in range(args.runs):
        wall, cpu, judgement = _timed(lambda: judge(original))
        whole.append((wall, cpu))
    root = parse_xml(form, XmlLimits()).getroot()
    for _ in range(args.runs):
        wall, cpu, _j = _timed(lambda: judge_form("D02-TS", root))
        rules.append((wall, cpu))

    report = {
        "rows": args.rows,
        "dossier_bytes": len(original),
        "judge_wall_s": [round(w, 3) for w, _ in whole],
        "judge_cpu_s": [round(c, 3) for _, c in whole],
        "rule_pass_wall_s": [round(w, 3) for w, _ in rules],
        "rule_pass_cpu_s": [round(c, 3) for _, c in rules],
        "problems": len(judgement.problems),
        "errors": judgement.errors,
        "contribution_changes": len(judgement.extracted.contribution_changes),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"D02-TS of {args.rows} rows, dossier {len(original) / 2**20:.1f} MiB (generated in {made:.1f} s)")
        print(f"judge(original):  best wall {min(w for w, _ in whole):.3f} s, best CPU {min(c for _, c in whole):.3f} s"
              f"   (runs: {', '.join(f'{w:.3f}' for w, _ in whole)})")
        print(f"rule pass alone:  best wall {min(w for w, _ in rules):.3f} s, best CPU {min(c for _, c in rules):.3f} s"
              f"   (runs: {', '.join(f'{w:.3f}' for w, _ in rules)})")
        print(f"{len(judgement.problems)} problems ({judgement.errors} errors), "
              f"{len(judgement.extracted.contribution_changes)} contribution changes extracted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
