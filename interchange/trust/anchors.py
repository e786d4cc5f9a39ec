"""Certificate path validation against the trust anchors in `certs/` (pyhanko-certvalidator),
with revocation checking (see `revocation.py` for where CRLs come from and the policies).

The path (chain to an anchor, signatures, CA constraints, revocation) is the expensive part
and depends only on the chain and the revocation data, so its result is cached per chain
and per version of the CRL set for `cache_seconds`; the validity dates are re-checked on
every call at the time asked for, so a cached answer never stretches a certificate's life.
A new or changed CRL file (in `crl_dir` or the fetched-CRL cache) is noticed on the next
call, so the cache never hides it; a revocation that only comes into effect with the passing
of time (a future revocation date, a CRL going stale) is hidden at most `cache_seconds`.

`validate_at` is the point-in-time check: the chain and revocation as of a past moment, with
the revocation data kept with a dossier instead of today's, never fetching.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers import Fetchers
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy

from interchange import codes
from interchange.trust.certinfo import load_anchor_certs
from interchange.trust.revocation import (
    SOFT_FALLBACK,
    CachingCRLFetcher,
    CrlCache,
    NoCertFetcher,
    NoCRLFetcher,
    NoOCSPFetcher,
    Revocation,
    check_mode,
    checking_policy,
    dir_fingerprint,
    issued_by,
    load_crl_dir,
)

if TYPE_CHECKING:
    from interchange.config import TrustConfig, TrustPaths

ALLOWED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
MIN_RSA_BITS = 2048
# A TLS-only certificate is not a signing certificate: refuse leaves whose EKU is only these.
TLS_ONLY_EKUS = {ExtendedKeyUsageOID.SERVER_AUTH}


@dataclass(frozen=True)
class CertProblem:
    code: str
    message_vi: str
    message_en: str


@dataclass
class PathResult:
    problems: list[CertProblem] = field(default_factory=list)
    chain: list[x509.Certificate] = field(default_factory=list)  # leaf first, anchor last
    revocation: Revocation | None = None  # the answer, and the CRLs/OCSP responses it rests on

    @property
    def ok(self) -> bool:
        return not self.problems


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _from_asn1(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _untrusted(exc: Exception) -> CertProblem:
    return CertProblem(
        codes.SIG_UNTRUSTED,
        "Chứng thư ký không được cấp bởi tổ chức chứng thực tin cậy.",
        f"The certificate does not chain to a trusted anchor: {exc}",
    )


def key_problem(cert: x509.Certificate) -> CertProblem | None:
    """The algorithm allow-list of SPEC §3 for the signer's key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return CertProblem(
                codes.SIG_WEAK_KEY,
                f"Khóa RSA {key.key_size} bit quá yếu (tối thiểu {MIN_RSA_BITS} bit).",
                f"RSA key of {key.key_size} bits is too weak (minimum {MIN_RSA_BITS}).",
            )
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            return CertProblem(
                codes.SIG_WEAK_KEY,
                f"Đường cong {key.curve.name} không được chấp nhận.",
                f"Curve {key.curve.name} is not allowed.",
            )
        return None
    return CertProblem(
        codes.SIG_WEAK_KEY, "Loại khóa không được chấp nhận.", f"Key type {type(key).__name__} is not allowed."
    )


def usage_problems(cert: x509.Certificate) -> list[CertProblem]:
    """A signing leaf: not a CA, key usage allows signing, not a TLS-only certificate."""
    problems = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append(
                CertProblem(
                    codes.SIG_CA_LEAF,
                    "Chứng thư ký là chứng thư của tổ chức cấp (CA=true), không dùng để ký hồ sơ.",
                    "The signing certificate is a CA certificate (CA=true).",
                )
            )
    except x509.ExtensionNotFound:
        pass
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.content_commitment):
            problems.append(
                CertProblem(
                    codes.SIG_KEY_USAGE,
                    "Mục đích sử dụng khóa không cho phép ký số.",
                    "Key usage does not allow digital signatures.",
                )
            )
    except x509.ExtensionNotFound:
        pass
    try:
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if eku and eku <= TLS_ONLY_EKUS:
            problems.append(
                CertProblem(
                    codes.SIG_KEY_USAGE,
                    "Chứng thư chỉ dùng cho máy chủ TLS, không dùng để ký hồ sơ.",
                    "The certificate is for TLS servers only, not for signing documents.",
                )
            )
    except x509.ExtensionNotFound:
        pass
    return problems


