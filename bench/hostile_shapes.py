"""Time to a TU_CHOI for hostile XML shapes: small bodies that used to hold a worker for minutes.

For every shape, in a FRESH subprocess (so that one shape's memory or a hang does not touch the
next), prints:
  size     the body's size
  floor    a plain lxml parse of the same bytes (`etree.fromstring`, huge_tree): what any
           XML-reading server pays at least
  pipeline `Receiver.from_config(...).receive(body, now, caller)` (interchange/intake/pipeline.py),
           the same call the worker processes make, until its outcome
  outcome  accepted / the failed layer and the first codes
A shape that runs past `--timeout` seconds is killed and printed as `>timeout`.

Not a test: nothing here asserts on a timing.

    .venv/bin/python bench/hostile_shapes.py [--timeout 60] [--only attrs-10000,...] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib  # noqa: E402
from lxml import etree  # noqa: E402

from interchange.devkit import samples  # noqa: E402
from interchange.trust.dossier_signing import sign_envelope  # noqa: E402
from interchange.trust.xmldsig import to_bytes  # noqa: E402

FILE_PATH = "NoiDung/ThongTinHoSo/ToKhais/FileToKhai"


def _attrs(n: int, value: bytes = b"x") -> bytes:
    return b"".join(b' a%d="%s"' % (i, value) for i in range(n))


def _on(tag: bytes, extra: bytes) -> Callable[[bytes, object], bytes]:
    return lambda body, signer: body.replace(b"<" + tag + b">", b"<" + tag + extra + b">", 1)


def _inside(tag: bytes, content: bytes) -> Callable[[bytes, object], bytes]:
    return lambda body, signer: body.replace(b"</" + tag + b">", content + b"</" + tag + b">", 1)


def _form_with(edit: Callable[[bytes], bytes], rows: int = 3) -> Callable[[bytes, object], bytes]:
    """A D02-TS edited, then signed by the unit (a hostile but key-holding submitter)."""

    def build(body: bytes, signer) -> bytes:
        # signed as is (sign_form would parse it with the default limits first)
        form = to_bytes(signer.sign(etree.fromstring(edit(samples.d02ts(rows, unit=benchlib.UNIT))), location="Cky"))
        data = samples.envelope(benchlib.UNIT, [("D02-TS", "D02-TS.xml", form)])
        return sign_envelope(data, signer, sign_forms=False)

    return build


def _many_files(n: int) -> Callable[[bytes, object], bytes]:
    def build(body: bytes, signer) -> bytes:
        entry = (
            b"<FileToKhai><MaToKhai>PDF</MaToKhai><MoTaToKhai>x</MoTaToKhai><TenFile>f%d.pdf</TenFile>"
            b"<LoaiFile>.pdf</LoaiFile><DoDaiFile>4</DoDaiFile><NoiDungFile>%s</NoiDungFile></FileToKhai>"
        )
        files = b"".join(entry % (i, base64.b64encode(b"%03d" % (i % 1000))) for i in range(n))
        return body.replace(b"</ToKhais>", files + b"</ToKhais>", 1)

    return build


def _bad_rows(body: bytes, signer) -> bytes:
    return _form_with(lambda form: form.replace(b"<TienLuong>", b"<TienLuong>x"), rows=300)(body, signer)


SHAPES: dict[str, Callable[[bytes, object], bytes]] = {
    "baseline": lambda body, signer: body,
    "attrs-1000": _on(b"ThongTinHoSo", _attrs(1000)),
    "attrs-2000": _on(b"ThongTinHoSo", _attrs(2000)),
    "attrs-10000": _on(b"ThongTinHoSo", _attrs(10_000)),
    "attrs-100000": _on(b"ThongTinHoSo", _attrs(100_000)),
    "attrs-10000-in-signed-form": _form_with(lambda f: f.replace(b"<NoiDung>", b"<NoiDung" + _attrs(10_000) + b">", 1)),
    "nsdecls-10000": _on(b"ThongTinHoSo", b"".join(b' xmlns:p%d="urn:p%d"' % (i, i) for i in range(10_000))),
    "long-element-name-1M": _inside(b"NoiDung", b"<" + b"N" * 1_000_000 + b"/>"),
    "long-attribute-name-1M": _on(b"ThongTinHoSo", b" " + b"a" * 1_000_000 + b'="x"'),
    "long-attribute-value-20M": _on(b"NoiDung", b' x="' + b"A" * (20 * 1024 * 1024) + b'"'),
    "attrs-1000-of-10k-chars": _on(b"ThongTinHoSo", _attrs(1000, b"v" * 10_000)),
    "small-elements-100k": _inside(b"ThongTinHoSo", b"<x/>" * 100_000),
    "small-elements-1M": _inside(b"ThongTinHoSo", b"<x/>" * 1_000_000),
    "small-bad-elements-20k-in-envelope": _inside(b"ThongTinDonVi", b"<MaSoThue>x</MaSoThue>" * 20_000),
    "huge-text-node-50M": _inside(b"TenThuTuc", b"T" * (50 * 1024 * 1024)),
    "many-files-5000": _many_files(5000),
    "deep-nesting-60": _inside(b"ThongTinHoSo", b"<d>" * 60 + b"</d>" * 60),
    "deep-nesting-10000": _inside(b"ThongTinHoSo", b"<d>" * 10_000 + b"</d>" * 10_000),
    "bad-value-in-300-rows-of-a-form": _bad_rows,
}


def child(shape: str, config: str, p12: str) -> dict:
    from datetime import UTC, datetime

    from interchange.config import load_config
    from interchange.intake.pipeline import Caller, Receiver

    signer = benchlib.unit_signer(Path(p12))
    cfg = load_config(Path(config))
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    caller = Caller(role="submitter", mst=benchlib.UNIT.mst)
    small = benchlib.make_dossier(signer, 3, 0)
    receiver.receive(small, datetime.now(UTC), caller)  # warm-up: lazy imports, trust cache
    body = SHAPES[shape](small, signer)
    parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
    started = time.perf_counter()
    try:
        etree.fromstring(body, parser=parser)
        floor_note = ""
    except etree.XMLSyntaxError as exc:
        floor_note = f"(lxml: {exc.msg[:40]})"
    floor = time.perf_counter() - started
    started = time.perf_counter()
    out = receiver.receive(body, datetime.now(UTC), caller)
    wall = time.perf_counter() - started
    codes = sorted({p.code for p in out.problems if p.severity == "error"})
    return {
        "shape": shape,
        "bytes": len(body),
        "floor_s": floor,
        "floor_note": floor_note,
        "pipeline_s": wall,
        "outcome": "accepted" if out.accepted else f"{out.failed_layer}: {','.join(codes[:3])}",
    }


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    bench_pki = benchlib.ensure_pki()
    shapes = [s for s in args.only.split(",") if s] or list(SHAPES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = benchlib.write_config(Path(tmp), bench_pki, benchlib.sqlite_url(Path(tmp)))
        print(f"{'shape':36} {'size':>10} {'floor (lxml)':>14} {'pipeline':>10}  outcome")
        for shape in shapes:
            cmd = [sys.executable, __file__, "--child", shape, str(config), str(bench_pki.unit_p12)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                row = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                    "shape": shape, "error": done.stderr.strip().splitlines()[-1:]}
            except subprocess.TimeoutExpired:
                row = {"shape": shape, "timeout": args.timeout}
            rows.append(row)
            if "timeout" in row:
                print(f"{shape:36} {'':>10} {'':>14} {'>' + format(args.timeout, '.0f') + ' s':>10}  (killed)")
            elif "error" in row:
                print(f"{shape:36} error: {row['error']}")
            else:
                print(
                    f"{shape:36} {_size(row['bytes']):>10} {row['floor_s']:>12.3f} s {row['pipeline_s']:>8.3f} s"
                    f"  {row['outcome']} {row['floor_note']}"
                )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
