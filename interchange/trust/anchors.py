"""Certificate path validation against the trust anchors in `certs/` (pyhanko-certvalidator),
with revocation checking (see `revocation.py` for where CRLs come from and the policies).

The path (chain to an anchor, signatures, CA constraints, revocation) is the expensive part
and depends only on the chain and the revocation data, so its result is cached per chain
and per version of the CRL set for `cache_seconds`; the validity dates are re-checked on
every call at the time asked for, so a cached answer never stretches a certificate's life.
A new or changed CRL file (in `crl_dir` or the fetched-CRL cache) is noticed on the next
call, so the cache never hides it; a revocation that only comes into effect with the passing
of time (a future revocation date, a CRL going stale) is never hidden either: an answer is not
reused across a revocation date of the chain's certificates, or a thisUpdate or nextUpdate of a
CRL held. An answer is reused only for a time inside the validity of every certificate of its
chain (an expired or not yet valid certificate is validated again), and only by the store that
computed it (its anchors).

`validate_at` is the point-in-time check: the chain and revocation as of a past moment, with
the revocation data kept with a dossier instead of today's, never fetching.

The path itself is validated by `pathvalidation.PathValidator`; the checks that need no path
(key, usage, dates) are in `certchecks`, the revocation evidence in `revinfo`. Their public
names used by callers (`CertProblem`, `PathResult`, `RevocationData`, ...) are importable from
here too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from interchange.trust.certchecks import (
    ALLOWED_CURVES,
    MIN_RSA_BITS,
    TLS_ONLY_EKUS,
    CertProblem,
    PathResult,
    key_problem,
    path_result,
    usage_problems,
    validity_problems,
)
from interchange.trust.certinfo import fingerprint, load_anchor_certs
from interchange.trust.pathvalidation import PathValidator, Verdict
from interchange.trust.revinfo import RevocationData, turning_points
from interchange.trust.revocation import CrlCache, Revocation, check_mode, dir_fingerprint, load_crl_dir

if TYPE_CHECKING:
    from interchange.config import TrustConfig, TrustPaths

__all__ = [
    "ALLOWED_CURVES", "MIN_RSA_BITS", "TLS_ONLY_EKUS", "CertProblem", "PathResult", "RevocationData", "TrustStore",
    "key_problem", "usage_problems", "validate_at", "validity_problems",
]  # fmt: skip


@dataclass
class _Cached:
    expires: float  # time.monotonic()
    at: datetime  # the validation time it was computed for
    problems: list[CertProblem]
    chain: list[x509.Certificate]
    revocation: Revocation
    turning: tuple[datetime, ...] = ()  # revinfo.turning_points of the chain in the data used


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
        self.validator = PathValidator(
            self.anchors, anchors_dir=self.anchors_dir, revocation_cache=self.revocation_cache,
            fetch_crls=self.fetch_crls, ocsp=self.ocsp,
        )  # fmt: skip
        self._cache: dict[bytes, _Cached] = {}
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
        h = hashlib.sha256(fingerprint(leaf))
        for c in sorted(fingerprint(c) for c in others):
            h.update(c)
        h.update(data.version)
        return h.digest()

    def validate(self, leaf: x509.Certificate, others: list[x509.Certificate], at: datetime) -> PathResult:
        """Validate a signing certificate at time `at`, the time of receipt (fetching if allowed)."""
        data = self.revocation_data()
        key = self._cache_key(leaf, others, data)
        cached = self._cache.get(key)
        now = time.monotonic()
        if not self._reusable(cached, leaf, at, now):
            problems, chain, rev = self.check_path(leaf, others, at, data, mode=self.mode, fetch=True)
            turning = turning_points(list(dict.fromkeys([leaf, *others, *chain])), data) if self.cache_seconds > 0 else ()
            cached = _Cached(now + self.cache_seconds, at, problems, chain, rev, turning)
            if self.cache_seconds > 0:
                self._remember(key, cached, now)
        return path_result(leaf, at, cached.problems, cached.chain, cached.revocation)

    def _reusable(self, cached: _Cached | None, leaf: x509.Certificate, at: datetime, now: float) -> bool:
        """A cached answer serves while fresh, for a time near the one it was computed for, and only
        when `at` lies inside every certificate's validity (a date outside is validated again) and
        no revocation date, thisUpdate or nextUpdate of the data lies between the two times."""
        if cached is None or cached.expires <= now or abs((at - cached.at).total_seconds()) > self.cache_seconds:
            return False
        low, high = min(at, cached.at), max(at, cached.at)
        return all(c.not_valid_before_utc <= at <= c.not_valid_after_utc for c in cached.chain or [leaf]) and not any(
            low < point <= high for point in cached.turning
        )

    def _remember(self, key: bytes, entry: _Cached, now: float) -> None:
        if len(self._cache) >= 4096:
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
            if len(self._cache) >= 4096:
                self._cache.clear()
        self._cache[key] = entry

    def check_path(
        self,
        leaf: x509.Certificate,
        others: list[x509.Certificate],
        at: datetime,
        data: RevocationData,
        *,
        mode: str,
        fetch: bool,
    ) -> Verdict:
        """One validation of the path, uncached: what `validate` caches and `validate_at` uses."""
        return self.validator.check(leaf, others, at, data, mode=mode, fetch=fetch)


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
    problems, chain, rev = trust.check_path(leaf, others, at, data, mode=mode, fetch=False)
    return path_result(leaf, at, problems, chain, rev)
