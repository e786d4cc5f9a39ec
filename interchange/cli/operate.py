"""Commands run where the server runs, against its config and store: serve, dev-setup, pki,
keys, audit verify; and the catalogues the server speaks: rules, codes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from interchange.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, config_of
from interchange.cli.progress import Stages
from interchange.codes import LAYERS

DEMO_PASSWORD = "demo"  # dev-setup's demo certificate, and `pki issue-unit`'s default: development only


# ---- serve, dev-setup ------------------------------------------------------------------------


def cmd_serve(args) -> int:
    from interchange.server import serve

    return serve(config_of(args), args.processes)


def cmd_dev_setup(args) -> int:
    """First run: development CA, server notice key, demo unit, demo API key (printed once).
    Later runs: what exists, and how to get a new key."""
    from interchange.devkit.pki import ensure_dev_pki
    from interchange.store.store import Store

    cfg = config_of(args)
    made = ensure_dev_pki(
        cfg.path(cfg.trust.anchors_dir), cfg.data_path, cfg.signing_key_path, cfg.signing_cert_path,
        demo_mst=args.mst,
    )
    for name in sorted(made.created):
        print(f"created {name}: {made[name]}")

    async def demo_key() -> None:
        store = await Store.open(cfg.store_url)
        try:
            active = [k for k in await store.keys.list_all() if k.mst == args.mst and k.revoked_at is None]
            if not active:
                key, token = await store.keys.create("submitter", mst=args.mst, label="demo unit")
                print(f"demo unit {args.mst}: certificate {made['demo_p12']} (password: {DEMO_PASSWORD})")
                print(f"demo API key (shown once, keep it): {token}")
                return
            if not made.created:
                print(f"already set up (store {cfg.store_url.split('@')[-1]}):")
                for name in ("ca", "signing_key", "signing_cert", "demo_p12"):
                    if name in made:
                        print(f"  {name}: {made[name]}")
                print(f"  demo unit {args.mst}: certificate password {DEMO_PASSWORD!r}; "
                      f"its API key {', '.join(k.key_id for k in active)} was shown on the first run only")
                print(f"lost it? `interchange keys rotate {active[0].key_id}` prints a replacement "
                      f"(the old one stops working), or `interchange keys create --role submitter --mst {args.mst}`")
        finally:
            await store.close()

    asyncio.run(demo_key())
    return EXIT_OK


# ---- pki, keys -------------------------------------------------------------------------------


def cmd_pki(args) -> int:
    from interchange.devkit import pki

    cfg = config_of(args)
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
    password = f"development password {DEMO_PASSWORD!r}" if args.password == DEMO_PASSWORD else "the password given"
    print(f"unit certificate for MST {args.mst}{args.suffix or ''}: {args.out}, {password} (and {pem} for xmlsec1)")
    return EXIT_OK


def cmd_keys(args) -> int:
    from interchange.store.store import Store

    cfg = config_of(args)

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
                    raise CliError(f"no active key {args.key_id} (`interchange keys list` shows them)", EXIT_FAILED)
                key, token = rotated
                print(f"key {args.key_id} revoked; its replacement is {key.key_id} ({key.role})")
                print(f"API key (shown once): {token}")
            elif args.keys_cmd == "revoke":
                if not await store.keys.revoke(args.key_id):
                    raise CliError(f"no active key {args.key_id} (`interchange keys list` shows them)", EXIT_FAILED)
                print(f"revoked {args.key_id}")
            else:
                keys = await store.keys.list_all()
                print(f"{'KEY ID':<12}  {'ROLE':<9} {'BOUND TO':<15} {'STATE':<10} LABEL")
                for k in keys:
                    state = f"revoked {k.revoked_at.isoformat()}" if k.revoked_at else "active"
                    print(f"{k.key_id}  {k.role:<9} {k.mst or k.ivan or k.facility or '-':<15} {state:<10} {k.label}")
                if not keys:
                    print("(no keys: `interchange keys create --role ROLE ...` makes one)")
            return EXIT_OK
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:
        raise CliError(str(exc)) from None


# ---- audit, rules, codes ---------------------------------------------------------------------


def cmd_audit(args) -> int:
    """`audit verify`: recompute the whole hash chain; say where the first break is."""
    from interchange.store.store import Store

    cfg = config_of(args)

    async def run():
        store = await Store.open(cfg.store_url)
        try:
            return await store.audit.verify()
        finally:
            await store.close()

    with Stages("audit", quiet=args.quiet).step("recomputing the audit log's hash chain"):
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


def cmd_rules(args) -> int:
    """The rule catalogue: code, severity, forms, what each rule requires (Vietnamese, English)."""
    from interchange.legal.params import configured_parameters
    from interchange.rules.catalogue import PROCEDURES, RULES

    params = configured_parameters(config_of(args).parameters_path)
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


# ---- the parsers -----------------------------------------------------------------------------


def add_commands(sub) -> None:
    """serve, dev-setup, pki, keys, audit, rules, codes."""
    p = sub.add_parser("serve", help="start the server (address from [server] host/port, default 127.0.0.1:8080)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="N HTTP processes on one port (SO_REUSEPORT), supervised; N > 1 needs PostgreSQL "
                        "(default: %(default)s)")  # fmt: skip
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("dev-setup", help="first run: development CA, notice key, demo unit and API key; "
                                         "later runs say what exists")
    p.add_argument("--mst", default="0101234565", help="the demo unit's tax code (default: %(default)s)")
    p.set_defaults(func=cmd_dev_setup)

    p = sub.add_parser("pki", help="the development PKI (never for production)")
    psub = p.add_subparsers(dest="pki_cmd", required=True, metavar="{init,issue-unit}")
    q = psub.add_parser("init", help="same as dev-setup")
    q.add_argument("--mst", default="0101234565", help="the demo unit's tax code (default: %(default)s)")
    q = psub.add_parser("issue-unit", help="issue a unit signing certificate (UID=MST:...) as PKCS#12")
    q.add_argument("--mst", required=True, help="the unit's tax code, 10 digits")
    q.add_argument("--name", required=True, help="the unit's name (the certificate's CN)")
    q.add_argument("--suffix", help="branch suffix, e.g. -001")
    q.add_argument("--days", type=int, default=730, help="validity in days (default: %(default)s)")
    q.add_argument("--password", default=DEMO_PASSWORD,
                   help="the PKCS#12 password (development default: %(default)r)")
    q.add_argument("--out", required=True, help="the .p12 file to write (a .pem beside it too)")
    p.set_defaults(func=cmd_pki)

    p = sub.add_parser("keys", help="API keys of the configured store: create, list, revoke, rotate")
    ksub = p.add_subparsers(dest="keys_cmd", required=True, metavar="{create,list,revoke,rotate}")
    q = ksub.add_parser("create", help="a new API key, printed once")
    q.add_argument("--role", required=True, choices=["submitter", "ivan", "auditor", "admin", "facility"],
                   help="submitter (one unit), ivan (an I-VAN's clients), auditor (read all), admin, facility")
    q.add_argument("--mst", help="role submitter: the unit's tax code (10 digits with a valid check digit, optional -NNN)")
    q.add_argument("--ivan", help="role ivan: the I-VAN's MaIVAN (5 digits)")
    q.add_argument("--facility", help="role facility: the health facility's code (MaBenhVien, 5 characters)")
    q.add_argument("--label", help="a note shown by `keys list`")
    q = ksub.add_parser("revoke", help="stop a key at once")
    q.add_argument("key_id", help="the key id (the part after ik_ in the key, or from `keys list`)")
    q = ksub.add_parser("rotate", help="a new key with the same role and binding; the old one is revoked")
    q.add_argument("key_id", help="the key id to replace")
    ksub.add_parser("list", help="every key: id, role, binding, state, label (never the secret)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_cmd", required=True, metavar="{verify}")
    q = asub.add_parser("verify", help="recompute the hash chain; exit 1 at an edited, removed or reordered entry")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("rules", help="list the business rules (code, severity, forms, text)")
    p.add_argument("--json", action="store_true", help="print the rules, procedures and parameters as JSON")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("codes", help="list every code a notice or an API problem can carry (layer, severity, text)")
    p.add_argument("--json", action="store_true", help="print JSON: {\"codes\": [{code, layer, severity, text_vi, text_en}]}")
    p.add_argument("--layer", choices=LAYERS, help="only the codes of this layer")
    p.set_defaults(func=cmd_codes)
