"""What the server would say of a file, offline: `check` (the receipt's layers, then the rule
layer), `verify` (every signature), `evidence verify` (a bundle). FILE may be a `Hoso` envelope
or a standalone signed form (SPEC §10)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from interchange.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    config_of,
    open_input,
    print_problems,
    read_input,
)
from interchange.cli.progress import Stages
from interchange.clock import utc_now
from interchange.config import Config
from interchange.spool import as_bytes


def parse_at(text: str | None) -> datetime | None:
    """`--at`: ISO 8601; without a zone it is UTC."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-20T10:00:00+07:00)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# ---- verify ----------------------------------------------------------------------------------


def verify_bytes(
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


def _revocation_files(names: list[str]) -> tuple[list[bytes], list[bytes]]:
    """CRLs and OCSP responses from JSON kept with a dossier, or as files (an evidence bundle's
    `revocation/*.crl` and `*.der`, a CA's CRL in PEM or DER)."""
    from cryptography import x509

    from interchange.trust.revocation import REF_KEYS, revocation_data_from_json

    crls: list[bytes] = []
    ocsps: list[bytes] = []
    for name in names:
        data = read_input(name)
        try:
            obj = json.loads(data)
        except ValueError:  # not JSON: a CRL or an OCSP response
            crl, ocsp = _revocation_file(name, data)
            crls.extend(crl)
            ocsps.extend(ocsp)
            continue
        try:
            found = revocation_data_from_json(obj)
            for der in found[0]:
                x509.load_der_x509_crl(der)
        except ValueError as exc:
            raise CliError(f"{name}: not revocation data kept with a dossier ({exc})") from None
        if not any(found) and any(key in json.dumps(obj) for key in REF_KEYS.values()):
            raise CliError(f"{name}: names its CRLs and OCSP responses by SHA-256 only; give their files "
                           "(the evidence bundle's revocation/*.crl and *.der) with --revocation")
        crls.extend(found[0])
        ocsps.extend(found[1])
    return crls, ocsps


def _revocation_file(name: str, data: bytes) -> tuple[list[bytes], list[bytes]]:
    from asn1crypto import ocsp
    from cryptography import x509

    from interchange.trust.revocation import crl_ders

    try:
        ders = crl_ders(data)
        for der in ders:
            x509.load_der_x509_crl(der)
        return ders, []
    except ValueError:
        pass
    try:
        ocsp.OCSPResponse.load(data).native  # noqa: B018  (parses it all: refuses what is not one)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{name}: neither JSON kept with a dossier, nor a CRL, nor an OCSP response ({exc})") from None
    return [], [data]


def _signature_state(sig: dict) -> str:
    """VALID, or NOT VALID with the cryptography apart from the certificate's trust."""
    if sig["valid"]:
        return "VALID"
    intact, trusted = sig.get("signature_intact"), sig.get("certificate_trusted")
    parts = [{True: "signature intact", False: "signature BROKEN", None: "signature not checked"}[intact],
             {True: "certificate trusted", False: "certificate NOT trusted", None: "certificate not checked"}[trusted]]
    return f"NOT VALID ({'; '.join(parts)})"


def cmd_verify(args) -> int:
    cfg = config_of(args)
    at = parse_at(args.at)
    revocation = _revocation_files(args.revocation) if args.revocation else None
    data = read_input(args.file)
    with Stages("verify", quiet=args.quiet).step(f"verifying the signatures of {args.file}"):
        report = verify_bytes(cfg, data, at, revocation)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return EXIT_OK if report["ok"] else EXIT_FAILED
    for sig in report["signatures"]:
        signer = sig.get("signer") or {}
        print(f"{sig['document']}: {_signature_state(sig)}")
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
    print_problems(report["problems"])
    print("OK: every signature is valid" if report["ok"] else "FAILED")
    return EXIT_OK if report["ok"] else EXIT_FAILED


# ---- check -----------------------------------------------------------------------------------


def cmd_check(args) -> int:
    """The receipt's layers (envelope, signature, schema), then, when they pass, the rule layer:
    the error list a TU_CHOI or a KET_QUA notice would carry. A standalone signed form gets the
    layers that apply to it: signature, schema, its form's rules."""
    from interchange.intake.pipeline import Receiver
    from interchange.legal.params import configured_parameters
    from interchange.rules.judge import judge, judge_form
    from interchange.xmlparse import root_name

    cfg = config_of(args)
    at = parse_at(args.at)
    data = open_input(args.file)
    stages = Stages("check", quiet=args.quiet)
    # a large form's XSD in a forked helper beside the pass, as a worker does ([server] validate_aside_mib)
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits, fetch=at is None,
                                    validate_aside_from=cfg.server.validate_aside_from)
    root = root_name(data)
    standalone = root != "Hoso" and root is not None and receiver.schemas.knows(root)
    with stages.step(f"envelope, signature and schema checks of {args.file} ({len(data) / 1e6:.1f} MB)"):
        if standalone:
            data = as_bytes(data)
            outcome = receiver.receive_form(data, at or utc_now(), Path(args.file).name)
        else:
            outcome = receiver.receive(data, at or utc_now())
    if args.registration and outcome.accepted and not standalone:
        outcome = asyncio.run(_registration_gate(cfg, outcome))
    problems = [p.as_dict() for p in outcome.problems]
    truncated = outcome.truncated
    rule_layer, judgement = "not_run", None
    if outcome.accepted:
        params = configured_parameters(cfg.parameters_path)
        with stages.step("the rule layer"):
            if standalone:
                judgement = judge_form(root, data, params=params, max_errors=cfg.limits.max_errors)
            else:
                judgement = judge(data, params=params, limits=cfg.limits)
        problems += [p.as_dict() for p in judgement.problems]
        truncated += judgement.truncated
        rule_layer = "passed" if judgement.accepted else "failed"
    ok = outcome.accepted and judgement is not None and judgement.accepted
    if args.json:
        # `layers` stays the receipt's (TIEP_NHAN/TU_CHOI); the rule layer decides KET_QUA.
        print(json.dumps({"ok": ok, "standalone_form": root if standalone else None, "layers": outcome.layers,
                          "rule_layer": rule_layer, "problems": problems, "truncated": truncated,
                          "envelope": outcome.envelope, "signers": [_public(s) for s in outcome.signers],
                          "revocation_data": _inline(outcome.revocation_data),
                          "parameters": judgement.params if judgement else None}, ensure_ascii=False, indent=2))
    else:
        _print_check(outcome, problems, truncated, rule_layer, ok, root if standalone else None)
    return EXIT_OK if ok else EXIT_FAILED


