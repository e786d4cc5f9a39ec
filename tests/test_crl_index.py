"""The indexed CRL lookup (interchange.trust.crlindex) gives pyhanko-certvalidator's answer on every
CRL shape: direct and indirect CRLs, duplicate serials, reasons, unknown critical entry
extensions, another issuer; HeldCRL's remembered lookups give cryptography's; and a CRL's signature,
checked once per CRL and key, is still refused with another key or when forged."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ObjectIdentifier
from pyhanko_certvalidator.errors import CRLValidationError
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from interchange.devkit import pki
from interchange.trust import crlindex
from interchange.trust.revinfo import HeldCRL
from interchange.trust.revocation import issued_by

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def cas():
    return pki.create_ca("Index CA"), pki.create_ca("Other CA")


def entry(serial: int, days: int, *extensions: tuple[x509.ExtensionType, bool]) -> x509.RevokedCertificate:
    built = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - timedelta(days=days))
    for ext, critical in extensions:
        built = built.add_extension(ext, critical=critical)
    return built.build()


def crl_of(ca: pki.Issued, entries: list[x509.RevokedCertificate]) -> asn1_crl.CertificateList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(NOW - timedelta(days=1)).next_update(NOW + timedelta(days=6)))
    for e in entries:
        builder = builder.add_revoked_certificate(e)
    der = builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return asn1_crl.CertificateList.load(der)


def cert_of(ca: pki.Issued, serial: int) -> asn1_x509.Certificate:
    issued = pki.issue_unit_cert(ca, "0101234565", "Index unit")
    cert = (x509.CertificateBuilder().subject_name(issued.cert.subject).issuer_name(ca.cert.subject)
            .public_key(issued.key.public_key()).serial_number(serial)
            .not_valid_before(NOW - timedelta(days=30)).not_valid_after(NOW + timedelta(days=300))
            .sign(ca.key, hashes.SHA256()))
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def answer(find, cert, certificate_list):
    """What a lookup returns (time, reason name) or raises (its type)."""
    try:
        when, reason = find(cert, cert.issuer, certificate_list, certificate_list.issuer)
    except Exception as exc:  # noqa: BLE001  (the same exception on both sides is part of the answer)
        return type(exc)
    return when, None if reason is None else reason.native


def same(cert, certificate_list) -> object:
    mine, theirs = answer(crlindex.find_cert_in_list, cert, certificate_list), answer(crlindex.PYHANKO_FIND, cert, certificate_list)
    assert mine == theirs
    return mine


UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)


def test_the_shapes_give_pyhankos_answer(cas):
    ca, other = cas
    cert = cert_of(ca, 4242)
    key_compromise = (x509.CRLReason(x509.ReasonFlags.key_compromise), False)
    hold = (x509.CRLReason(x509.ReasonFlags.certificate_hold), False)
    assert same(cert, crl_of(ca, [])) == (None, None)
    assert same(cert, crl_of(ca, [entry(1, 3), entry(2, 4)])) == (None, None)
    revoked = same(cert, crl_of(ca, [entry(1, 3), entry(4242, 5, key_compromise), entry(4242, 9, hold)]))
    assert revoked == (NOW - timedelta(days=5), "key_compromise")  # the first entry listing it
    assert same(cert, crl_of(ca, [entry(4242, 2)]))[1] == "unspecified"
    assert same(cert, crl_of(ca, [entry(4242, 2, UNKNOWN_CRITICAL)])) is NotImplementedError
    assert same(cert, crl_of(other, [entry(4242, 2)])) == (None, None)  # the CRL of another issuer
    # an indirect CRL: the entries after a certificateIssuer extension speak for that issuer
    names = x509.CertificateIssuer([x509.DirectoryName(ca.cert.subject)])
    others = x509.CertificateIssuer([x509.DirectoryName(other.cert.subject)])
    assert same(cert, crl_of(other, [entry(7, 1, (names, True)), entry(4242, 2)]))[0] == NOW - timedelta(days=2)
    assert same(cert, crl_of(ca, [entry(7, 1, (others, True)), entry(4242, 2)])) == (None, None)


def test_random_crls_give_pyhankos_answer(cas):
    ca, _ = cas
    rng = random.Random(20261203)
    certs = {serial: cert_of(ca, serial) for serial in (1, 2, 3, 255, 256, 2**63, 2**64 + 1, 10**30)}
    reasons = [None, *(x509.ReasonFlags(r) for r in ("keyCompromise", "cACompromise", "certificateHold",
                                                     "removeFromCRL", "superseded"))]
    for _ in range(40):
        entries = []
        for _ in range(rng.randrange(0, 30)):
            reason = rng.choice(reasons)
            extensions = [] if reason is None else [(x509.CRLReason(reason), False)]
            entries.append(entry(rng.choice([*certs, rng.randrange(1, 2**40)]), rng.randrange(0, 90), *extensions))
        certificate_list = crl_of(ca, entries)
        for cert in certs.values():
            same(cert, certificate_list)


def test_held_crl_lookups_equal_cryptographys(cas):
    ca, other = cas
    certificate_list = crl_of(ca, [entry(s, s % 7) for s in (5, 9, 5, 2**70, 12)])
    held = HeldCRL.load(certificate_list.dump())
    for serial in (5, 9, 12, 2**70, 6, 0, 2**71):
        mine, theirs = held.entry_for(serial), held.crl.get_revoked_certificate_by_serial_number(serial)
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert (mine.serial_number, mine.revocation_date_utc) == (theirs.serial_number, theirs.revocation_date_utc)
    assert HeldCRL.load(crl_of(ca, []).dump()).entry_for(5) is None
    for issuer in (ca.cert, other.cert, ca.cert):
        assert held.signed_by(issuer) == issued_by(held.crl, issuer)


def test_a_crl_signature_is_checked_once_per_crl_and_key(cas):
    ca, other = cas
    checks = []

    class Counting(DefaultSignatureValidator):
        def validate_signature(self, *args, **kwargs):
            checks.append(1)
            return super().validate_signature(*args, **kwargs)

    def key_of(issued: pki.Issued):
        return asn1_x509.Certificate.load(issued.cert.public_bytes(serialization.Encoding.DER)).public_key

    genuine = crl_of(ca, [entry(1, 3)])
    for _ in range(3):
        crlindex.verify_crl_signature(genuine, key_of(ca), Counting())
    assert len(checks) == 1  # verified once, remembered for this CRL object and key
    for _ in range(2):  # another key: checked (and refused) every time, never taken from the first
        with pytest.raises(CRLValidationError):
            crlindex.verify_crl_signature(genuine, key_of(other), Counting())
    assert len(checks) == 3
    # a CRL claiming the CA as issuer but signed by another key: refused, every time
    forged = asn1_crl.CertificateList.load(genuine.dump())
    forged_by_other = crl_of(other, [entry(1, 3)])
    forged["signature"] = forged_by_other["signature"]
    for _ in range(2):
        with pytest.raises(CRLValidationError):
            crlindex.verify_crl_signature(asn1_crl.CertificateList.load(forged.dump()), key_of(ca), Counting())
