"""The `interchange` command (SPEC §10): serve, dev-setup, pki, keys, sample, sign, submit, verify, check."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from interchange.cardclient import add_command as add_hi_card
from interchange.clock import utc_now
from interchange.codes import LAYERS
from interchange.config import Config, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config(args) -> Config:
    return load_config(getattr(args, "config", None))


def _print_problems(problems: list[dict], out=None) -> None:
    """The problem list, to `out` or else to the `sys.stdout` of the moment (looked up at each
    call, so that a redirection, e.g. `contextlib.redirect_stdout`, catches it)."""
    out = out or sys.stdout
    for p in problems:
        where = p.get("xpath") or "/"
        if p.get("line") is not None:
            where += f" (line {p['line']})"
        form = f" [{p['form']}]" if p.get("form") else ""
        out.write(f"  {p['severity']:<7} {p['layer']:<9} {p['code']:<22}{form} {where}\n")
        out.write(f"          {p.get('message_en') or p['message_vi']}\n")
        if p.get("message_en"):
            out.write(f"          {p['message_vi']}\n")


# ---- serve, dev-setup ------------------------------------------------------------------------


def cmd_serve(args) -> int:
    from interchange.server import serve

    return serve(_config(args), args.processes)


def cmd_dev_setup(args) -> int:
    """First run: development CA, server notice key, demo unit, demo API key (printed once)."""
    from interchange.devkit.pki import ensure_dev_pki
    from interchange.store.store import Store

    cfg = _config(args)
    made = ensure_dev_pki(
        cfg.path(cfg.trust.anchors_dir), cfg.data_path, cfg.signing_key_path, cfg.signing_cert_path,
        demo_mst=args.mst,
    )
    for name in sorted(made.created):
        print(f"created {name}: {made[name]}")

    async def demo_key() -> None:
        store = await Store.open(cfg.store_url)
        try:
            if not any(k.mst == args.mst and k.revoked_at is None for k in await store.keys.list_all()):
                key, token = await store.keys.create("submitter", mst=args.mst, label="demo unit")
                print(f"demo unit {args.mst}: certificate {made['demo_p12']} (password: demo)")
                print(f"demo API key (shown once, keep it): {token}")
        finally:
            await store.close()

    asyncio.run(demo_key())
    return EXIT_OK


# ---- pki, keys -------------------------------------------------------------------------------


def cmd_pki(args) -> int:
    from interchange.devkit import pki

    cfg = _config(args)
    if args.pki_cmd == "init":
        return cmd_dev_setup(args)
    ca_key_path = cfg.data_path / "dev-ca" / "ca-key.pem"
    if not ca_key_path.exists():
        print(f"interchange pki: no development CA key at {ca_key_path}; run `interchange dev-setup` first",
              file=sys.stderr)
        return EXIT_FAILED
    ca_key = pki.load_key_pem(ca_key_path)
    ca_cert = pki.load_certs_pem(cfg.path(cfg.trust.anchors_dir) / "dev-ca.pem")[0]
    ca = pki.Issued(key=ca_key, cert=ca_cert, chain=[])
    if not args.out.endswith(".p12"):
        print("interchange pki issue-unit: --out must name a .p12 file", file=sys.stderr)
        return EXIT_USAGE
    unit = pki.issue_unit_cert(ca, args.mst, args.name, mst_suffix=args.suffix or "", days=args.days)
    pki.write_p12(args.out, unit, args.password.encode() if args.password else None)
    pem = Path(args.out).with_suffix(".pem")
    pki.write_pem_bundle(pem, unit.key, [unit.cert, ca_cert])
    print(f"unit certificate for MST {args.mst}{args.suffix or ''}: {args.out} (and {pem} for xmlsec1)")
    return EXIT_OK


def cmd_keys(args) -> int:
    from interchange.store.store import Store

    cfg = _config(args)

    async def run() -> int:
        store = await Store.open(cfg.store_url)
        try:
            if args.keys_cmd == "create":
                key, token = await store.keys.create(args.role, mst=args.mst, ivan=args.ivan, facility=args.facility,
                                                     label=args.label or "")  # fmt: skip
                print(f"key id {key.key_id} ({key.role}{' ' + key.owner if key.role not in ('auditor', 'admin') else ''})")
                print(f"API key (shown once): {token}")
            elif args.keys_cmd == "rotate":
                rotated = await store.keys.rotate(args.key_id)
                if rotated is None:
                    print(f"no active key {args.key_id}", file=sys.stderr)
                    return EXIT_FAILED
                key, token = rotated
                print(f"key {args.key_id} revoked; its replacement is {key.key_id} ({key.role})")
                print(f"API key (shown once): {token}")
            elif args.keys_cmd == "revoke":
                if not await store.keys.revoke(args.key_id):
                    print(f"no active key {args.key_id}", file=sys.stderr)
                    return EXIT_FAILED
                print(f"revoked {args.key_id}")
            else:
                for k in await store.keys.list_all():
                    state = f"revoked {k.revoked_at.isoformat()}" if k.revoked_at else "active"
                    print(f"{k.key_id}  {k.role:<9} {k.mst or k.ivan or k.facility or '-':<15} {state:<10} {k.label}")
            return EXIT_OK
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:
        print(f"interchange keys: {exc}", file=sys.stderr)
        return EXIT_USAGE


# ---- sample, sign, submit --------------------------------------------------------------------


def cmd_sample(args) -> int:
    from interchange.devkit import samples

    unit = samples.Unit(mst=args.mst) if args.mst else samples.Unit()
    forms = [("D02-TS", "D02-TS.xml", samples.d02ts(args.rows, seed=args.seed, period=args.period))]
    data = samples.envelope(unit, forms, procedure="600", period=args.period)
    Path(args.out).write_bytes(data)
    print(f"unsigned dossier (procedure 600, D02-TS with {args.rows} rows) for MST {unit.mst}: {args.out}")
    return EXIT_OK


def _load_signer(args):
    from interchange.devkit.pki import load_p12
    from interchange.trust.xmldsig import DocumentSigner

    issued = load_p12(args.p12, args.password.encode() if args.password else None)
    return DocumentSigner(issued.key, [issued.cert, *issued.chain])


def cmd_sign(args) -> int:
    from interchange.trust.dossier_signing import sign_envelope, sign_form
    from interchange.xmlparse import XmlLimits, parse_xml

    data = Path(args.file).read_bytes()
    signer = _load_signer(args)
    root = parse_xml(data, XmlLimits(max_elements=50_000_000)).getroot()
    signed = sign_envelope(data, signer) if root.tag == "Hoso" else sign_form(data, signer)
    Path(args.out or args.file).write_bytes(signed)
    print(f"signed {'dossier (forms, then envelope)' if root.tag == 'Hoso' else 'form'}: {args.out or args.file}")
    return EXIT_OK


def cmd_submit(args) -> int:
    import aiohttp

    cfg = _config(args)
    data = Path(args.file).read_bytes()
    headers = {"Authorization": f"Bearer {args.api_key}", "Content-Type": "application/xml"}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    url = args.url or f"http://{cfg.server.host}:{cfg.server.port}"

    async def post() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url.rstrip('/')}/api/v1/dossiers", data=data, headers=headers) as resp:
                return resp.status, await resp.read()

    status, body = asyncio.run(post())
    report = _verify_bytes(cfg, body, at=None)
    summary = _notice_summary(body)
    summary.update(http_status=status, notice_signature_valid=report["ok"])
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"HTTP {status}: {summary.get('kind')} {summary.get('so_ho_so') or ''} (transaction {summary.get('transaction')})")
        print(f"notice signature: {'valid' if report['ok'] else 'NOT VALID'}")
        if summary.get("due"):
            print(f"result due by: {summary['due']}")
        _print_problems(summary["errors"])
    return EXIT_OK if status in (200, 202) and report["ok"] else EXIT_FAILED


def _notice_summary(body: bytes) -> dict:
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
            "due": notice.due_text, "errors": errors}


# ---- verify, check ---------------------------------------------------------------------------


def _verify_bytes(
    cfg: Config, data: bytes, at: datetime | None, revocation: tuple[list[bytes], list[bytes]] | None = None
) -> dict:
    """Every signature in a dossier, a form or a notice; at `at` (a past moment: nothing fetched),
    judging revocation by `revocation` (CRLs, OCSP responses kept with a dossier) when given."""
    from interchange.trust.anchors import TrustStore
    from interchange.trust.report import signature_report
    from interchange.xmlparse import XmlLimits

    crls, ocsps = revocation if revocation is not None else (None, None)
    trust = TrustStore.from_config(cfg.trust, cfg.trust_paths, cache_seconds=0, fetch=at is None, crls=crls,
                                   ocsps=ocsps)  # fmt: skip
    limits = XmlLimits.of(cfg.limits)
    return signature_report(data, trust=trust, limits=limits, at=at or utc_now(), legacy_sha1=cfg.trust.legacy_sha1)


def cmd_verify(args) -> int:
    cfg = _config(args)
    at = datetime.fromisoformat(args.at) if args.at else None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    revocation = None
    if args.revocation:
        from cryptography import x509

        from interchange.trust.revocation import revocation_data_from_json

        crls: list[bytes] = []
        ocsps: list[bytes] = []
        for name in args.revocation:
            try:
                found = revocation_data_from_json(json.loads(Path(name).read_text()))
                for der in found[0]:
                    x509.load_der_x509_crl(der)
            except ValueError as exc:
                print(f"interchange verify: {name}: not revocation data kept with a dossier ({exc})", file=sys.stderr)
                return EXIT_USAGE
            crls.extend(found[0])
            ocsps.extend(found[1])
        revocation = (crls, ocsps)
    report = _verify_bytes(cfg, Path(args.file).read_bytes(), at, revocation)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        for sig in report["signatures"]:
            signer = sig.get("signer") or {}
            print(f"{sig['document']}: {'VALID' if sig['valid'] else 'NOT VALID'}")
            print(f"  signer: {signer.get('subject', '-')}")
            print(f"  MST: {sig.get('mst') or '-'}   valid {signer.get('not_before', '?')} .. {signer.get('not_after', '?')}")
            print(f"  chain: {' <- '.join(c.get('common_name') or c['subject'] for c in sig.get('chain', [])) or '-'}")
            if sig.get("signing_time"):
                print(f"  signing time (claimed, unsigned): {sig['signing_time']}")
            rev = sig.get("revocation")
            if rev:
                used = f", {len(rev['crls'])} CRL(s)" if rev["crls"] else ""
                used += f", {len(rev['ocsp'])} OCSP response(s)" if rev["ocsp"] else ""
                print(f"  revocation: {rev['status']}{' (' + rev['source'] + ')' if rev['source'] else ''}{used}")
        _print_problems(report["problems"])
        print("OK: every signature is valid" if report["ok"] else "FAILED")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def cmd_check(args) -> int:
    """The receipt's layers (envelope, signature, schema), then, when they pass, the rule layer:
    the error list a TU_CHOI or a KET_QUA notice would carry."""
    from interchange.intake.pipeline import Receiver
    from interchange.legal.params import configured_parameters
    from interchange.rules.judge import judge

    cfg = _config(args)
    data = Path(args.file).read_bytes()
    outcome = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits).receive(data, utc_now())
    if args.registration and outcome.accepted:
        outcome = asyncio.run(_registration_gate(cfg, outcome))
    problems = [p.as_dict() for p in outcome.problems]
    truncated = outcome.truncated
    rule_layer, judgement = "not_run", None
    if outcome.accepted:
        judgement = judge(data, params=configured_parameters(cfg.parameters_path), limits=cfg.limits)
        problems += [p.as_dict() for p in judgement.problems]
        truncated += judgement.truncated
        rule_layer = "passed" if judgement.accepted else "failed"
    ok = outcome.accepted and judgement is not None and judgement.accepted
    if args.json:
        # `layers` stays the receipt's (TIEP_NHAN/TU_CHOI); the rule layer decides KET_QUA.
        print(json.dumps({"ok": ok, "layers": outcome.layers, "rule_layer": rule_layer, "problems": problems,
                          "truncated": truncated, "envelope": outcome.envelope,
                          "parameters": judgement.params if judgement else None}, ensure_ascii=False, indent=2))
    else:
        print("layers: " + ", ".join(f"{k} {v}" for k, v in outcome.layers.items()) + f", rule {rule_layer}")
        _print_problems(problems)
        if truncated:
            print(f"  ... and {truncated} more")
        if not outcome.accepted:
            print("REFUSED (TU_CHOI)")
        elif ok:
            print("OK: the dossier would be received (TIEP_NHAN) and accepted (KET_QUA CHAP_NHAN)")
        else:
            print("received (TIEP_NHAN), then REJECTED by the rules (KET_QUA KHONG_CHAP_NHAN)")
    return EXIT_OK if ok else EXIT_FAILED


async def _registration_gate(cfg, outcome):
    """The server's registration gate (SPEC §9) against the configured store, as with
    `[registration] required = true`: the same decision the server makes at receipt."""
    from interchange.receiving.receipt import registration_gate
    from interchange.server import reception_policy
    from interchange.store import Store

    store = await Store.open(cfg.store_url)
    try:
        return await registration_gate(store, replace(reception_policy(cfg), registration_required=True), outcome)
    finally:
        await store.close()


def cmd_rules(args) -> int:
    """The rule catalogue: code, severity, forms, what each rule requires (Vietnamese, English)."""
    from interchange.legal.params import configured_parameters
    from interchange.rules.catalogue import PROCEDURES, RULES

    params = configured_parameters(_config(args).parameters_path)
    if args.json:
        print(json.dumps({
            "parameters": params.stamp,
            "rules": [r.as_dict() for r in RULES],
            "procedures": {code: {"needs": sorted(p.needs), "may": sorted(p.may), "attachments": p.attachments}
                           for code, p in PROCEDURES.items()},
        }, ensure_ascii=False, indent=2))  # fmt: skip
        return EXIT_OK
    print(f"{len(RULES)} rules (legal parameters version {params.version})")
    for r in RULES:
        print(f"{r.code:<22} {r.severity:<7} {', '.join(r.forms)}")
        print(f"    {r.title_vi}")
        print(f"    {r.title_en}")
    return EXIT_OK


def cmd_codes(args) -> int:
    """Every code the server can emit (notices' Loi/Ma, problem+json `code`): layer, severity, text."""
    from interchange.rules.catalogue import every_code

    listed = every_code(args.layer)
    if args.json:
        print(json.dumps({"codes": [c.as_dict() for c in listed]}, ensure_ascii=False, indent=2))
        return EXIT_OK
    print(f"{len(listed)} codes" + (f" of layer {args.layer}" if args.layer else ""))
    for c in listed:
        print(f"{c.layer:<9} {c.severity:<7} {c.code}")
        print(f"    {c.vi}")
        print(f"    {c.en}")
    return EXIT_OK


# ---- audit, evidence -------------------------------------------------------------------------


def cmd_audit(args) -> int:
    """`audit verify`: recompute the whole hash chain; say where the first break is."""
    from interchange.store.store import Store

    cfg = _config(args)

    async def run():
        store = await Store.open(cfg.store_url)
        try:
            return await store.audit.verify()
        finally:
            await store.close()

    report = asyncio.run(run())
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    elif report.ok:
        print(f"OK: {report.entries} audit entries, chain intact up to seq {report.head_seq} ({report.head_hash})")
    else:
        first = report.findings[0]
        print(f"FAILED: first break at seq {first.seq} ({first.what}): {first.message}")
        for finding in report.findings[1:20]:
            print(f"  seq {finding.seq} ({finding.what}): {finding.message}")
        more = len(report.findings) - 20 + report.more_findings
        if more > 0:
            print(f"  ... and {more} more")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_evidence(args) -> int:
    """`evidence verify FILE.zip`: check a bundle offline (no server, no network)."""
    from interchange.evidence.bundle import load_trusted, verify_bundle
    from interchange.trust.certinfo import load_anchor_certs

    if args.trusted:
        trusted, legacy_sha1 = load_trusted(args.trusted), False
    else:
        cfg = _config(args)
        trusted, legacy_sha1 = load_anchor_certs(cfg.path(cfg.trust.anchors_dir)), cfg.trust.legacy_sha1
    if not trusted:
        print("interchange evidence: no trust anchors (give --trusted PEM or [trust] anchors_dir)", file=sys.stderr)
        return EXIT_USAGE
    report = verify_bundle(Path(args.file).read_bytes(), trusted, legacy_sha1=legacy_sha1)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"dossier {report.dossier_id or '?'} {report.so_ho_so or ''} ({report.state or '?'}, received {report.received_at or '?'})")
        for check in report.checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        print("OK: the evidence verifies" if report.ok else "FAILED")
    return EXIT_OK if report.ok else EXIT_FAILED


