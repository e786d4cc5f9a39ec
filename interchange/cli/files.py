"""Making files: `sample` (an unsigned sample dossier) and `sign` (a form, or a dossier: its
forms first, then the envelope)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from interchange.cli.common import EXIT_OK, CliError, config_of, read_input, say, writable
from interchange.cli.operate import DEMO_PASSWORD
from interchange.cli.progress import Stages
from interchange.clock import utc_now

PASSWORD_ENV = "INTERCHANGE_P12_PASSWORD"


def cmd_sample(args) -> int:
    from interchange.devkit import samples

    out = writable(args.out, force=args.force)
    if args.rows < 0:
        raise CliError("--rows must be 0 or more")
    unit = samples.Unit(mst=args.mst) if args.mst else samples.Unit()
    stages = Stages("sample", quiet=args.quiet)
    with stages.step(f"making a D02-TS of {args.rows} rows"):
        forms = [("D02-TS", "D02-TS.xml", samples.d02ts(args.rows, seed=args.seed, period=args.period))]
        data = samples.envelope(unit, forms, procedure="600", period=args.period)
    out.write_bytes(data)
    print(f"unsigned dossier (procedure 600, D02-TS with {args.rows} rows) for MST {unit.mst}: {out}")
    return EXIT_OK


def p12_password(args) -> bytes | None:
    """The PKCS#12 password: --password, else the environment variable named by --password-env
    (INTERCHANGE_P12_PASSWORD), else the development password of dev-setup's own demo
    certificate (said on stderr), else a prompt on the terminal; never a silent default."""
    if args.password is not None:
        return args.password.encode()
    if os.environ.get(args.password_env) is not None:
        return os.environ[args.password_env].encode()
    if _is_dev_demo_p12(args):
        say(args, f"{args.p12} is dev-setup's demo certificate: using its development password {DEMO_PASSWORD!r}")
        return DEMO_PASSWORD.encode()
    if sys.stdin.isatty():
        return getpass.getpass(f"password of {args.p12}: ").encode()
    raise CliError(f"the password of {args.p12} is needed: set ${args.password_env}, or run in a terminal to be asked")


def _is_dev_demo_p12(args) -> bool:
    """Is the certificate one that `dev-setup` wrote (<data_dir>/demo/unit-*.p12 of the config)?"""
    try:
        demo_dir = (config_of(args).data_path / "demo").resolve()
    except (OSError, ValueError):
        return False
    p12 = Path(args.p12).resolve()
    return p12.parent == demo_dir and p12.name.startswith("unit-")


def _load_signer(args):
    from interchange.devkit.pki import load_p12
    from interchange.trust.xmldsig import DocumentSigner

    data = read_input(args.p12)
    del data  # read only to say "no such file" plainly; load_p12 reads it again
    password = p12_password(args)
    try:
        issued = load_p12(args.p12, password)
    except (ValueError, TypeError) as exc:
        hint = "" if password else f" (no password given: set ${args.password_env})"
        raise CliError(f"cannot open {args.p12}: wrong password, or not a PKCS#12 file{hint} ({exc})") from None
    return DocumentSigner(issued.key, [issued.cert, *issued.chain])


def default_signed_name(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.signed{p.suffix or '.xml'}")


def cmd_sign(args) -> int:
    from interchange.trust.dossier_signing import sign_envelope, sign_form
    from interchange.xmlparse import root_name

    out = writable(args.out or default_signed_name(args.file), force=args.force, source=args.file)
    data = read_input(args.file)
    signer = _load_signer(args)
    is_dossier = root_name(data) == "Hoso"  # which signing; the signing parse judges the whole file
    stages = Stages("sign", quiet=args.quiet)
    what = "the forms, then the envelope" if is_dossier else "the form"
    with stages.step(f"signing {what} of {args.file} ({len(data) / 1e6:.1f} MB)"):
        signed = sign_envelope(data, signer) if is_dossier else sign_form(data, signer)  # large: bounded memory
    out.write_bytes(signed)
    print(f"signed {'dossier (forms, then envelope)' if is_dossier else 'form'}: {out}")
    return EXIT_OK


def add_commands(sub) -> None:
    """sample, sign."""
    p = sub.add_parser("sample", help="write an unsigned sample dossier (procedure 600, one D02-TS)")
    p.add_argument("--rows", type=int, default=20, help="employees in the D02-TS (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the made-up data (default: %(default)s)")
    p.add_argument("--period", default=utc_now().strftime("%m/%Y"), help="KyKeKhai, MM/yyyy (default: this month)")
    p.add_argument("--mst", help="the unit's tax code (default: the demo unit's, 0101234565)")
    p.add_argument("-o", "--out", required=True, help="the file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "sign", help="sign a form, or a dossier (its forms first, then the envelope)",
        description="Sign a form, or a dossier (its unsigned forms first, then the envelope). The "
        f"certificate's password comes from --password-env (default ${PASSWORD_ENV}), else a prompt on "
        "the terminal; dev-setup's demo certificate (data/demo/unit-*.p12) uses its development "
        f"password {DEMO_PASSWORD!r}, and says so. Nothing existing is overwritten without --force.",
    )  # fmt: skip
    p.add_argument("file", help="the unsigned form or Hoso envelope")
    p.add_argument("--p12", required=True, help="the signer's PKCS#12 file (certificate with UID=MST:...)")
    p.add_argument("--password-env", default=PASSWORD_ENV, metavar="NAME",
                   help="environment variable holding the PKCS#12 password (default: %(default)s)")
    p.add_argument("--password", help="the PKCS#12 password itself (visible to other users in the process "
                                      "list: prefer the environment variable or the prompt)")
    p.add_argument("-o", "--out", help="the signed file to write (default: FILE with .signed before its extension)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (even the input file)")
    p.set_defaults(func=cmd_sign)