def _inline(data: dict[str, tuple[str, bytes]]) -> dict:
    """The revocation data the signers name by SHA-256, in base64: the report is self-contained
    (`verify --revocation` reads it back)."""
    from base64 import b64encode

    from interchange.trust.revocation import CRL, INLINE_KEYS, OCSP

    return {INLINE_KEYS[wanted]: [b64encode(der).decode() for kind, der in data.values() if kind == wanted]
            for wanted in (CRL, OCSP)}


def _public(signer: dict) -> dict:
    return {k: v for k, v in signer.items() if k != "chain_pem"}


def _print_check(outcome, problems: list[dict], truncated: int, rule_layer: str, ok: bool, form: str | None) -> None:
    if form:
        print(f"a standalone {form} form (no envelope: the signer's MST is not bound to a unit)")
    print("layers: " + ", ".join(f"{k} {v}" for k, v in outcome.layers.items()) + f", rule {rule_layer}")
    print_problems(problems)
    if truncated:
        print(f"  ... and {truncated} more")
    if form:
        print("OK: the form passes its signature, schema and rules" if ok else "FAILED")
    elif not outcome.accepted:
        print("REFUSED (TU_CHOI)")
    elif ok:
        print("OK: the dossier would be received (TIEP_NHAN) and accepted (KET_QUA CHAP_NHAN)")
    else:
        print("received (TIEP_NHAN), then REJECTED by the rules (KET_QUA KHONG_CHAP_NHAN)")


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


# ---- evidence --------------------------------------------------------------------------------


def cmd_evidence(args) -> int:
    """`evidence verify FILE.zip`: check a bundle offline (no server, no network)."""
    from interchange.evidence.bundle import load_trusted, verify_bundle
    from interchange.trust.certinfo import load_anchor_certs

    if args.trusted:
        trusted, legacy_sha1 = load_trusted(args.trusted), False
    else:
        cfg = config_of(args)
        trusted, legacy_sha1 = load_anchor_certs(cfg.path(cfg.trust.anchors_dir)), cfg.trust.legacy_sha1
    if not trusted:
        raise CliError("no trust anchors (give --trusted PEM or [trust] anchors_dir)", EXIT_USAGE)
    data = read_input(args.file)
    with Stages("evidence", quiet=args.quiet).step(f"verifying {args.file}"):
        report = verify_bundle(data, trusted, legacy_sha1=legacy_sha1)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"dossier {report.dossier_id or '?'} {report.so_ho_so or ''} ({report.state or '?'}, received {report.received_at or '?'})")
        for check in report.checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        print("OK: the evidence verifies" if report.ok else "FAILED")
    return EXIT_OK if report.ok else EXIT_FAILED


# ---- the parsers -----------------------------------------------------------------------------


def add_commands(sub) -> None:
    """verify, check, evidence."""
    p = sub.add_parser("verify", help="verify every signature in a dossier, a standalone form or a notice")
    p.add_argument("file", help="a Hoso envelope, a signed form (D02-TS, TK1-TS, M01B-HSB...) or a notice")
    p.add_argument("--at", help="validation time, ISO 8601 (default now; a past time fetches nothing)")
    p.add_argument("--revocation", action="append", metavar="FILE",
                   help="revocation data kept with the dossier, used instead of today's CRLs: a CRL or OCSP "
                        "response file (an evidence bundle's revocation/*.crl, *.der), `verify --json` or "
                        "`check --json` output, or a list of base64 CRLs; repeatable")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (per signature: valid, signature_intact, certificate_trusted, ...)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", help="the server's envelope, signature, schema and rule checks, offline")
    p.add_argument("file", help="a Hoso envelope, or a standalone signed form (signature, schema and its rules)")
    p.add_argument("--at", help="judge as of this time, ISO 8601 (default now; a past time fetches nothing)")
    p.add_argument("--json", action="store_true", help="print the layers and problems as JSON")
    p.add_argument("--registration", action="store_true",
                   help="also require the unit to be registered and active in the configured store "
                        "(REG-NOT-ACTIVE otherwise), as the server does with [registration] required")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("evidence", help="evidence bundles (GET /api/v1/dossiers/{id}/evidence)")
    esub = p.add_subparsers(dest="evidence_cmd", required=True, metavar="{verify}")
    q = esub.add_parser("verify", help="check a bundle offline: hashes, signatures, times, audit entries")
    q.add_argument("file", help="the evidence ZIP (`interchange dossiers evidence ID` fetches one)")
    q.add_argument("--trusted", action="append", metavar="PEM",
                   help="trust anchor(s) for the signatures (default: [trust] anchors_dir); repeatable")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evidence)
