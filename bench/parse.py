"""The hardened parse of one large form beside its floor (a plain lxml parse of the same bytes),
with the parts it adds timed alone: the shape gates (byte scans), the element count and the depth.

    .venv/bin/python bench/parse.py [--rows 50000]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interchange.config import LimitsConfig  # noqa: E402
from interchange.devkit import samples  # noqa: E402
from interchange.xmlparse import XmlLimits, parse_xml, shape_gates  # noqa: E402


def best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the D02-TS form")
    args = parser.parse_args()
    form = samples.d02ts(args.rows)
    limits = XmlLimits.of(LimitsConfig())
    root = etree.fromstring(form, parser=etree.XMLParser(huge_tree=True))
    floor = best(lambda: etree.fromstring(form, parser=etree.XMLParser(huge_tree=True)))
    hardened = best(lambda: parse_xml(form, limits))
    print(f"form          {len(form) / 2**20:.1f} MiB, {args.rows} rows")
    print(f"floor         {floor:.3f} s  (lxml parse)")
    print(f"parse_xml     {hardened:.3f} s  ({hardened / floor:.1f} x the floor)")
    print(f"  gates       {best(lambda: shape_gates(form, limits)):.3f} s  (byte scans for the shape limits)")
    print(f"  count       {best(lambda: root.xpath('count(//*)')):.3f} s")
    print(f"  depth       {best(lambda: root.xpath('boolean(/' + '*/' * limits.max_depth + '*)')):.3f} s")


if __name__ == "__main__":
    main()
