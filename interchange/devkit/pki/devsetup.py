"""The first-run set-up of the development PKI (`interchange dev-setup`, `make serve`): the dev
CA, the server's notice key and certificate, and a demo unit certificate, each made only when
it is missing, from what is already there where possible."""

from __future__ import annotations

import logging
from pathlib import Path

from interchange.devkit.pki.certs import Issued, create_ca, issue_server_cert, issue_unit_cert
from interchange.devkit.pki.files import (
    key_matches,
    load_certs_pem,
    load_key_pem,
    load_p12,
    order_chain,
    write_certs_pem,
    write_key_pem,
    write_p12,
    write_pem_bundle,
)

log = logging.getLogger(__name__)


class DevPki(dict[str, Path]):
    """``ensure_dev_pki`` result: name -> path of what exists, plus ``created`` (names newly written)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: set[str] = set()


def ensure_dev_pki(
    anchors_dir: Path,
    data_dir: Path,
    signing_key: Path,
    signing_cert: Path,
    *,
    demo_mst: str = "0101234565",
    demo_name: str = "Công ty TNHH Mẫu Việt",
    password: bytes = b"demo",
    key_kind: str = "rsa2048",
) -> DevPki:
    """Idempotent first-run set-up of a development PKI (``make serve``).

    * ``anchors_dir/dev-ca.pem`` - the dev root CA certificate (a trust anchor; ``dev-*`` files
      are git-ignored). Its private key lives at ``data_dir/dev-ca/ca-key.pem``, never under
      ``anchors_dir``.
    * ``signing_key`` / ``signing_cert`` - the server's notice key (0600) and certificate + chain.
    * ``data_dir/demo/unit-<mst>.p12`` (password ``demo``) and ``unit-<mst>.pem`` (key, cert and
      chain in one PEM, for xmlsec1) - a demo employer certificate.

    Nothing existing is rewritten. A missing half is rebuilt from the other half where possible
    (a signing key without a certificate gets a certificate for that key; a demo .p12 without
    its .pem, or the reverse, is converted). The dev CA is replaced only when something must be
    issued and its key is missing or does not match ``dev-ca.pem``.

    Returns a dict ``{"ca", "ca_key", "signing_key", "signing_cert", "demo_p12", "demo_pem"}``
    (only entries that exist) whose ``created`` attribute names the entries written by this call.
    """
    anchors_dir, data_dir = Path(anchors_dir), Path(data_dir)
    signing_key, signing_cert = Path(signing_key), Path(signing_cert)
    ca_cert_path = anchors_dir / "dev-ca.pem"
    ca_key_path = data_dir / "dev-ca" / "ca-key.pem"
    demo_p12 = data_dir / "demo" / f"unit-{demo_mst}.p12"
    demo_pem = data_dir / "demo" / f"unit-{demo_mst}.pem"
    if _is_under(ca_key_path, anchors_dir):
        raise ValueError(f"the dev CA key {ca_key_path} would be under the trust anchors {anchors_dir}")
    for p in (signing_key, demo_p12, demo_pem):
        if _is_under(p, anchors_dir):
            raise ValueError(f"private key file {p} would be under the trust anchors {anchors_dir}")

    out = DevPki()
    ca = _DevCa(ca_cert_path, ca_key_path, key_kind, out.created)
    if not ca_cert_path.exists():
        ca.get()
    if not (signing_key.exists() and signing_cert.exists()):
        _ensure_signing_cert(ca, signing_key, signing_cert, key_kind, out.created)
    if not (demo_p12.exists() and demo_pem.exists()):
        _ensure_demo_unit(ca, demo_p12, demo_pem, demo_mst, demo_name, password, key_kind, out.created)

    for name, path in (
        ("ca", ca_cert_path),
        ("ca_key", ca_key_path),
        ("signing_key", signing_key),
        ("signing_cert", signing_cert),
        ("demo_p12", demo_p12),
        ("demo_pem", demo_pem),
    ):
        if path.exists():
            out[name] = path
    return out


def _is_under(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


class _DevCa:
    """The dev CA, loaded or (re)created only when something must be issued."""

    def __init__(self, cert_path: Path, key_path: Path, key_kind: str, created: set[str]):
        self.cert_path = cert_path
        self.key_path = key_path
        self.key_kind = key_kind
        self.created = created
        self._ca: Issued | None = None

    def get(self) -> Issued:
        if self._ca is None:
            self._ca = self._load()
        if self._ca is None:
            if self.cert_path.exists():
                log.warning("replacing %s: its private key is not in %s", self.cert_path, self.key_path)
            self._ca = create_ca(key_kind=self.key_kind)
            # key first: a crash in between leaves no anchor without its key
            write_key_pem(self.key_path, self._ca.key)
            write_certs_pem(self.cert_path, [self._ca.cert])
            self.created.update({"ca", "ca_key"})
            log.info("created development CA %s (key %s)", self.cert_path, self.key_path)
        return self._ca

    def _load(self) -> Issued | None:
        if not (self.cert_path.exists() and self.key_path.exists()):
            return None
        try:
            certs = load_certs_pem(self.cert_path)
            k = load_key_pem(self.key_path)
        except (ValueError, TypeError) as exc:
            log.warning("dev CA unreadable (%s); a new one will be created", exc)
            return None
        if len(certs) != 1 or not key_matches(k, certs[0]):
            log.warning(
                "dev CA key %s does not match %s; a new dev CA will be created", self.key_path, self.cert_path
            )
            return None
        return Issued(key=k, cert=certs[0], chain=[])


def _ensure_signing_cert(
    ca: _DevCa, signing_key: Path, signing_cert: Path, key_kind: str, created: set[str]
) -> None:
    """The server's notice-signing certificate, for the key already there if it is readable."""
    existing_key = None
    if signing_key.exists():
        try:
            existing_key = load_key_pem(signing_key)
        except (ValueError, TypeError) as exc:
            log.warning("signing key %s unreadable (%s); issuing a new key", signing_key, exc)
    server = issue_server_cert(ca.get(), key=existing_key, key_kind=key_kind)
    if existing_key is None:
        write_key_pem(signing_key, server.key)
        created.add("signing_key")
    write_certs_pem(signing_cert, server.full_chain)
    created.add("signing_cert")
    log.info("created notice-signing certificate %s", signing_cert)


