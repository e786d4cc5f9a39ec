"""Client commands against a running server (SPEC §5, §10): `submit FILE...|DIR` and
`dossiers list|show|notice|original|evidence`. Server and key: interchange.cli.remote."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from interchange.cli.common import EXIT_FAILED, EXIT_OK, CliError, config_of, print_problems, say, writable
from interchange.cli.progress import Bar, Stages
from interchange.cli.remote import Answer, Client, add_remote_options, remote_of

SO_HO_SO = re.compile(r"\d{5}/\d{4}/[A-Za-z0-9]+")  # the dossier number, NNNNN/YYYY/<office>
NOTICE_KINDS = ("tiep-nhan", "tu-choi", "ket-qua", "bhxh-tiep-nhan", "bhxh-tu-choi")
# What a submission became, by the HTTP status of its answer (SPEC §5)
OUTCOME = {202: "received", 200: "replay", 422: "refused", 409: "conflict"}
GOOD = ("received", "replay")


# ---- submit ----------------------------------------------------------------------------------


def submission_files(names: list[str]) -> list[Path]:
    """The files named, a folder standing for every *.xml file under it (sorted)."""
    files: list[Path] = []
    for name in names:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.xml") if f.is_file())
            if not found:
                raise CliError(f"{p}: a folder without any .xml file")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CliError(f"no such file or folder: {p}")
    return files


def notice_summary(body: bytes) -> dict:
    from interchange.notices.reader import NotANotice, read_notice

    try:
        notice = read_notice(body)
    except NotANotice:
        return {"kind": None, "errors": [], "raw": body[:500].decode("utf-8", "replace")}
    errors = [{
        "layer": p.layer, "code": p.code, "severity": p.severity, "form": p.form, "xpath": p.xpath,
        "line": p.line, "message_vi": p.message_vi, "message_en": p.message_en,
    } for p in notice.problems]  # fmt: skip
    return {"kind": notice.kind, "transaction": notice.transaction_id, "so_ho_so": notice.so_ho_so,
            "received_at": notice.received_text, "due": notice.due_text, "result": notice.result, "errors": errors}


def outcome_of(status: int) -> str:
    if status in OUTCOME:
        return OUTCOME[status]
    return "failed" if status >= 500 or status == 429 else "refused"


async def _submit_one(client: Client, path: Path, args, verify) -> dict:
    data = path.read_bytes()
    headers = {"Content-Type": "application/xml"}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    try:
        answer = await client.post("/api/v1/dossiers", data=data, headers=headers)
    except CliError as exc:
        if "cannot reach" in str(exc):
            raise
        return {"file": str(path), "http_status": None, "outcome": "failed", "kind": None, "errors": [],
                "message": str(exc)}
    summary = notice_summary(answer.body)
    summary.update(file=str(path), http_status=answer.status, outcome=outcome_of(answer.status))
    if summary["kind"] is not None and verify is not None:
        summary["notice_signature_valid"] = (await asyncio.to_thread(verify, answer.body))["ok"]
    elif summary["kind"] is None:
        summary["message"] = Answer(answer.status, answer.headers, answer.body).problem()
    if answer.status in (429, 503) and answer.headers.get("Retry-After"):
        summary["retry_after"] = answer.headers["Retry-After"]
    return summary


def cmd_submit(args) -> int:
    files = submission_files(args.files)
    if args.idempotency_key and len(files) > 1:
        raise CliError("--idempotency-key names one submission: give one file")
    if args.concurrency < 1:
        raise CliError("--concurrency must be 1 or more")
    remote = remote_of(args)
    verify = None
    if not args.no_notice_check:
        from interchange.cli.checks import verify_bytes
        from interchange.trust.certinfo import load_anchor_certs

        cfg = config_of(args)
        if load_anchor_certs(cfg.trust_paths.anchors):

            def verify(body: bytes) -> dict:
                return verify_bytes(cfg, body, at=None)

        else:
            say(args, f"the notices' signatures are not checked: no trust anchors in {cfg.trust_paths.anchors} "
                      "(put the server's notice CA there, or give --config; --no-notice-check says so silently)")

    bar = Bar("submit", len(files), quiet=args.quiet or len(files) == 1)
    # one file: the bar says nothing, a step says how long sending and judging a large one takes
    step = Stages("submit", quiet=args.quiet or len(files) > 1).step(
        f"sending {files[0]} ({files[0].stat().st_size / 1e6:.1f} MB) and waiting for the receipt"
    )
    tally: Counter[str] = Counter()

    async def run() -> list[dict]:
        gate = asyncio.Semaphore(args.concurrency)
        async with Client(remote, timeout=args.timeout, connections=args.concurrency) as client:

            async def one(path: Path) -> dict:
                async with gate:
                    result = await _submit_one(client, path, args, verify)
                tally[result["outcome"]] += 1
                bar.advance(dict(tally))
                if args.json:
                    print(json.dumps(result, ensure_ascii=False), flush=True)
                return result

            return list(await asyncio.gather(*(one(p) for p in files)))

    with step:
        results = asyncio.run(run())
    if not args.json:
        if len(results) == 1:
            _print_one(results[0])
        else:
            _print_table(results)
    bad_notice = [r for r in results if r.get("notice_signature_valid") is False]
    return EXIT_OK if all(r["outcome"] in GOOD for r in results) and not bad_notice else EXIT_FAILED


def _print_one(r: dict) -> None:
    status = r["http_status"]
    if r["kind"] is None:
        print(r.get("message") or f"HTTP {status}")
        if r.get("retry_after"):
            print(f"retry after {r['retry_after']} s")
        return
    if r["outcome"] == "replay":
        print(f"HTTP {status}: REPLAY of an earlier receipt: {r['kind']} {r.get('so_ho_so') or ''} "
              f"(transaction {r['transaction']}, received {r.get('received_at')}); nothing new was stored")
    else:
        print(f"HTTP {status}: {r['kind']} {r.get('so_ho_so') or ''} (transaction {r['transaction']})")
    if "notice_signature_valid" in r:
        print(f"notice signature: {'valid' if r['notice_signature_valid'] else 'NOT VALID'}")
    else:
        print("notice signature: not checked")
    if r.get("due"):
        print(f"result due by: {r['due']}")
    print_problems(r["errors"])


def _print_table(results: list[dict]) -> None:
    width = max(len("FILE"), *(len(r["file"]) for r in results))
    print(f"{'FILE':<{width}}  HTTP  {'OUTCOME':<9} {'SOHOSO':<16} {'TRANSACTION':<32}  ERRORS")
    for r in results:
        codes = ",".join(sorted({e["code"] for e in r["errors"] if e.get("severity") == "error"}))
        if r["kind"] is None:
            codes = r.get("message", "")
        elif r.get("notice_signature_valid") is False:
            codes = ("NOTICE SIGNATURE NOT VALID " + codes).strip()
        print(f"{r['file']:<{width}}  {r['http_status'] or '-':<4}  {r['outcome']:<9} {r.get('so_ho_so') or '-':<16} "
              f"{r.get('transaction') or '-':<32}  {codes or '-'}")
    tally = Counter(r["outcome"] for r in results)
    print(f"{len(results)} files: " + ", ".join(f"{n} {k}" for k, n in sorted(tally.items())))


# ---- dossiers --------------------------------------------------------------------------------


async def resolve(client: Client, ref: str) -> str:
    """A dossier's id from its id or its number (SoHoSo, NNNNN/YYYY/<office>)."""
    if not SO_HO_SO.fullmatch(ref):
        return ref
    answer = await client.get("/api/v1/dossiers", params={"so_ho_so": ref, "limit": "2"})
    if answer.status != 200:
        raise CliError(answer.problem(), EXIT_FAILED)
    items = answer.json().get("items") or []
    matching = [d for d in items if d.get("so_ho_so") == ref]
    if not matching and items:  # a server that does not know the filter: look through the pages
        params = {"limit": "500"}
        while not matching:
            answer = await client.get("/api/v1/dossiers", params=params)
            page = answer.json() if answer.status == 200 else {}
            matching = [d for d in page.get("items") or [] if d.get("so_ho_so") == ref]
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
    if not matching:
        raise CliError(f"no dossier {ref} (or not yours to see)", EXIT_FAILED)
    return matching[0]["id"]


