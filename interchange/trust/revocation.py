"""Revocation data: CRLs held on disk, CRLs fetched from distribution points, the record of
what was used for one signature, and the scheduled refresh.

Where CRLs come from:
- `trust.crl_dir` (PEM or DER, put there by an operator), read as they are;
- `<data_dir>/revocation/`, the cache of CRLs fetched from the certificates' distribution
  points (only when `trust.fetch_revocation` is on): one `crl-<hash of URL>.crl` (DER) per
  URL beside a `.json` with its URL, thisUpdate, nextUpdate, fetch time and the issuer
  certificate its signature was checked with (so that `refresh_crls` can check the next one).

A fetched CRL is cached only when its signature verifies with a known issuer and it is not
older than the one already held for that URL: an old CRL replayed by a network attacker
cannot roll back a revocation.

Policies (`trust.revocation`), in the terms of pyhanko-certvalidator's legacy modes:
- "soft-fail": revocation is looked for (held CRLs, fetched ones, OCSP) and a revoked
  certificate is refused; when nothing says either way, the signature is accepted and the
  status recorded as "unknown".
- "hard-fail": the signing certificate's status must be known; issuer certificates are
  checked when they declare a CRL or OCSP location.
- "require": every certificate of the path must have a known status.
Unlike pyhanko's own modes, a held CRL is always consulted, even for a certificate that names
no distribution point (SPEC §3: "not revoked per the freshest CRL/OCSP answer held").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers import CertificateFetcher, CRLFetcher, OCSPFetcher
from pyhanko_certvalidator.policy_decl import RevocationCheckingPolicy, RevocationCheckingRule

from interchange.clock import utc_now
from interchange.trust.certinfo import load_anchor_certs

if TYPE_CHECKING:
    from aiohttp import web

    from interchange.config import TrustConfig, TrustPaths

log = logging.getLogger(__name__)

MODES = ("soft-fail", "hard-fail", "require")
CRL_SUFFIXES = (".crl", ".pem", ".der")
MAX_CRL_BYTES = 64 * 1024 * 1024  # national CAs publish CRLs of tens of MB
FETCH_TIMEOUT_SECONDS = 20
MAX_URLS_PER_CERT = 4

FetchFn = Callable[[str], Awaitable[bytes]]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"config: trust.revocation must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def checking_policy(mode: str) -> RevocationCheckingPolicy:
    """The policy of the first (deciding) validation: the leaf always needs a CRL or OCSP answer,
    so that held CRLs are consulted; soft-fail retries with `SOFT_FALLBACK` when there is none."""
    either, declared = RevocationCheckingRule.CRL_OR_OCSP_REQUIRED, RevocationCheckingRule.CHECK_IF_DECLARED
    issuers = {
        "soft-fail": RevocationCheckingRule.CHECK_IF_DECLARED_SOFT,
        "hard-fail": declared,
        "require": either,
    }[check_mode(mode)]
    return RevocationCheckingPolicy(ee_certificate_rule=either, intermediate_ca_cert_rule=issuers)


SOFT_FALLBACK = RevocationCheckingPolicy.from_legacy("soft-fail")


# ---- reading CRLs ----------------------------------------------------------------------------


def crl_ders(data: bytes) -> list[bytes]:
    """The CRLs of a PEM (one or more blocks) or DER file, as DER."""
    if pem.detect(data):
        return [der for kind, _headers, der in pem.unarmor(data, multiple=True) if kind == "X509 CRL"]
    return [data]


def load_crl_dir(directory: Path | None) -> list[bytes]:
    """Every readable CRL in a directory; an unreadable file is logged and skipped, not fatal."""
    out: list[bytes] = []
    if directory is None or not directory.is_dir():
        return out
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in CRL_SUFFIXES or not path.is_file():
            continue
        try:
            for der in crl_ders(path.read_bytes()):
                x509.load_der_x509_crl(der)  # refuse garbage here rather than inside path validation
                out.append(der)
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable CRL file %s: %s", path, exc)
    return out


def dir_fingerprint(*directories: Path | None) -> tuple:
    """Cheap (stat only) summary of the CRL files present, to notice a change without reading them."""
    items = []
    for directory in directories:
        if directory is None:
            continue
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.lower().endswith(CRL_SUFFIXES) and entry.is_file():
                        st = entry.stat()
                        items.append((entry.path, st.st_mtime_ns, st.st_size, st.st_ino))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return tuple(sorted(items))


def issued_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    if crl.issuer != issuer.subject:
        return False
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The http(s) URLs of a certificate's CRL distribution points (LDAP is not fetched)."""
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for dp in dps:
        for name in dp.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return urls[:MAX_URLS_PER_CERT]