# ---- parser ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Every (sub)command takes --config, before or after its name (SPEC §10: `serve [--config FILE]`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config", default=argparse.SUPPRESS, help="config file (default: $INTERCHANGE_CONFIG, else ./config.toml)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interchange", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    _add_setup_commands(sub)
    _add_keys_commands(sub)
    _add_document_commands(sub)
    _add_check_commands(sub)
    _add_catalogue_commands(sub)
    _add_record_commands(sub)
    add_hi_card(sub, lambda args: f"http://{_config(args).server.host}:{_config(args).server.port}")
    return parser


def _add_setup_commands(sub) -> None:
    """serve, dev-setup, pki: running the server and its development PKI."""
    p = sub.add_parser("serve", help="start the server")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="N HTTP processes on one port (SO_REUSEPORT), supervised; N > 1 needs PostgreSQL")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("dev-setup", help="first run: development CA, notice key, demo unit and API key")
    p.add_argument("--mst", default="0101234565", help="the demo unit's tax code")
    p.set_defaults(func=cmd_dev_setup)

    p = sub.add_parser("pki", help="development PKI")
    psub = p.add_subparsers(dest="pki_cmd", required=True)
    q = psub.add_parser("init", help="same as dev-setup")
    q.add_argument("--mst", default="0101234565")
    q = psub.add_parser("issue-unit", help="issue a unit signing certificate (UID=MST:...) as PKCS#12")
    q.add_argument("--mst", required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--suffix", help="branch suffix, e.g. -001")
    q.add_argument("--days", type=int, default=730)
    q.add_argument("--password", default="demo")
    q.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pki)