def _local(text: str | None) -> str:
    """A stored time as Vietnamese local time, to the second (notices use +07:00)."""
    if not text:
        return "-"
    from interchange.clock import VN_TZ

    try:
        return datetime.fromisoformat(text).astimezone(VN_TZ).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return text


def cmd_dossiers(args) -> int:
    remote = remote_of(args)
    handler = {"list": _list, "show": _show, "notice": _fetch, "original": _fetch, "evidence": _fetch}

    async def run() -> int:
        async with Client(remote, timeout=args.timeout) as client:
            return await handler[args.dossiers_cmd](client, args)

    return asyncio.run(run())


async def _list(client: Client, args) -> int:
    params = {name: value for name, value in (
        ("state", args.state), ("procedure", args.procedure), ("period", args.period), ("from", args.since),
        ("to", args.until), ("so_ho_so", args.so_ho_so), ("limit", str(args.limit)), ("cursor", args.cursor),
    ) if value}  # fmt: skip
    items, cursor = [], None
    while True:
        answer = await client.get("/api/v1/dossiers", params=params)
        if answer.status != 200:
            raise CliError(answer.problem(), EXIT_FAILED)
        page = answer.json()
        items.extend(page.get("items") or [])
        cursor = page.get("next_cursor")
        if not (args.all and cursor):
            break
        params["cursor"] = cursor
    if args.json:
        print(json.dumps({"items": items, "next_cursor": cursor}, ensure_ascii=False, indent=2))
        return EXIT_OK
    print(f"{'ID':<32}  {'SOHOSO':<16} {'STATE':<9} {'PROC':<10} {'PERIOD':<8} {'MST':<14} RECEIVED")
    for d in items:
        print(f"{d['id']:<32}  {d.get('so_ho_so') or '-':<16} {d['state']:<9} {d.get('procedure') or '-':<10} "
              f"{d.get('period') or '-':<8} {(d.get('unit') or {}).get('mst') or '-':<14} {_local(d.get('received_at'))}")
    print(f"{len(items)} dossier(s)" + (f"; more: --cursor {cursor} (or --all)" if cursor else ""))
    return EXIT_OK