def validity_problems(chain: list[x509.Certificate], at: datetime) -> list[CertProblem]:
    problems = []
    for index, cert in enumerate(chain):
        who = "Chứng thư ký" if index == 0 else "Chứng thư tổ chức cấp"
        whom = (
            "The signing certificate" if index == 0 else f"Issuer certificate {cert.subject.rfc4514_string()}"
        )
        if at < cert.not_valid_before_utc:
            problems.append(
                CertProblem(
                    codes.SIG_NOT_YET_VALID,
                    f"{who} chưa có hiệu lực tại thời điểm nhận (hiệu lực từ {cert.not_valid_before_utc.isoformat()}).",
                    f"{whom} is not yet valid at receipt (valid from {cert.not_valid_before_utc.isoformat()}).",
                )
            )
        elif at > cert.not_valid_after_utc:
            problems.append(
                CertProblem(
                    codes.SIG_EXPIRED,
                    f"{who} đã hết hạn tại thời điểm nhận (hết hạn {cert.not_valid_after_utc.isoformat()}).",
                    f"{whom} had expired at receipt (expired {cert.not_valid_after_utc.isoformat()}).",
                )
            )
    return problems


def _revoked_problem(is_leaf: bool, when: datetime | None, detail: str) -> CertProblem:
    who = "Chứng thư ký" if is_leaf else "Chứng thư của tổ chức cấp"
    on = f" từ {when.isoformat()}" if when else ""
    return CertProblem(codes.SIG_REVOKED, f"{who} đã bị thu hồi{on}.", f"Certificate revoked: {detail}")


def _unknown_problem(detail: str) -> CertProblem:
    return CertProblem(
        codes.SIG_REVOCATION_UNKNOWN,
        "Không xác định được tình trạng thu hồi của chứng thư (không có CRL hoặc phản hồi OCSP còn hiệu lực).",
        f"The revocation status could not be established (no current CRL or OCSP response): {detail}",
    )


@dataclass(frozen=True)
class _HeldCRL:
    der: bytes
    crl: x509.CertificateRevocationList
    # Handed to pyhanko as the same object each time: asn1crypto parses lazily and keeps what it
    # parsed, so the scan of a large CRL's entries pays the parsing once, not per validation.
    asn1: asn1_crl.CertificateList

    @classmethod
    def load(cls, der: bytes) -> _HeldCRL:
        return cls(der, x509.load_der_x509_crl(der), asn1_crl.CertificateList.load(der))


@dataclass(frozen=True)
class RevocationData:
    """The CRLs and OCSP responses a validation may use, and a digest naming this set."""

    crls: tuple[_HeldCRL, ...] = ()
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
        return cls(tuple(_HeldCRL.load(der) for der in crls), tuple(ocsps), h.digest())


@dataclass
class _Cached:
    expires: float  # time.monotonic()
    at: datetime  # the validation time it was computed for
    problems: list[CertProblem]
    chain: list[x509.Certificate]
    revocation: Revocation


_NO_EXPIRED_CERTS_ON_CRL = x509.ObjectIdentifier("2.5.29.60")  # ExpiredCertsOnCRL


def _crls_for(chain_certs: Sequence[x509.Certificate], crls: Sequence[_HeldCRL]) -> list[_HeldCRL]:
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


def _chain_of(exc: Exception) -> list[x509.Certificate]:
    path = getattr(exc, "original_path", None)
    if path is None:
        return []
    return [_from_asn1(c) for c in reversed(list(path)) if isinstance(c, asn1_x509.Certificate)]


def _ocsp_serials(der: bytes) -> list[tuple[int, str]]:
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


def _declares_ocsp(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in aia)


def _listed_as_revoked(
    chain: list[x509.Certificate], crls: Sequence[_HeldCRL], moment: datetime
) -> tuple[list[CertProblem], list[x509.Certificate], Revocation] | None:
    """A certificate of the path revoked before `moment` on any CRL held that its issuer signed.

    pyhanko reads CRLs only for the certificates its policy asks about, and never a stale one;
    but a revocation, once listed, is final (only a hold can be lifted), so a CA certificate
    revoked on a held CRL, or a revocation on a CRL since superseded, still counts."""
    lifted = (x509.ReasonFlags.remove_from_crl, x509.ReasonFlags.certificate_hold)
    for index, cert in enumerate(chain[:-1]):
        for held in crls:
            if not issued_by(held.crl, chain[index + 1]):
                continue
            entry = held.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
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
                [_revoked_problem(index == 0, when, detail)],
                chain,
                Revocation("revoked", "crl", [held.der]),
            )
    return None


