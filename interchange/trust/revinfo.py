"""The revocation evidence of one validation: the CRLs and OCSP responses held (`RevocationData`),
which of them may speak for a chain, a revocation listed on any CRL held, and the record of
what was used (`Revocation`, kept with the dossier)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from pyhanko_certvalidator import ValidationContext

from interchange.trust.certchecks import CertProblem, revoked_problem
from interchange.trust.crlindex import index_of
from interchange.trust.revocation import Revocation, issued_by


@dataclass(frozen=True)
class HeldCRL:
    der: bytes
    crl: x509.CertificateRevocationList
    # Handed to pyhanko as the same object each time: asn1crypto parses lazily and keeps what it
    # parsed, and lookups in it are indexed per object (crlindex).
    asn1: asn1_crl.CertificateList
    # Whether an issuer signed it (a signature over megabytes), found out once per issuer.
    _signed_by: dict[x509.Certificate, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, der: bytes) -> HeldCRL:
        return cls(der, x509.load_der_x509_crl(der), asn1_crl.CertificateList.load(der))

    def signed_by(self, issuer: x509.Certificate) -> bool:
        """`revocation.issued_by`, remembered per issuer."""
        known = self._signed_by.get(issuer)
        if known is None:
            known = self._signed_by[issuer] = issued_by(self.crl, issuer)
        return known

    def entry_for(self, serial: int) -> x509.RevokedCertificate | None:
        """The first entry listing `serial` (`get_revoked_certificate_by_serial_number`, without
        reading every entry each time: the index pyhanko's lookups use too)."""
        position = index_of(self.asn1, self.crl).serials.get(serial)
        return None if position is None else self.crl[position]


@dataclass(frozen=True)
class RevocationData:
    """The CRLs and OCSP responses a validation may use, and a digest naming this set."""

    crls: tuple[HeldCRL, ...] = ()
    ocsps: tuple[bytes, ...] = ()
    version: bytes = b""

    @classmethod
    def of(cls, crls: Sequence[bytes], ocsps: Sequence[bytes] = ()) -> RevocationData:
        crls, ocsps = list(dict.fromkeys(crls)), list(dict.fromkeys(ocsps))
        h = hashlib.sha256()
        for digest in sorted(hashlib.sha256(der).digest() for der in crls):
            h.update(digest)
        h.update(b"|")
        for digest in sorted(hashlib.sha256(der).digest() for der in ocsps):
            h.update(digest)
        return cls(tuple(HeldCRL.load(der) for der in crls), tuple(ocsps), h.digest())



def turning_points(certs: Sequence[x509.Certificate], data: RevocationData) -> tuple[datetime, ...]:
    """The moments at which the data held may answer otherwise for `certs`: each held CRL's
    thisUpdate and nextUpdate, and the revocation dates it lists for them (a validation is
    about one moment; between two of these the same data gives the same answer)."""
    points: set[datetime] = set()
    for held in data.crls:
        crl = held.crl
        points.add(crl.last_update_utc)
        if crl.next_update_utc is not None:
            points.add(crl.next_update_utc)
        for cert in certs:
            if cert.issuer == crl.issuer:
                entry = held.entry_for(cert.serial_number)
                if entry is not None:
                    points.add(entry.revocation_date_utc)
    for der in data.ocsps:
        points.update(_ocsp_times(der))
    return tuple(sorted(points))


def _ocsp_times(der: bytes) -> list[datetime]:
    """thisUpdate, nextUpdate and revocationTime of each single response of an OCSP response."""
    try:
        basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        times = []
        for single in basic["tbs_response_data"]["responses"]:
            times += [single["this_update"].native, single["next_update"].native]
            if single["cert_status"].name == "revoked":
                times.append(single["cert_status"].chosen["revocation_time"].native)
        return [t for t in times if isinstance(t, datetime)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


_NO_EXPIRED_CERTS_ON_CRL = x509.ObjectIdentifier("2.5.29.60")  # ExpiredCertsOnCRL


def crls_for(chain_certs: Sequence[x509.Certificate], crls: Sequence[HeldCRL]) -> list[HeldCRL]:
    """Drop a CRL issued after every certificate it could speak for had expired: CAs remove expired
    certificates from their CRLs, so its silence about them proves nothing (unless it says it keeps
    them, ExpiredCertsOnCRL). Without this, point-in-time validation, which accepts revocation data
    issued after the moment, would read "good" into it."""
    kept = []
    for held in crls:
        covered = [c for c in chain_certs if c.issuer == held.crl.issuer]
        keeps_expired = any(e.oid == _NO_EXPIRED_CERTS_ON_CRL for e in held.crl.extensions)
        if (
            covered
            and not keeps_expired
            and all(held.crl.last_update_utc > c.not_valid_after_utc for c in covered)
        ):
            continue
        kept.append(held)
    return kept



def ocsp_serials(der: bytes) -> list[tuple[int, str]]:
    """(serial, status) of each single response in an OCSP response."""
    try:
        resp = asn1_ocsp.OCSPResponse.load(der)
        if resp["response_status"].native != "successful":
            return []
        basic = resp["response_bytes"]["response"].parsed
        return [
            (r["cert_id"]["serial_number"].native, r["cert_status"].name)
            for r in basic["tbs_response_data"]["responses"]
        ]
    except (ValueError, KeyError, TypeError):
        return []


def declares_ocsp(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in aia)


def listed_as_revoked(
    chain: list[x509.Certificate], crls: Sequence[HeldCRL], moment: datetime
) -> tuple[list[CertProblem], list[x509.Certificate], Revocation] | None:
    """A certificate of the path revoked before `moment` on any CRL held that its issuer signed.

    pyhanko reads CRLs only for the certificates its policy asks about, and never a stale one;
    but a revocation, once listed, is final (only a hold can be lifted), so a CA certificate
    revoked on a held CRL, or a revocation on a CRL since superseded, still counts."""
    lifted = (x509.ReasonFlags.remove_from_crl, x509.ReasonFlags.certificate_hold)
    for index, cert in enumerate(chain[:-1]):
        for held in crls:
            if not held.signed_by(chain[index + 1]):
                continue
            entry = held.entry_for(cert.serial_number)
            if entry is None or entry.revocation_date_utc >= moment:
                continue
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            except x509.ExtensionNotFound:
                reason = None
            if reason in lifted:
                continue
            when = entry.revocation_date_utc
            detail = f"CRL indicates {cert.subject.rfc4514_string()} was revoked on {when.isoformat()}"
            return (
                [revoked_problem(index == 0, when, detail)],
                chain,
                Revocation("revoked", "crl", [held.der]),
            )
    return None


def known_crls(ctx: ValidationContext, held: Sequence[HeldCRL]) -> list[HeldCRL]:
    """The CRLs `held` and those pyhanko fetched during this validation (those it holds beyond
    `held`, given to it as these same objects). pyhanko lists the held ones among its own; read
    again, megabytes each, with their signature checked and their index built anew, they cost a
    licensed CA's CRL 0.1-0.3 s in every validation while fetching was on. A fetched CRL is read
    once (`held_crl`)."""
    if not ctx.fetching_allowed:
        return list(held)
    given = {id(c.asn1) for c in held}
    known = list(held)
    for crl in ctx.revinfo_manager.crls:
        if id(crl) in given:
            continue
        try:
            known.append(held_crl(crl.dump()))
        except ValueError:
            continue
    return known


@functools.lru_cache(maxsize=8)  # the CRLs fetched lately: the same one is fetched for many signers
def held_crl(der: bytes) -> HeldCRL:
    """`HeldCRL.load`, the same object for the same bytes (what it remembers lasts)."""
    return HeldCRL.load(der)


def ocsp_answered(chain: list[x509.Certificate], ctx: ValidationContext) -> bool:
    """pyhanko asks OCSP first, and only for a certificate naming a responder: a good answer there
    for the leaf means the CRLs were not needed."""
    if not chain or not declares_ocsp(chain[0]):
        return False
    serial = chain[0].serial_number
    return any((serial, "good") in ocsp_serials(resp.dump()) for resp in ctx.revinfo_manager.ocsps)


def record_used(
    status: str,
    source: str | None,
    ctx: ValidationContext,
    chain: list[x509.Certificate],
    crls: Sequence[HeldCRL],
    moment: datetime,
) -> Revocation:
    """The CRLs and OCSP responses that speak for the certificates of the path: per certificate,
    those of its issuer current at the moment (or the freshest one, when none is), among `crls`
    (`known_crls`: held and fetched)."""
    candidates = {c.der: c for c in crls}.values()
    used: dict[bytes, None] = {}
    for issuer in chain[1:]:
        mine = [c for c in candidates if c.signed_by(issuer)]
        current = [c for c in mine if c.crl.next_update_utc is None or c.crl.next_update_utc >= moment]
        for c in current or sorted(mine, key=lambda c: c.crl.last_update_utc)[-1:]:
            used[c.der] = None
    serials = {c.serial_number for c in chain[:-1] if declares_ocsp(c)}
    ocsps: dict[bytes, None] = {}
    for resp in ctx.revinfo_manager.ocsps:
        der = resp.dump()
        if any(serial in serials for serial, _status in ocsp_serials(der)):
            ocsps[der] = None
    return Revocation(status, source, list(used), list(ocsps))