def _ensure_demo_unit(
    ca: _DevCa,
    demo_p12: Path,
    demo_pem: Path,
    demo_mst: str,
    demo_name: str,
    password: bytes,
    key_kind: str,
    created: set[str],
) -> None:
    """Both files of the demo unit certificate: one converted from the other, or both new."""
    unit = _existing_demo_unit(demo_p12, demo_pem, password)
    if unit is None:
        unit = issue_unit_cert(ca.get(), demo_mst, demo_name, key_kind=key_kind)
        for p in (demo_p12, demo_pem):  # replace both halves so they stay a pair
            if p.exists():
                p.unlink()
    if not demo_p12.exists():
        write_p12(demo_p12, unit, password, friendly_name=f"unit-{demo_mst}".encode())
        created.add("demo_p12")
    if not demo_pem.exists():
        write_pem_bundle(demo_pem, unit.key, unit.full_chain)
        created.add("demo_pem")
    log.info("demo unit certificate for MST %s: %s, %s", demo_mst, demo_p12, demo_pem)


def _existing_demo_unit(demo_p12: Path, demo_pem: Path, password: bytes) -> Issued | None:
    """The demo unit from whichever of its files is there and readable (the .p12 first)."""
    unit: Issued | None = None
    if demo_p12.exists():
        try:
            unit = load_p12(demo_p12, password)
        except (ValueError, TypeError) as exc:
            log.warning("demo PKCS#12 %s unreadable (%s); issuing a new one", demo_p12, exc)
    elif demo_pem.exists():
        try:
            certs = load_certs_pem(demo_pem)
            k = load_key_pem(demo_pem)
            if certs and key_matches(k, certs[0]):
                unit = Issued(key=k, cert=certs[0], chain=order_chain(certs[0], certs[1:]))
        except (ValueError, TypeError) as exc:
            log.warning("demo PEM %s unreadable (%s); issuing a new one", demo_pem, exc)
    return unit