def _add_keys_commands(sub) -> None:
    """keys: the API keys of the configured store."""
    p = sub.add_parser("keys", help="API keys")
    ksub = p.add_subparsers(dest="keys_cmd", required=True)
    q = ksub.add_parser("create")
    q.add_argument("--role", required=True, choices=["submitter", "ivan", "auditor", "admin", "facility"])
    q.add_argument("--mst", help="the unit's tax code (10 digits with a valid check digit, optional -NNN)")
    q.add_argument("--ivan", help="the I-VAN's MaIVAN (5 digits)")
    q.add_argument("--facility", help="role facility: the health facility's code (MaBenhVien, 5 characters)")
    q.add_argument("--label")
    q = ksub.add_parser("revoke")
    q.add_argument("key_id")
    q = ksub.add_parser("rotate", help="a new key with the same role and binding; the old one is revoked")
    q.add_argument("key_id")
    ksub.add_parser("list")
    p.set_defaults(func=cmd_keys)


def _add_document_commands(sub) -> None:
    """sample, sign, submit: making a dossier and sending it."""
    p = sub.add_parser("sample", help="write an unsigned sample dossier (procedure 600, one D02-TS)")
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--period", default=utc_now().strftime("%m/%Y"))
    p.add_argument("--mst")
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("sign", help="sign a form, or a dossier (its forms first, then the envelope)")
    p.add_argument("file")
    p.add_argument("--p12", required=True)
    p.add_argument("--password", default="demo")
    p.add_argument("-o", "--out")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("submit", help="send a dossier and verify the notice")
    p.add_argument("file")
    p.add_argument("--api-key", required=True)
    p.add_argument("--url", help="server base URL (default from config)")
    p.add_argument("--idempotency-key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)


def _add_check_commands(sub) -> None:
    """verify, check: what the server would say of a file, offline."""
    p = sub.add_parser("verify", help="verify every signature in a file")
    p.add_argument("file")
    p.add_argument("--at", help="validation time, ISO 8601 (default now; a past time fetches nothing)")
    p.add_argument("--revocation", action="append", metavar="FILE.json",
                   help="revocation data kept with the dossier (its signers' `revocation`, `verify --json` "
                        "output, or a list of base64 CRLs), used instead of today's CRLs; repeatable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", help="the server's envelope, signature, schema and rule checks, offline")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--registration", action="store_true",
                   help="also require the unit to be registered and active in the configured store "
                        "(REG-NOT-ACTIVE otherwise), as the server does with [registration] required")
    p.set_defaults(func=cmd_check)