async def _show(client: Client, args) -> int:
    ident = await resolve(client, args.dossier)
    answer = await client.get(f"/api/v1/dossiers/{ident}")
    if answer.status != 200:
        raise CliError(answer.problem(), EXIT_FAILED)
    d = answer.json()
    if args.json:
        print(json.dumps(d, ensure_ascii=False, indent=2))
        return EXIT_OK
    unit = d.get("unit") or {}
    print(f"dossier {d['id']}  {d.get('so_ho_so') or ''}")
    print(f"  state: {d['state']}{'  (OVERDUE)' if d.get('overdue') else ''}")
    print(f"  unit: {unit.get('name') or '-'}  MST {unit.get('mst') or '-'}  code {unit.get('code') or '-'}"
          + (f"  via I-VAN {d['ivan_code']}" if d.get("ivan_code") else ""))
    print(f"  procedure {d.get('procedure') or '-'}, period {d.get('period') or '-'}, {d.get('size')} bytes, "
          f"SHA-256 {d.get('sha256')}")
    print(f"  received {_local(d.get('received_at'))}, result due {_local(d.get('due_at'))}, "
          f"result {_local(d.get('result_at'))}")
    print("  layers: " + ", ".join(f"{k} {v}" for k, v in (d.get("layers") or {}).items()))
    for s in d.get("signers") or []:
        print(f"  signer of {s.get('document')}: {(s.get('signer') or {}).get('subject', '-')} "
              f"(MST {s.get('mst') or '-'}, {'valid' if s.get('valid') else 'NOT VALID'})")
    print("  notices: " + (", ".join(d.get("notices") or {}) or "-")
          + f"   (interchange dossiers notice {d['id']} KIND)")
    for w in d.get("work") or []:
        print(f"  work {w['kind']}: {w['state']}, due {_local(w.get('due_at'))}, attempts {w.get('attempts')}"
              + (f", last error: {w['last_error']}" if w.get("last_error") else ""))
    print_problems(d.get("errors") or [])
    return EXIT_OK


