"""Development PKI (interchange.devkit.pki) and certificate reading (interchange.trust.certinfo)."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interchange.devkit import pki
from interchange.trust import certinfo
from tests.helpers import MST_A as MST

# ---------------------------------------------------------------- fixtures: keys are the slow part


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {
        "root": pki.new_key("rsa2048"),
        "inter": pki.new_key("rsa2048"),
        "unit": pki.new_key("rsa2048"),
        "p256": pki.new_key("ec-p256"),
        "p384": pki.new_key("ec-p384"),
    }


@pytest.fixture(scope="module")
def root(keys) -> pki.Issued:
    return pki.create_ca("Test Root CA", key=keys["root"])


@pytest.fixture(scope="module")
def inter(root, keys) -> pki.Issued:
    return pki.create_ca("Test Issuing CA", parent=root, key=keys["inter"])


@pytest.fixture(scope="module")
def unit(inter, keys) -> pki.Issued:
    return pki.issue_unit_cert(inter, MST, "Công ty TNHH Mẫu Việt", key=keys["unit"])


def _unit(ca: pki.Issued, keys, mst: str | None = MST, **kw) -> x509.Certificate:
    kw.setdefault("key", keys["p256"])  # EC keys are cheap but reuse anyway
    return pki.issue_unit_cert(ca, mst, kw.pop("name", "Đơn vị thử"), **kw).cert


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


# ---------------------------------------------------------------- chain building


def test_root_intermediate_unit_chain(root, inter, unit):
    root.cert.verify_directly_issued_by(root.cert)  # self-signed
    inter.cert.verify_directly_issued_by(root.cert)
    unit.cert.verify_directly_issued_by(inter.cert)
    assert root.chain == []
    assert inter.chain == [root.cert]
    assert unit.chain == [inter.cert, root.cert]
    assert unit.full_chain == [unit.cert, inter.cert, root.cert]

    for ca, plen in ((root, None), (inter, 0)):
        bc = _ext(ca.cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == plen
        ku = _ext(ca.cert, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert not ku.value.digital_signature
    # AKI of each certificate is the SKI of its issuer
    for child, parent in ((inter.cert, root.cert), (unit.cert, inter.cert), (root.cert, root.cert)):
        aki = _ext(child, x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == _ext(parent, x509.SubjectKeyIdentifier).value.digest


def test_unit_cert_profile(unit, inter):
    cert = unit.cert
    assert cert.issuer == inter.cert.subject
    oids = [a.oid for a in cert.subject]
    assert oids == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.COMMON_NAME,
        NameOID.USER_ID,
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == f"MST:{MST}"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Công ty TNHH Mẫu Việt"
    assert cert.subject.rfc4514_string().startswith(f"UID=MST:{MST},CN=Công ty TNHH Mẫu Việt,")

    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.content_commitment
    assert not (ku.value.key_encipherment or ku.value.key_cert_sign or ku.value.crl_sign)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert set(eku.value) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION}
    assert _ext(cert, x509.SubjectKeyIdentifier)
    assert isinstance(unit.key, rsa.RSAPrivateKey) and unit.key.key_size == 2048
    # default validity: starts 5 minutes back, lasts 730 days
    now = datetime.now(UTC)
    assert now - timedelta(minutes=6) < cert.not_valid_before_utc < now - timedelta(minutes=4)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=730)


def test_chain_validates_with_pyhanko_certvalidator(root, inter, unit):
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    def a(cert: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))

    ctx = ValidationContext(trust_roots=[a(root.cert)], allow_fetching=False, revocation_mode="soft-fail")
    validator = CertificateValidator(a(unit.cert), intermediate_certs=[a(inter.cert)], validation_context=ctx)
    path = asyncio.run(validator.async_validate_usage({"digital_signature", "non_repudiation"}))
    assert path.leaf.dump() == unit.cert.public_bytes(Encoding.DER)


def test_server_cert(root, keys):
    server = pki.issue_server_cert(root, key=keys["p256"])
    server.cert.verify_directly_issued_by(root.cert)
    assert _ext(server.cert, x509.BasicConstraints).value.ca is False
    ku = _ext(server.cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_encipherment
    assert certinfo.mst_of(server.cert) is None
    assert server.cert.not_valid_after_utc - server.cert.not_valid_before_utc == timedelta(days=825)


def test_ec_keys(root):
    for kind, curve in (("ec-p256", ec.SECP256R1), ("ec-p384", ec.SECP384R1)):
        issued = pki.issue_unit_cert(root, MST, "EC unit", key_kind=kind)
        assert isinstance(issued.cert.public_key().curve, curve)
        issued.cert.verify_directly_issued_by(root.cert)
    with pytest.raises(ValueError):
        pki.new_key("rsa512")
    with pytest.raises(ValueError):
        pki.new_key("ed25519")


# ---------------------------------------------------------------- variants for negative tests


def test_ca_flag_variant(root, keys):
    cert = _unit(root, keys, ca_flag=True)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    assert not _ext(cert, x509.KeyUsage).value.key_cert_sign  # a leaf that only claims to be a CA


def test_tls_only_variant(root, keys):
    cert = _unit(root, keys, tls_only=True)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.key_encipherment
    assert not (ku.digital_signature or ku.content_commitment)
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert certinfo.mst_of(cert) == MST  # same subject; only the usages make it unfit for signing


def test_key_usage_presets_and_eku(root, keys):
    enc = _ext(_unit(root, keys, key_usage="encipherment"), x509.KeyUsage).value
    assert enc.key_encipherment and not enc.digital_signature and not enc.content_commitment
    both = _ext(_unit(root, keys, key_usage="signing+encipherment"), x509.KeyUsage).value
    assert both.digital_signature and both.content_commitment and both.key_encipherment
    bare = _unit(root, keys, key_usage="none", eku=None)
    extension_types = {type(e.value) for e in bare.extensions}
    assert x509.KeyUsage not in extension_types and x509.ExtendedKeyUsage not in extension_types
    with pytest.raises(ValueError):
        _unit(root, keys, key_usage="bogus")


def test_rsa1024_variant(root):
    issued = pki.issue_unit_cert(root, MST, "Weak key", key_kind="rsa1024")
    assert issued.cert.public_key().key_size == 1024
    assert certinfo.public_key_description(issued.cert) == "RSA-1024"


def test_validity_variants(root, keys):
    now = datetime.now(UTC)
    future = _unit(root, keys, not_before=now + timedelta(days=1))
    assert future.not_valid_before_utc > now
    assert future.not_valid_after_utc == future.not_valid_before_utc + timedelta(days=730)
    expired = _unit(root, keys, not_before=now - timedelta(days=800), not_after=now - timedelta(days=1))
    assert expired.not_valid_after_utc < now
    with pytest.raises(ValueError):
        _unit(root, keys, not_before=now, not_after=now - timedelta(seconds=1))
    with pytest.raises(ValueError):
        _unit(root, keys, not_before=datetime(2025, 1, 1))  # naive datetime


def test_serial_and_sha1_variants(root, keys):
    cert = _unit(root, keys, serial=0x1234ABCD)
    assert cert.serial_number == 0x1234ABCD
    assert certinfo.describe(cert)["serial"] == "1234ABCD"
    legacy = _unit(root, keys, hash_alg="sha1")  # root has an RSA key
    assert legacy.signature_hash_algorithm.name == "sha1"
    # cryptography 50 neither creates nor verifies SHA-1 certificate signatures: check by hand
    root.cert.public_key().verify(legacy.signature, legacy.tbs_certificate_bytes, PKCS1v15(), hashes.SHA1())
    assert certinfo.describe(legacy)["signature_hash"] == "sha1"
    assert certinfo.mst_of(legacy) == MST
    legacy_ca = pki.create_ca("Legacy CA", key=keys["inter"], hash_alg="sha1")
    assert legacy_ca.cert.signature_hash_algorithm.name == "sha1"
    ec_ca = pki.create_ca("EC CA", key=keys["p384"])
    with pytest.raises(ValueError):
        _unit(ec_ca, keys, hash_alg="sha1")


# ---------------------------------------------------------------- certinfo


def test_mst_plain_suffixed_missing(root, keys, unit):
    assert certinfo.mst_of(unit.cert) == MST
    assert certinfo.mst_of(_unit(root, keys, mst_suffix="-001")) == f"{MST}-001"
    assert certinfo.mst_of(_unit(root, keys, mst=None)) is None
    assert certinfo.msts_of(_unit(root, keys, mst=None)) == []


def test_mst_mixed_uids(root, keys):
    mixed = _unit(root, keys, extra_uids=["CCCD:001099012345"])
    assert certinfo.mst_of(mixed) == MST
    first_other = _unit(root, keys, mst=None, extra_uids=["CMND:012345678", "MST:0312345679-002"])
    assert certinfo.mst_of(first_other) == "0312345679-002"
    only_other = _unit(root, keys, mst=None, extra_uids=["CMND:012345678", "CCCD:001099012345"])
    assert certinfo.mst_of(only_other) is None
    two = _unit(root, keys, extra_uids=["MST:0312345679", f"MST:{MST}"])
    assert certinfo.mst_of(two) == MST
    assert certinfo.msts_of(two) == [MST, "0312345679"]


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("mst:0101234568", "0101234568"),
        ("  MST : 0101234568  ", "0101234568"),
        ("Mst:0101234568 - 001", "0101234568-001"),
        ("MST:0101234568001", "0101234568-001"),  # 13 digits written without the dash
        ("MST:", None),
        ("MST:01012345", None),  # too short
        ("MST:0101234568-01", None),
        ("MST:abc", None),
        ("MSTX:0101234568", None),
        ("0101234568", None),  # a bare number is not labelled as an MST
        ("CMND:0101234568", None),
    ],
)
def test_mst_tolerance(root, keys, uid, expected):
    assert certinfo.mst_of(_unit(root, keys, mst=None, extra_uids=[uid])) == expected


def test_mst_only_from_uid(root, keys):
    # an MST-looking string in CN or another attribute is never read
    cert = _unit(root, keys, mst=None, name="CÔNG TY A - MST:0101234568", province="MST:0101234568")
    assert certinfo.mst_of(cert) is None


def test_describe(unit, root, keys):
    info = certinfo.describe(unit.cert)
    json.dumps(info)
    assert info["subject"] == unit.cert.subject.rfc4514_string()
    assert info["issuer"].endswith("C=VN") and "CN=Test Issuing CA" in info["issuer"]
    assert info["mst"] == MST
    assert info["key"] == "RSA-2048"
    assert info["common_name"] == "Công ty TNHH Mẫu Việt"
    assert int(info["serial"], 16) == unit.cert.serial_number
    assert info["not_before"].endswith("Z") and info["not_after"].endswith("Z")
    assert datetime.fromisoformat(info["not_after"]) == unit.cert.not_valid_after_utc
    assert len(info["sha256"]) == 64 and info["sha256"] == info["sha256"].lower()
    assert info["signature_hash"] == "sha256"
    assert certinfo.describe(_unit(root, keys))["key"] == "EC-P256"
    assert certinfo.describe(_unit(root, keys, key=keys["p384"]))["key"] == "EC-P384"


# ---------------------------------------------------------------- files


def test_pem_round_trip(tmp_path, unit):
    key_path = pki.write_key_pem(tmp_path / "a" / "b" / "key.pem", unit.key)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert pki.key_matches(pki.load_key_pem(key_path), unit.cert)
    cert_path = pki.write_certs_pem(tmp_path / "c" / "chain.pem", unit.full_chain)
    assert pki.load_certs_pem(cert_path) == unit.full_chain
    assert b"PRIVATE KEY" not in cert_path.read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))  # no temp files left behind
    enc = pki.write_key_pem(tmp_path / "enc.pem", unit.key, password=b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in enc.read_bytes()
    assert pki.key_matches(pki.load_key_pem(enc, password=b"s3cret"), unit.cert)


@pytest.mark.parametrize("password", [b"demo", None])
def test_p12_round_trip(tmp_path, unit, password):
    path = pki.write_p12(tmp_path / "unit.p12", unit, password)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = pki.load_p12(path, password)
    assert back.cert == unit.cert
    assert back.chain == unit.chain  # nearest issuer first
    assert pki.key_matches(back.key, unit.cert)
    if password:
        with pytest.raises(ValueError):
            pki.load_p12(path, b"wrong")


def test_order_chain(root, inter, unit):
    assert pki.order_chain(unit.cert, [root.cert, inter.cert]) == [inter.cert, root.cert]
    assert pki.order_chain(inter.cert, [unit.cert, root.cert]) == [root.cert, unit.cert]


def test_crl(inter, unit, root):
    when = datetime.now(UTC) - timedelta(hours=1)
    crl = pki.issue_crl(
        inter, [(unit.cert.serial_number, when), (42, when)], reason=x509.ReasonFlags.key_compromise
    )
    assert crl.issuer == inter.cert.subject
    assert crl.is_signature_valid(inter.cert.public_key())
    assert not crl.is_signature_valid(root.cert.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(unit.cert.serial_number)
    assert entry is not None
    assert abs(entry.revocation_date_utc - when) < timedelta(seconds=1)
    assert crl.get_revoked_certificate_by_serial_number(43) is None
    assert len(crl) == 2
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > 0
    empty = pki.issue_crl(inter, [], next_update=datetime.now(UTC) + timedelta(days=1))
    assert len(empty) == 0


# ---------------------------------------------------------------- first-run set-up


def _snapshot(root_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root_dir.rglob("*"))
        if p.is_file()
    }


def test_ensure_dev_pki(tmp_path):
    anchors, data = tmp_path / "certs" / "trusted", tmp_path / "data"
    skey, scert = data / "server" / "notice-key.pem", data / "server" / "notice-cert.pem"

    first = pki.ensure_dev_pki(anchors, data, skey, scert)
    assert first.created == {"ca", "ca_key", "signing_key", "signing_cert", "demo_p12", "demo_pem"}
    assert set(first) == first.created
    assert first["ca"] == anchors / "dev-ca.pem"
    assert first["ca_key"] == data / "dev-ca" / "ca-key.pem"
    assert first["demo_p12"] == data / "demo" / f"unit-{MST}.p12"
    assert first["demo_pem"] == data / "demo" / f"unit-{MST}.pem"

    # the anchors directory holds only the CA certificate, never a key
    assert [p.name for p in anchors.iterdir()] == ["dev-ca.pem"]
    assert b"PRIVATE KEY" not in (anchors / "dev-ca.pem").read_bytes()
    for key_file in (first["ca_key"], skey, first["demo_p12"], first["demo_pem"]):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file

    [ca_cert] = pki.load_certs_pem(first["ca"])
    assert pki.key_matches(pki.load_key_pem(first["ca_key"]), ca_cert)
    server_chain = pki.load_certs_pem(scert)
    assert server_chain[1:] == [ca_cert]
    server_chain[0].verify_directly_issued_by(ca_cert)
    assert pki.key_matches(pki.load_key_pem(skey), server_chain[0])

    demo = pki.load_p12(first["demo_p12"], b"demo")
    demo.cert.verify_directly_issued_by(ca_cert)
    assert certinfo.mst_of(demo.cert) == MST
    assert demo.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Công ty TNHH Mẫu Việt"
    pem_certs = pki.load_certs_pem(first["demo_pem"])
    assert pem_certs == [demo.cert, ca_cert]
    assert pki.key_matches(pki.load_key_pem(first["demo_pem"]), demo.cert)

    # second run: nothing created, nothing touched
    before = _snapshot(tmp_path)
    second = pki.ensure_dev_pki(anchors, data, skey, scert)
    assert second.created == set()
    assert dict(second) == dict(first)
    assert _snapshot(tmp_path) == before

    # a lost half is rebuilt from the other half, nothing else changes
    first["demo_pem"].unlink()
    scert.unlink()
    third = pki.ensure_dev_pki(anchors, data, skey, scert)
    assert third.created == {"demo_pem", "signing_cert"}
    assert pki.load_certs_pem(first["demo_pem"])[0] == demo.cert  # same demo certificate
    new_server = pki.load_certs_pem(scert)[0]
    assert pki.key_matches(pki.load_key_pem(skey), new_server)  # same key, new certificate
    after = _snapshot(tmp_path)
    for name in ("certs/trusted/dev-ca.pem", "data/dev-ca/ca-key.pem", "data/server/notice-key.pem"):
        assert after[name] == before[name]


def test_ensure_dev_pki_refuses_key_under_anchors(tmp_path):
    with pytest.raises(ValueError):
        pki.ensure_dev_pki(
            tmp_path / "anchors", tmp_path / "anchors" / "data", tmp_path / "k.pem", tmp_path / "c.pem"
        )
    assert not (tmp_path / "anchors").exists()
