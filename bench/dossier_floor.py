"""The floor of one small dossier: the work a receipt cannot avoid, done the shortest way, in
this process on one core, with lxml and cryptography directly and nothing of the server.

    hardened parse of the envelope (no entities, no network, no DTD)
    the envelope's enveloped signature: C14N 1.0 of SignedInfo, RSA verification of it,
        C14N 1.0 of the document without the Signature, SHA-256, compared with DigestValue
    for each form: base64 decode, hardened parse, the same signature check, lxml XSD validation
    one RSA-signed notice (PKCS#1 v1.5, SHA-256 over a notice-sized document)

Every receipt figure of the benchmarks is read against this, measured in the same run (the
machines are shared and noisy: absolute rates mean little). The checks are real: a digest or a
signature that does not verify raises, so the floor cannot silently skip its work.

    .venv/bin/python bench/dossier_floor.py [--rows 20] [--count 300]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
DS = "{http://www.w3.org/2000/09/xmldsig#}"
NOTICE_SIZE = 3000  # bytes of a signed TIEP_NHAN/KET_QUA, about


@dataclass(frozen=True)
class FloorResult:
    per_dossier_s: float  # best-of-rounds seconds per dossier, one core
    cores: int

    @property
    def limit_per_s(self) -> float:
        """Dossiers per second of the machine at the floor: every core busy with nothing else."""
        return self.cores / self.per_dossier_s

    def describe(self) -> str:
        return (
            f"floor {self.per_dossier_s * 1000:.2f} ms/dossier on one core "
            f"(limit on {self.cores} cores {self.limit_per_s:.0f}/s)"
        )


class Floor:
    def __init__(self, notice_key_pem: Path):
        self.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
        )
        self.schema = etree.XMLSchema(etree.parse(str(REPO / "xsd" / "D02-TS-1.0.xsd")))
        self.key = serialization.load_pem_private_key(notice_key_pem.read_bytes(), password=None)
        self.notice = os.urandom(NOTICE_SIZE // 2).hex().encode()

    def verify(self, root: etree._Element) -> None:
        sig = next(root.iter(f"{DS}Signature"))
        signed_info = sig.find(f"{DS}SignedInfo")
        if signed_info is None:
            raise ValueError("floor: no SignedInfo")
        si_c14n = etree.tostring(signed_info, method="c14n")
        value = base64.b64decode("".join(sig.findtext(f"{DS}SignatureValue").split()))
        der = base64.b64decode("".join(next(sig.iter(f"{DS}X509Certificate")).text.split()))
        public = x509.load_der_x509_certificate(der).public_key()
        public.verify(value, si_c14n, padding.PKCS1v15(), hashes.SHA256())
        parent = sig.getparent()
        parent.remove(sig)  # enveloped-signature
        digest = hashlib.sha256(etree.tostring(root.getroottree(), method="c14n")).digest()
        if base64.b64encode(digest).decode() != "".join(
            signed_info.findtext(f"{DS}Reference/{DS}DigestValue").split()
        ):
            raise ValueError("floor: digest mismatch")

    def once(self, body: bytes) -> None:
        root = etree.fromstring(body, self.parser)
        self.verify(root)
        for content in root.iter("NoiDungFile"):
            form = base64.b64decode(content.text)
            form_root = etree.fromstring(form, self.parser)
            self.verify(form_root)
            if not self.schema.validate(form_root):
                raise ValueError(f"floor: the form is not valid: {self.schema.error_log.last_error}")
        self.key.sign(self.notice, padding.PKCS1v15(), hashes.SHA256())


def best_seconds(bodies: list[bytes], fn: Callable[[bytes], object], *, rounds: int = 3) -> float:
    """CPU seconds per body of `fn`, best of `rounds` passes over `bodies` (after a warm pass over
    the first 20)."""
    for body in bodies[:20]:
        fn(body)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for body in bodies:
            fn(body)
        best = min(best, (time.process_time() - started) / len(bodies))
    return best


def measure(bodies: list[bytes], notice_key_pem: Path, *, rounds: int = 3) -> FloorResult:
    """The floor per dossier over `bodies`, best of `rounds` passes (after one warm pass)."""
    return FloorResult(best_seconds(bodies, Floor(notice_key_pem).once, rounds=rounds), os.cpu_count() or 1)


def small_dossiers(description: str):
    """The arguments `--rows` and `--count`, the benchmarks' PKI and that many fresh signed
    dossiers (cached in bench/out)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args()
    pki = benchlib.ensure_pki()
    return args, pki, benchlib.signed_dossiers(pki, args.rows, args.count)


def main() -> int:
    _, pki, bodies = small_dossiers(__doc__.split("\n\n")[0])
    print(measure(bodies, pki.signing_key).describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
