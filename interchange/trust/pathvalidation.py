"""Certificate path validation with pyhanko-certvalidator: the chain to a trust anchor, its
signatures and CA constraints, and revocation under a policy (see `revocation.py`), judged by
the revocation data given (`revinfo.RevocationData`) and, when allowed, what is fetched.

`PathValidator.check` is one uncached validation; `anchors.TrustStore` caches its answers."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
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
from pyhanko_certvalidator.registry import SimpleTrustManager

from interchange import codes
from interchange.trust import asn1names, crlindex
from interchange.trust.certchecks import CertProblem, revoked_problem, unknown_problem, untrusted_problem
from interchange.trust.revinfo import (
    RevocationData,
    crls_for,
    known_crls,
    listed_as_revoked,
    ocsp_answered,
    record_used,
)
from interchange.trust.revocation import (
    SOFT_FALLBACK,
    CachingCRLFetcher,
    CrlCache,
    NoCertFetcher,
    NoCRLFetcher,
    NoOCSPFetcher,
    Revocation,
    checking_policy,
)

crlindex.install()  # a certificate found in a CRL by its serial, not by reading every entry
asn1names.install()  # a name's comparable form worked out once, not at every lookup

# What a path validation finds: its problems, the chain (leaf first, anchor last), the revocation answer.
Verdict = tuple[list[CertProblem], list[x509.Certificate], Revocation]


@functools.lru_cache(maxsize=512)  # the CAs' certificates carried by every dossier, read once
def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def from_asn1(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def chain_of(exc: Exception) -> list[x509.Certificate]:
    path = getattr(exc, "original_path", None)
    if path is None:
        return []
    return [from_asn1(c) for c in reversed(list(path)) if isinstance(c, asn1_x509.Certificate)]



class PathValidator:
    """Validates paths to `anchors`; fetches CRLs into `revocation_cache` when `fetch_crls`, asks
    OCSP responders when `ocsp`. Synchronous: it runs pyhanko on an event loop of its own."""

    def __init__(
        self,
        anchors: list[x509.Certificate],
        *,
        anchors_dir: Path,
        revocation_cache: CrlCache | None = None,
        fetch_crls: bool = False,
        ocsp: bool = False,
    ):
        self.anchors = anchors
        self.anchors_dir = anchors_dir  # named when there are no anchors
        self.revocation_cache = revocation_cache
        self.fetch_crls = fetch_crls and revocation_cache is not None
        self.ocsp = ocsp
        # built once: pyhanko would read the anchors again for each validation
        self._trust_manager = SimpleTrustManager.build(trust_roots=[to_asn1(c) for c in anchors])
        self._loop: asyncio.AbstractEventLoop | None = None

    def check(
        self,
        leaf: x509.Certificate,
        others: list[x509.Certificate],
        at: datetime,
        data: RevocationData,
        *,
        mode: str,
        fetch: bool,
    ) -> Verdict:
        """The path of `leaf` to an anchor and its revocation status, as of `at`, judged by `data`
        (and what may be fetched when `fetch`) under the policy `mode`. Not cached; synchronous."""
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
        return self._loop.run_until_complete(self._async_check(leaf, others, at, data, mode=mode, fetch=fetch))

    async def _async_check(
        self,
        leaf: x509.Certificate,
        others: list[x509.Certificate],
        at: datetime,
        data: RevocationData,
        *,
        mode: str,
        fetch: bool,
    ) -> Verdict:
        # Dates are checked by the caller at each call; validate the path as of a moment inside
        # the leaf's life so that the cached result is about the chain, not about the clock.
        moment = min(max(at, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
        crls = crls_for([leaf, *others], data.crls)
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
                trust_manager=self._trust_manager,
                other_certs=[to_asn1(c) for c in others],
                crls=[c.asn1 for c in crls],
                ocsps=list(data.ocsps),
                moment=moment,
                allow_fetching=fetchers is not None,
                fetchers=fetchers,
                # revocation data newer than the moment still speaks about it (a CRL fetched a second
                # after receipt; a CRL kept with a dossier, read for an earlier moment): a revocation
                # dated after the moment is not one at the moment. See crls_for for the limit.
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
    ) -> Verdict:
        status = "good"
        ctx = context(checking_policy(mode))
        try:
            try:
                path = await CertificateValidator(
                    to_asn1(leaf), validation_context=ctx
                ).async_validate_path()
            except InsufficientRevinfoError as exc:
                chain = chain_of(exc)
                known = known_crls(ctx, crls)
                listed = listed_as_revoked(chain, known, moment)
                if listed is not None:
                    return listed
                if mode != "soft-fail":
                    return (
                        [unknown_problem(str(exc))],
                        chain,
                        record_used("unknown", None, ctx, chain, known, moment),
                    )
                status = "unknown"
                ctx = context(SOFT_FALLBACK)
                path = await CertificateValidator(
                    to_asn1(leaf), validation_context=ctx
                ).async_validate_path()
        except RevokedError as exc:
            chain = chain_of(exc)
            source = "ocsp" if str(exc).startswith("OCSP") else "crl"
            return (
                [revoked_problem(exc.is_ee_cert, exc.revocation_dt, str(exc))],
                chain,
                record_used("revoked", source, ctx, chain, known_crls(ctx, crls), moment),
            )
        except (ExpiredError, NotYetValidError) as exc:
            return [], chain_of(exc), Revocation("unknown")  # reported by validity_problems with exact dates
        except PathBuildingError as exc:
            return [untrusted_problem(exc)], [], Revocation("unknown")
        except (PathValidationError, ValidationError) as exc:
            if leaf.issuer == leaf.subject and not any(a.subject == leaf.subject for a in self.anchors):
                return [untrusted_problem(exc)], [], Revocation("unknown")  # self-signed: trusted by no one here
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
        chain = [from_asn1(c) for c in path]  # anchor first in pyhanko's order
        chain.reverse()
        known = known_crls(ctx, crls)
        listed = listed_as_revoked(chain, known, moment)
        if listed is not None:
            return listed
        if status == "good":
            source = "ocsp" if ocsp_answered(chain, ctx) else "crl"
        else:
            source = None
        return [], chain, record_used(status, source, ctx, chain, known, moment)