def _add_catalogue_commands(sub) -> None:
    """rules, codes: what the server can say."""
    p = sub.add_parser("rules", help="list the business rules (code, severity, forms, text)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("codes", help="list every code a notice or an API problem can carry (layer, severity, text)")
    p.add_argument("--json", action="store_true", help="print JSON: {\"codes\": [{code, layer, severity, text_vi, text_en}]}")
    p.add_argument("--layer", choices=LAYERS, help="only the codes of this layer")
    p.set_defaults(func=cmd_codes)


def _add_record_commands(sub) -> None:
    """audit, evidence: checking what the server kept."""
    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_cmd", required=True)
    q = asub.add_parser("verify", help="recompute the hash chain; exit 1 at an edited, removed or reordered entry")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("evidence", help="evidence bundles (GET /api/v1/dossiers/{id}/evidence)")
    esub = p.add_subparsers(dest="evidence_cmd", required=True)
    q = esub.add_parser("verify", help="check a bundle offline: hashes, signatures, times, audit entries")
    q.add_argument("file")
    q.add_argument("--trusted", action="append", metavar="PEM",
                   help="trust anchor(s) for the signatures (default: [trust] anchors_dir); repeatable")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evidence)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"interchange {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # bad config values, times, keys: say what, not a traceback
        print(f"interchange {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. `submit` to a server that is not there
        print(f"interchange {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