class TrustStore:
    """Trust anchors, revocation data from disk, and a cache of path-validation results.

    Synchronous (it runs in the receipt workers and the CLI); from async code, call it in a thread.
    """

    def __init__(
        self,
        anchors_dir: Path,
        crl_dir: Path | None = None,
        cache_seconds: int = 300,
        *,
        revocation: str = "soft-fail",
        revocation_cache: Path | None = None,
        fetch_crls: bool = False,
        ocsp: bool = False,
        crls: Sequence[bytes] | None = None,
        ocsps: Sequence[bytes] | None = None,
    ):
        """`crls`/`ocsps` given: exactly this revocation data is used (nothing read from disk,
        nothing fetched), as when re-checking a dossier with the data kept with it."""
        self.anchors_dir = Path(anchors_dir)
        self.crl_dir = Path(crl_dir) if crl_dir else None
        self.cache_seconds = cache_seconds
        self.mode = check_mode(revocation)
        self.fixed = crls is not None or ocsps is not None
        self.revocation_cache = CrlCache(revocation_cache) if revocation_cache and not self.fixed else None
        self.fetch_crls = fetch_crls and self.revocation_cache is not None
        self.ocsp = ocsp and not self.fixed
        self.anchors = load_anchor_certs(self.anchors_dir)
        self._asn1_anchors = [_to_asn1(c) for c in self.anchors]
        self._cache: dict[bytes, _Cached] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fingerprint: tuple | None = None
        self._data = RevocationData.of(crls or (), ocsps or ()) if self.fixed else RevocationData()
        if not self.fixed:
            self.reload()

    @classmethod
    def from_config(
        cls,
        t: TrustConfig,
        paths: TrustPaths,
        *,
        cache_seconds: int | None = None,
        fetch: bool = True,
        crls: Sequence[bytes] | None = None,
        ocsps: Sequence[bytes] | None = None,
    ) -> TrustStore:
        """The store `[trust]` describes, reading the folders of `paths`; `fetch=False` never
        touches the network whatever it says."""
        return cls(
            paths.anchors,
            paths.crls,
            t.cache_seconds if cache_seconds is None else cache_seconds,
            revocation=t.revocation,
            revocation_cache=paths.cache,
            fetch_crls=fetch and t.fetch_revocation,
            ocsp=fetch and t.ocsp,
            crls=crls,
            ocsps=ocsps,
        )

    # ---- revocation data held -----------------------------------------------------------------

    def _dirs(self) -> tuple[Path | None, Path | None]:
        return self.crl_dir, self.revocation_cache.directory if self.revocation_cache else None

    def reload(self) -> None:
        """Read the CRLs of `crl_dir` and of the fetched-CRL cache again."""
        fingerprint = dir_fingerprint(*self._dirs())
        self._data = RevocationData.of([der for d in self._dirs() for der in load_crl_dir(d)])
        self._fingerprint = fingerprint

    def revocation_data(self) -> RevocationData:
        """The data held now; a change on disk is picked up here (a stat of two folders per call)."""
        if not self.fixed and dir_fingerprint(*self._dirs()) != self._fingerprint:
            self.reload()
        return self._data

    # ---- validation ---------------------------------------------------------------------------

    def _cache_key(
        self, leaf: x509.Certificate, others: list[x509.Certificate], data: RevocationData
    ) -> bytes:
        h = hashlib.sha256(leaf.fingerprint(hashes.SHA256()))
        for c in sorted(c.fingerprint(hashes.SHA256()) for c in others):
            h.update(c)
        h.update(data.version)
        return h.digest()

    def validate(self, leaf: x509.Certificate, others: list[x509.Certificate], at: datetime) -> PathResult:
        """Validate a signing certificate at time `at`, the time of receipt (fetching if allowed)."""
        data = self.revocation_data()
        key = self._cache_key(leaf, others, data)
        cached = self._cache.get(key)
        now = time.monotonic()
        if not (
            cached and cached.expires > now and abs((at - cached.at).total_seconds()) <= self.cache_seconds
        ):
            problems, chain, rev = self._path(leaf, others, at, data, mode=self.mode, fetch=True)
            cached = _Cached(now + self.cache_seconds, at, problems, chain, rev)
            if self.cache_seconds > 0:
                self._remember(key, cached, now)
        return _result(leaf, at, cached.problems, cached.chain, cached.revocation)

    def _remember(self, key: bytes, entry: _Cached, now: float) -> None:
        if len(self._cache) >= 4096:
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
            if len(self._cache) >= 4096:
                self._cache.clear()
        self._cache[key] = entry

    def _path(
        self,
        leaf: x509.Certificate,
        others: list[x509.Certificate],
        at: datetime,
        data: RevocationData,
        *,
        mode: str,
        fetch: bool,
    ) -> tuple[list[CertProblem], list[x509.Certificate], Revocation]:
        if not self.anchors:
            return (
                [
                    CertProblem(
                        codes.SIG_UNTRUSTED,
                        "Máy chủ chưa có chứng thư gốc tin cậy nào.",
                        f"No trust anchors are installed in {self.anchors_dir}.",
                    )
                ],
                [],
                Revocation("unknown"),
            )
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._async_path(leaf, others, at, data, mode=mode, fetch=fetch))

    async def _async_path(
        self,
        leaf: x509.Certificate,
        others: list[x509.Certificate],
        at: datetime,
        data: RevocationData,
        *,
        mode: str,
        fetch: bool,
    ) -> tuple[list[CertProblem], list[x509.Certificate], Revocation]:
        # Dates are checked by the caller at each call; validate the path as of a moment inside
        # the leaf's life so that the cached result is about the chain, not about the clock.
        moment = min(max(at, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
        crls = _crls_for([leaf, *others], data.crls)
        backend = None
        fetchers = None
        if fetch and (self.fetch_crls or self.ocsp):
            ocsp_fetcher = NoOCSPFetcher()
            if self.ocsp:
                from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

                backend = AIOHttpFetcherBackend()
                ocsp_fetcher = backend.get_fetchers().ocsp_fetcher
            crl_fetcher = (
                CachingCRLFetcher(self.revocation_cache, [*others, *self.anchors])
                if self.fetch_crls and self.revocation_cache
                else NoCRLFetcher()
            )
            fetchers = Fetchers(
                ocsp_fetcher=ocsp_fetcher, crl_fetcher=crl_fetcher, cert_fetcher=NoCertFetcher()
            )

        def context(policy: RevocationCheckingPolicy) -> ValidationContext:
            return ValidationContext(
                trust_roots=self._asn1_anchors,
                other_certs=[_to_asn1(c) for c in others],
                crls=[c.asn1 for c in crls],
                ocsps=list(data.ocsps),
                moment=moment,
                allow_fetching=fetchers is not None,
                fetchers=fetchers,
                # revocation data newer than the moment still speaks about it (a CRL fetched a second
                # after receipt; a CRL kept with a dossier, read for an earlier moment): a revocation
                # dated after the moment is not one at the moment. See _crls_for for the limit.
                revinfo_policy=CertRevTrustPolicy(policy, retroactive_revinfo=True),
                time_tolerance=timedelta(seconds=5),
            )

        try:
            return await self._decide(leaf, moment, crls, mode, context)
        finally:
            if backend is not None:
                await backend.close()

    async def _decide(
        self, leaf, moment, crls, mode, context
    ) -> tuple[list[CertProblem], list[x509.Certificate], Revocation]:
        status = "good"
        ctx = context(checking_policy(mode))
        try:
            try:
                path = await CertificateValidator(
                    _to_asn1(leaf), validation_context=ctx
                ).async_validate_path()
            except InsufficientRevinfoError as exc:
                chain = _chain_of(exc)
                listed = _listed_as_revoked(chain, [*crls, *_fetched(ctx)], moment)
                if listed is not None:
                    return listed
                if mode != "soft-fail":
                    return (
                        [_unknown_problem(str(exc))],
                        chain,
                        _record("unknown", None, ctx, chain, crls, moment),
                    )
                status = "unknown"
                ctx = context(SOFT_FALLBACK)
                path = await CertificateValidator(
                    _to_asn1(leaf), validation_context=ctx
                ).async_validate_path()
        except RevokedError as exc:
            chain = _chain_of(exc)
            source = "ocsp" if str(exc).startswith("OCSP") else "crl"
            return (
                [_revoked_problem(exc.is_ee_cert, exc.revocation_dt, str(exc))],
                chain,
                _record("revoked", source, ctx, chain, crls, moment),
            )
        except (ExpiredError, NotYetValidError) as exc:
            return [], _chain_of(exc), Revocation("unknown")  # reported by validity_problems with exact dates
        except PathBuildingError as exc:
            return [_untrusted(exc)], [], Revocation("unknown")
        except (PathValidationError, ValidationError) as exc:
            if leaf.issuer == leaf.subject and not any(a.subject == leaf.subject for a in self.anchors):
                return [_untrusted(exc)], [], Revocation("unknown")  # self-signed: trusted by no one here
            return (
                [
                    CertProblem(
                        codes.SIG_CHAIN_INVALID,
                        "Chuỗi chứng thư không hợp lệ.",
                        f"The certificate chain is not valid: {exc}",
                    )
                ],
                [],
                Revocation("unknown"),
            )
        chain = [_from_asn1(c) for c in path]  # anchor first in pyhanko's order
        chain.reverse()
        listed = _listed_as_revoked(chain, [*crls, *_fetched(ctx)], moment)
        if listed is not None:
            return listed
        if status == "good":
            source = "ocsp" if _ocsp_answered(chain, ctx) else "crl"
        else:
            source = None
        return [], chain, _record(status, source, ctx, chain, crls, moment)


def _fetched(ctx: ValidationContext) -> list[_HeldCRL]:
    fetched = []
    if ctx.fetching_allowed:
        for crl in ctx.revinfo_manager.crls:
            try:
                der = crl.dump()
                fetched.append(_HeldCRL.load(der))
            except ValueError:
                continue
    return fetched


def _ocsp_answered(chain: list[x509.Certificate], ctx: ValidationContext) -> bool:
    """pyhanko asks OCSP first, and only for a certificate naming a responder: a good answer there
    for the leaf means the CRLs were not needed."""
    if not chain or not _declares_ocsp(chain[0]):
        return False
    serial = chain[0].serial_number
    return any((serial, "good") in _ocsp_serials(resp.dump()) for resp in ctx.revinfo_manager.ocsps)


def _record(
    status: str,
    source: str | None,
    ctx: ValidationContext,
    chain: list[x509.Certificate],
    crls: Sequence[_HeldCRL],
    moment: datetime,
) -> Revocation:
    """The CRLs and OCSP responses that speak for the certificates of the path: per certificate,
    those of its issuer current at the moment (or the freshest one, when none is)."""
    candidates = {c.der: c for c in [*crls, *_fetched(ctx)]}.values()
    used: dict[bytes, None] = {}
    for issuer in chain[1:]:
        mine = [c for c in candidates if issued_by(c.crl, issuer)]
        current = [c for c in mine if c.crl.next_update_utc is None or c.crl.next_update_utc >= moment]
        for c in current or sorted(mine, key=lambda c: c.crl.last_update_utc)[-1:]:
            used[c.der] = None
    serials = {c.serial_number for c in chain[:-1] if _declares_ocsp(c)}
    ocsps: dict[bytes, None] = {}
    for resp in ctx.revinfo_manager.ocsps:
        der = resp.dump()
        if any(serial in serials for serial, _status in _ocsp_serials(der)):
            ocsps[der] = None
    return Revocation(status, source, list(used), list(ocsps))


def _result(
    leaf: x509.Certificate,
    at: datetime,
    path_problems: list[CertProblem],
    chain: list[x509.Certificate],
    revocation: Revocation,
) -> PathResult:
    problems: list[CertProblem] = []
    kp = key_problem(leaf)
    if kp:
        problems.append(kp)
    problems.extend(usage_problems(leaf))
    problems.extend(path_problems)
    problems.extend(validity_problems(chain or [leaf], at))
    return PathResult(problems=problems, chain=chain or [leaf], revocation=revocation)


def validate_at(
    leaf: x509.Certificate,
    others: list[x509.Certificate],
    at: datetime,
    *,
    trust: TrustStore,
    crls: Sequence[bytes] | None = None,
    ocsp: Sequence[bytes] | None = None,
    revocation: str | None = None,
) -> PathResult:
    """Validate a signing certificate as of `at` (e.g. a dossier's time of receipt), years later.

    `crls` / `ocsp`: DER CRLs and OCSP responses to judge revocation by, typically those kept with
    the dossier (`SignatureReport.revocation`, base64-decoded); None uses what `trust` holds now
    (its `crl_dir` and fetched-CRL cache). Nothing is fetched and nothing cached. A certificate
    expired since, or revoked after `at`, is valid at `at`. `revocation` overrides the trust
    store's policy ("soft-fail" | "hard-fail" | "require"). Synchronous.
    """
    current = trust.revocation_data()
    data = RevocationData.of(
        [c.der for c in current.crls] if crls is None else crls,
        current.ocsps if ocsp is None else ocsp,
    )
    mode = check_mode(revocation or trust.mode)
    problems, chain, rev = trust._path(leaf, others, at, data, mode=mode, fetch=False)
    return _result(leaf, at, problems, chain, rev)