async def _fetch(client: Client, args) -> int:
    """notice, original, evidence: the bytes as the server keeps them, to -o FILE or stdout."""
    ident = await resolve(client, args.dossier)
    path = {
        "notice": f"/api/v1/dossiers/{ident}/notices/{getattr(args, 'kind', '')}",
        "original": f"/api/v1/dossiers/{ident}/original",
        "evidence": f"/api/v1/dossiers/{ident}/evidence",
    }[args.dossiers_cmd]
    out = args.out
    if out is None and (args.dossiers_cmd == "evidence" or (args.json and args.dossiers_cmd == "original")):
        out = f"evidence-{ident}.zip" if args.dossiers_cmd == "evidence" else f"original-{ident}.xml"
    target = None if out in (None, "-") or (args.json and out == "-") else writable(out, force=args.force)
    with Stages("dossiers", quiet=args.quiet).step(f"fetching the {args.dossiers_cmd} of {ident}"):
        answer = await client.get(path)
    if answer.status != 200:
        raise CliError(answer.problem(), EXIT_FAILED)
    if args.json:
        if target is not None:
            target.write_bytes(answer.body)
        about = {"dossier": ident, "file": str(target) if target else None, "size": len(answer.body),
                 "sha256": hashlib.sha256(answer.body).hexdigest()}
        if args.dossiers_cmd == "notice":
            about.update(notice_summary(answer.body))
        print(json.dumps(about, ensure_ascii=False, indent=2))
    elif target is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(answer.body)
        sys.stdout.buffer.flush()
    else:
        target.write_bytes(answer.body)
        print(f"{args.dossiers_cmd} of {ident}: {target} ({len(answer.body)} bytes)", file=sys.stderr)
    return EXIT_OK


# ---- the parsers -----------------------------------------------------------------------------


def add_commands(sub) -> None:
    """submit, dossiers."""
    p = sub.add_parser("submit", help="send dossiers to a server, verify each notice, print the outcomes")
    p.add_argument("files", nargs="+", metavar="FILE|DIR",
                   help="dossier files, or folders (every *.xml file under them)")
    add_remote_options(p)
    p.add_argument("--concurrency", type=int, default=4, help="submissions in flight at once (default: %(default)s)")
    p.add_argument("--idempotency-key", help="Idempotency-Key header (one file only): a retry with the same key "
                                             "gets the first answer, never a second dossier")
    p.add_argument("--no-notice-check", action="store_true",
                   help="do not verify the notices' signatures (when this machine lacks the server's notice CA)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for each answer (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines), as answers come")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("dossiers", help="dossiers on a server: list, show, notice, original, evidence")
    dsub = p.add_subparsers(dest="dossiers_cmd", required=True, metavar="{list,show,notice,original,evidence}")
    q = dsub.add_parser("list", help="the dossiers your key may see, newest first, with filters and paging")
    q.add_argument("--state", help="received, refused, accepted or rejected")
    q.add_argument("--procedure", help="MaThuTuc, e.g. 600")
    q.add_argument("--period", help="KyKeKhai, MM/yyyy")
    q.add_argument("--from", dest="since", metavar="TIME", help="received at or after TIME (ISO 8601)")
    q.add_argument("--to", dest="until", metavar="TIME", help="received before TIME (ISO 8601)")
    q.add_argument("--so-ho-so", help="the dossier number, NNNNN/YYYY/<office>")
    q.add_argument("--limit", type=int, default=50, help="dossiers per page, 1..500 (default: %(default)s)")
    q.add_argument("--cursor", help="the page after the one that printed this cursor")
    q.add_argument("--all", action="store_true", help="follow the pages to the end")
    _client_tail(q, "print the page as JSON: {items, next_cursor}")
    q = dsub.add_parser("show", help="one dossier: state, times, layers, signers, errors, notices, work")
    q.add_argument("dossier", metavar="ID|SOHOSO", help="the dossier's id (transaction) or number (00001/2026/BHXH)")
    _client_tail(q, "print the server's JSON")
    for name, what in (("notice", "a signed notice"), ("original", "the exact bytes received"),
                       ("evidence", "the evidence bundle (ZIP; check it with `interchange evidence verify`)")):
        q = dsub.add_parser(name, help=f"fetch {what}")
        q.add_argument("dossier", metavar="ID|SOHOSO", help="the dossier's id (transaction) or number")
        if name == "notice":
            q.add_argument("kind", choices=NOTICE_KINDS, help="which notice (bhxh-*: the agency's, role ivan)")
        default = "evidence-ID.zip" if name == "evidence" else "stdout"
        q.add_argument("-o", "--out", help=f"the file to write, - for stdout (default: {default})")
        q.add_argument("--force", action="store_true", help="replace --out if it exists")
        _client_tail(q, "print what was fetched as JSON (a notice: its kind, number, errors; else file, size, "
                        "SHA-256)")
    p.set_defaults(func=cmd_dossiers)


def _client_tail(q, json_help: str | None) -> None:
    add_remote_options(q)
    q.add_argument("--timeout", type=float, default=300, help="seconds to wait for the answer (default: %(default)s)")
    if json_help:
        q.add_argument("--json", action="store_true", help=json_help)