# ---- the on-disk cache of fetched CRLs -------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass
class CachedCRL:
    url: str
    path: Path
    this_update: datetime
    next_update: datetime | None
    fetched_at: datetime
    issuer_cert: x509.Certificate


class CrlCache:
    """`<data_dir>/revocation/`: fetched CRLs by URL, each with its freshness beside it."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _stem(self, url: str) -> str:
        return "crl-" + hashlib.sha256(url.encode()).hexdigest()[:32]

    def entries(self) -> list[CachedCRL]:
        out = []
        if not self.directory.is_dir():
            return out
        for meta_path in sorted(self.directory.glob("crl-*.json")):
            try:
                meta = json.loads(meta_path.read_text())
                out.append(
                    CachedCRL(
                        url=meta["url"],
                        path=meta_path.with_suffix(".crl"),
                        this_update=datetime.fromisoformat(meta["this_update"]),
                        next_update=datetime.fromisoformat(meta["next_update"])
                        if meta.get("next_update")
                        else None,
                        fetched_at=datetime.fromisoformat(meta["fetched_at"]),
                        issuer_cert=x509.load_der_x509_certificate(b64decode(meta["issuer_cert"])),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable CRL cache entry %s: %s", meta_path, exc)
        return out

    def get(self, url: str) -> CachedCRL | None:
        return next((e for e in self.entries() if e.url == url), None)

    def store(self, url: str, der: bytes, issuers: Iterable[x509.Certificate]) -> bool:
        """Keep a fetched CRL if one of `issuers` signed it and it is not older than the one held."""
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError as exc:
            log.warning("CRL from %s is not a CRL: %s", url, exc)
            return False
        issuer = next((c for c in issuers if issued_by(crl, c)), None)
        if issuer is None:
            log.warning("CRL from %s is not signed by a known issuer; not cached", url)
            return False
        held = self.get(url)
        if held is not None and crl.last_update_utc < held.this_update:
            log.warning(
                "CRL from %s is older than the one held (%s < %s); kept the held one",
                url,
                crl.last_update_utc.isoformat(),
                held.this_update.isoformat(),
            )
            return False
        if held is not None and held.path.exists() and held.path.read_bytes() == der:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = self.directory / self._stem(url)
        meta = {
            "url": url,
            "this_update": crl.last_update_utc.isoformat(),
            "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
            "fetched_at": utc_now().isoformat(),
            "issuer": crl.issuer.rfc4514_string(),
            "issuer_cert": b64encode(issuer.public_bytes(serialization.Encoding.DER)).decode(),
        }
        # the CRL first: a crash in between leaves a CRL without freshness notes, still usable
        _atomic_write(stem.with_suffix(".crl"), der)
        _atomic_write(stem.with_suffix(".json"), json.dumps(meta, indent=1).encode())
        return True


# ---- fetching --------------------------------------------------------------------------------


async def fetch_url(
    url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS, max_bytes: int = MAX_CRL_BYTES
) -> bytes:
    """GET a CRL (DER or PEM) with a time and size limit; CRLFetchError on any failure."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(
                url, headers={"Accept": "application/pkix-crl"}, raise_for_status=True
            ) as resp:
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise CRLFetchError(f"CRL at {url} is larger than {max_bytes} bytes")
                    chunks.append(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CRLFetchError(f"could not fetch the CRL at {url}: {exc}") from exc
    data = b"".join(chunks)
    ders = crl_ders(data)
    if not ders:
        raise CRLFetchError(f"{url} did not return a CRL")
    return ders[0]


class CachingCRLFetcher(CRLFetcher):
    """pyhanko's CRL fetcher interface over `fetch_url`, keeping what it fetched in the disk cache."""

    def __init__(self, cache: CrlCache, issuers: list[x509.Certificate], fetch: FetchFn = fetch_url):
        self.cache = cache
        self.issuers = issuers
        self._fetch = fetch
        self._by_cert: dict[str, list[asn1_crl.CertificateList]] = {}

    async def fetch(self, cert, *, use_deltas=None):
        key = cert.issuer_serial
        if key in self._by_cert:
            return self._by_cert[key]
        urls = crl_urls(x509.load_der_x509_certificate(cert.dump()))
        results, errors = [], []
        for url, outcome in zip(
            urls, await asyncio.gather(*(self._fetch(u) for u in urls), return_exceptions=True), strict=True
        ):
            if isinstance(outcome, BaseException):
                errors.append(outcome)
                continue
            try:
                results.append(asn1_crl.CertificateList.load(outcome))
                self.cache.store(url, outcome, self.issuers)
            except (ValueError, OSError) as exc:
                errors.append(exc)
        if urls and not results:
            raise CRLFetchError("; ".join(str(e) for e in errors) or "no CRL fetched")
        self._by_cert[key] = results
        return results

    def fetched_crls(self):
        return [c for crls in self._by_cert.values() for c in crls]

    def fetched_crls_for_cert(self, cert):
        return self._by_cert[cert.issuer_serial]


class NoCRLFetcher(CRLFetcher):
    async def fetch(self, cert, *, use_deltas=None):
        raise CRLFetchError("fetching CRLs is switched off (trust.fetch_revocation)")

    def fetched_crls(self):
        return []

    def fetched_crls_for_cert(self, cert):
        raise KeyError(cert.issuer_serial)


class NoOCSPFetcher(OCSPFetcher):
    async def fetch(self, cert, authority):
        raise OCSPFetchError("OCSP is switched off (trust.ocsp)")

    def fetched_responses(self):
        return []

    def fetched_responses_for_cert(self, cert):
        return []


class NoCertFetcher(CertificateFetcher):
    """Issuer certificates come from the signature and the anchors, never from the network."""

    async def fetch_cert_issuers(self, cert) -> AsyncIterator[asn1_x509.Certificate]:
        return
        yield  # an async generator that yields nothing

    async def fetch_crl_issuers(self, certificate_list) -> AsyncIterator[asn1_x509.Certificate]:
        return
        yield

    def fetched_certs(self):
        return []


# ---- what was used, kept with the dossier ----------------------------------------------------


@dataclass
class Revocation:
    """The revocation answer for one signing certificate, and the data it rests on."""

    status: str  # good | revoked | unknown
    source: str | None = None  # crl | ocsp | None
    crls: list[bytes] = field(default_factory=list)  # DER
    ocsp: list[bytes] = field(default_factory=list)  # DER OCSPResponse
    checked_at: datetime = field(default_factory=utc_now)

    def as_dict(self, *, refs: bool = False) -> dict:
        """The CRLs and OCSP responses in base64 (a self-contained report to keep or re-verify
        with) or, with `refs`, named by SHA-256 (hex), as kept with a dossier: a national CA's CRL
        runs to megabytes, and each one is stored once (`revocation_data`), not with every signature."""
        name, keys = (der_sha256, REF_KEYS) if refs else (_base64, INLINE_KEYS)
        return {
            "status": self.status,
            "source": self.source,
            keys[CRL]: [name(d) for d in self.crls],
            keys[OCSP]: [name(d) for d in self.ocsp],
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
        }

    def data(self) -> dict[str, tuple[str, bytes]]:
        """What `as_dict(refs=True)` names: {sha256 hex: (CRL or OCSP, DER)}."""
        out = {der_sha256(d): (CRL, d) for d in self.crls}
        out.update((der_sha256(d), (OCSP, d)) for d in self.ocsp)
        return out


CRL, OCSP = "crl", "ocsp"
REF_KEYS = {CRL: "crl_sha256", OCSP: "ocsp_sha256"}  # where a dossier's signers name their data
INLINE_KEYS = {CRL: "crls", OCSP: "ocsp"}  # where a report (or a dossier stored before 0009) holds it in base64


def kept_data(revocation: dict, kind: str) -> tuple[list, list[str]]:
    """A signature's `revocation` as kept with a dossier: its data of `kind` (CRL or OCSP) inline
    (base64; dossiers stored before migration 0009) and named by SHA-256 (hex)."""
    return list(revocation.get(INLINE_KEYS[kind]) or []), list(revocation.get(REF_KEYS[kind]) or [])


def _base64(der: bytes) -> str:
    return b64encode(der).decode()


@functools.lru_cache(maxsize=16)
def der_sha256(der: bytes) -> str:
    """The SHA-256 (hex) of a CRL or OCSP response. Cached: the same few CRL objects, held by the
    trust store, are named for every signature (a bytes object's hash is computed once; a hit on
    the same object compares by identity)."""
    return hashlib.sha256(der).hexdigest()


def referenced_data(signers: list) -> set[str]:
    """The SHA-256 names of the revocation data a dossier's signers rest on."""
    refs: set[str] = set()
    for signer in signers:
        revocation = signer.get("revocation") if isinstance(signer, dict) else None
        if isinstance(revocation, dict):
            for kind in (CRL, OCSP):
                refs.update(kept_data(revocation, kind)[1])
    return refs


def revocation_data_from_json(obj) -> tuple[list[bytes], list[bytes]]:
    """CRLs and OCSP responses (DER) found in JSON kept with a dossier: a `revocation` dict, a list
    of them, a dossier's `signers`, `interchange verify --json` output, or a plain list of base64
    CRLs. Duplicates are dropped."""
    crls: dict[bytes, None] = {}
    ocsps: dict[bytes, None] = {}

    def walk(node, into: dict[bytes, None]) -> None:
        if isinstance(node, str):
            into[b64decode(node, validate=True)] = None
        elif isinstance(node, list):
            for item in node:
                walk(item, into)
        elif isinstance(node, dict):
            for key in ("crls", "crl"):
                if key in node:
                    walk(node[key], crls)
            if "ocsp" in node:
                walk(node["ocsp"], ocsps)
            for key in ("revocation", "signers", "signatures", "revocation_data"):
                if key in node and node[key] is not None:
                    walk(node[key], into)

    walk(obj, crls)
    return list(crls), list(ocsps)


# ---- scheduled refresh -----------------------------------------------------------------------


async def async_refresh_crls(trust: TrustConfig, paths: TrustPaths, *, fetch: FetchFn = fetch_url) -> list[dict]:
    """Fetch again every CRL URL known (those already cached, and the distribution points of the
    trust anchors) and cache each new one. Does nothing unless `trust.fetch_revocation` is on."""
    if not trust.fetch_revocation:
        return []
    cache = CrlCache(paths.cache)
    anchors = load_anchor_certs(paths.anchors)
    issuers_by_url: dict[str, list[x509.Certificate]] = {}
    for entry in cache.entries():
        issuers_by_url.setdefault(entry.url, []).append(entry.issuer_cert)
    for cert in anchors:
        for url in crl_urls(cert):
            issuers_by_url.setdefault(url, []).extend(a for a in anchors if a.subject == cert.issuer)
    results = []
    for url, issuers in issuers_by_url.items():
        try:
            der = await fetch(url)
            crl = x509.load_der_x509_crl(der)
            stored = await asyncio.to_thread(cache.store, url, der, issuers)  # parses and verifies: MBs
            results.append(
                {
                    "url": url,
                    "ok": True,
                    "updated": stored,
                    "this_update": crl.last_update_utc.isoformat(),
                    "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                }
            )
        except (CRLFetchError, ValueError, OSError) as exc:
            log.warning("CRL refresh from %s failed: %s", url, exc)
            results.append({"url": url, "ok": False, "error": str(exc)})
    return results


def refresh_crls(trust: TrustConfig, paths: TrustPaths, *, fetch: FetchFn = fetch_url) -> list[dict]:
    """`async_refresh_crls` for a scheduled job outside an event loop."""
    return asyncio.run(async_refresh_crls(trust, paths, fetch=fetch))


def crl_refresher(trust: TrustConfig, paths: TrustPaths) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context refreshing CRLs every `trust.crl_refresh_minutes` while the
    server runs (when fetching is on). The worker processes notice the new files on their own."""
    check_mode(trust.revocation)  # a typo fails the start here, not inside every worker

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = None
        if trust.fetch_revocation and trust.crl_refresh_minutes > 0:
            task = asyncio.create_task(_refresh_forever(trust, paths, trust.crl_refresh_minutes * 60))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx


async def _refresh_forever(trust: TrustConfig, paths: TrustPaths, every_seconds: float) -> None:
    while True:
        try:
            await async_refresh_crls(trust, paths)
        except Exception:  # a failed round must not end the schedule
            log.exception("CRL refresh failed")
        await asyncio.sleep(every_seconds)
