"""A certificate looked up in a CRL by its serial number, not by reading every entry; and a CRL's
signature checked once per CRL object and key, not in every validation.

pyhanko-certvalidator (0.33) finds a certificate in a CRL by walking all its entries in Python
(`revinfo.validate_crl.find_cert_in_list`, asn1crypto objects): 0.6 to 1.8 s for a CRL of
100,000 entries, for every signer the path cache does not hold yet. A licensed CA's CRL is of
that size, and nearly every dossier comes from another employer's certificate: the receipt
fell to a few dossiers a second. `install()` gives pyhanko the same function with an index per
CRL (serial number -> the first entry listing it), built once per CRL object and kept as long
as the object is (the trust store holds it for as long as the CRL is current); `HeldCRL`
looks serials up in the same index.

Same answers as pyhanko's walk, by construction:
- an indirect CRL (an entry carries a certificateIssuer extension, which changes the issuer of
  the entries after it), or one whose bytes merely contain that extension's OID, a CRL that
  `cryptography` cannot read, and attribute certificates: pyhanko's own walk;
- otherwise every entry speaks for the CRL's authority, so a certificate of another issuer is
  on no entry, and one of that issuer is on the first entry with its serial number, which is
  read and judged (reason, unknown critical extensions) exactly as pyhanko does.
The serials compare as integers: both sides were read by `cryptography`, which takes DER only,
so equal integers are equal encodings. `tests/test_crl_index.py` compares both on many CRLs.

pyhanko also checks the CRL's signature in every validation: a signature over megabytes (about
2 ms for 100,000 entries), again for each new signer. `install()` has it remember a signature
that verified, per CRL object, issuer key and kind of validator: the same signature over the
same bytes with the same key verifies again. A failure is not remembered: it is checked anew.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko_certvalidator.revinfo import validate_crl

PYHANKO_FIND = validate_crl.find_cert_in_list  # pyhanko's own walk
# pyhanko's CRL signature check (a private function of its module, present from 0.26 to 0.33 at
# least; if a release drops it, nothing is installed in its place and pyhanko checks as it does)
PYHANKO_VERIFY = getattr(validate_crl, "_verify_crl_signature", None)
_CERTIFICATE_ISSUER = asn1_crl.CRLEntryExtensionId("certificate_issuer").dump()


@dataclass(frozen=True)
class CrlIndex:
    serials: dict[int, int] | None  # serial number -> position of the first entry; None: unreadable
    indirect: bool  # an entry may speak for another issuer (certificateIssuer): only a walk decides


_indexes: weakref.WeakKeyDictionary[asn1_crl.CertificateList, CrlIndex] = weakref.WeakKeyDictionary()


def index_of(certificate_list: asn1_crl.CertificateList, crl: x509.CertificateRevocationList | None = None
             ) -> CrlIndex:
    """The index of this CRL object, built the first time (from `crl`, its reading by
    `cryptography`, when the caller has it)."""
    index = _indexes.get(certificate_list)
    if index is None:
        index = _indexes[certificate_list] = _build(certificate_list, crl)
    return index


def find_cert_in_list(cert, cert_issuer_name, certificate_list, crl_authority_name):
    """`validate_crl.find_cert_in_list`: (revocation time, CRLReason) or (None, None)."""
    index = index_of(certificate_list) if isinstance(cert, asn1_x509.Certificate) else None
    if index is None or index.indirect or index.serials is None:
        return PYHANKO_FIND(cert, cert_issuer_name, certificate_list, crl_authority_name)
    if crl_authority_name != cert_issuer_name:
        return None, None
    position = index.serials.get(cert["tbs_certificate"]["serial_number"].native)
    if position is None:
        return None, None
    revoked_cert = certificate_list["tbs_cert_list"]["revoked_certificates"][position]
    # as pyhanko judges the entry it finds
    crl_reason = revoked_cert.crl_reason_value or asn1_crl.CRLReason("unspecified")
    if revoked_cert.critical_extensions - validate_crl.KNOWN_CRL_ENTRY_EXTENSIONS:
        raise NotImplementedError()
    return revoked_cert["revocation_date"].native, crl_reason


_verified: weakref.WeakKeyDictionary[asn1_crl.CertificateList, set] = weakref.WeakKeyDictionary()


def verify_crl_signature(certificate_list, public_key, sig_validator) -> None:
    """`validate_crl._verify_crl_signature` (CRLValidationError when the signature does not
    verify), done once per CRL object, issuer key and kind of signature validator."""
    key = (public_key.dump(), type(sig_validator))
    done = _verified.get(certificate_list)
    if done is not None and key in done:
        return
    PYHANKO_VERIFY(certificate_list, public_key, sig_validator)
    _verified.setdefault(certificate_list, set()).add(key)


def _build(certificate_list: asn1_crl.CertificateList, crl: x509.CertificateRevocationList | None) -> CrlIndex:
    indirect = _CERTIFICATE_ISSUER in certificate_list["tbs_cert_list"]["revoked_certificates"].dump()
    try:
        crl = crl or x509.load_der_x509_crl(certificate_list.dump())
    except ValueError:
        return CrlIndex(None, indirect)
    serials: dict[int, int] = {}
    for position, entry in enumerate(crl):
        serials.setdefault(entry.serial_number, position)
    return CrlIndex(serials, indirect)


def install() -> None:
    """Give pyhanko-certvalidator the indexed lookup and the remembered signature check (idempotent)."""
    validate_crl.find_cert_in_list = find_cert_in_list
    if PYHANKO_VERIFY is not None:
        validate_crl._verify_crl_signature = verify_crl_signature
