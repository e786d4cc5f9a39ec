"""What verifying keeps per certificate (its fingerprint, PEM, RSA numbers, the checks of a leaf,
the signer of a chain as written) never changes a verdict: each signature gets its own answers,
whatever was verified before it, and the report carries its own certificates."""

from __future__ import annotations

from base64 import b64encode

from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from interchange.intake.pipeline import Receiver
from interchange.trust.xmldsig import DSIG_NS, to_bytes
from tests.helpers import code_set as codes
from tests.helpers import dossier


def test_signatures_in_turn_get_their_own_answers(cfg, world, now):
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    good = dossier(world.signer(world.unit))
    by_ca = dossier(world.signer(world.ca))  # a CA certificate as the signer's: refused
    rogue = dossier(world.signer(world.rogue_ca))  # trusted by no anchor
    first = {name: codes(receiver.receive(data, now)) for name, data in (("good", good), ("ca", by_ca), ("rogue", rogue))}
    assert first["good"] == set()
    assert "SIG-CA-LEAF" in first["ca"] and "SIG-UNTRUSTED" in first["rogue"]
    for _ in range(2):
        for name, data in (("rogue", rogue), ("good", good), ("ca", by_ca)):
            assert codes(receiver.receive(data, now)) == first[name]


def test_the_report_carries_the_signer_s_own_certificates(cfg, world, now):
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    for issued in (world.unit, world.other_unit, world.unit):
        out = receiver.receive(dossier(world.signer(issued)), now)
        for signer in out.signers:
            assert signer["signer"]["sha256"] == issued.cert.fingerprint(hashes.SHA256()).hex()
            assert signer["chain_pem"][0] == issued.cert.public_bytes(serialization.Encoding.PEM).decode()
            assert signer["mst"] == signer["signer"]["mst"]


def test_a_certificate_written_otherwise_is_read_again(cfg, world, now):
    """The signer is found from the certificates' text: the same certificate written on one line
    is read as well; with a stray character it is refused, each time, after it was read right."""
    receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
    data = dossier(world.signer(world.unit))
    assert receiver.receive(data, now).accepted

    def rewritten(text: str) -> bytes:
        root = etree.fromstring(data)
        root.find(f"CKy_Dvi//{{{DSIG_NS}}}X509Certificate").text = text  # the envelope's own signature
        return to_bytes(root)

    one_line = b64encode(world.unit.cert.public_bytes(serialization.Encoding.DER)).decode()
    assert codes(receiver.receive(rewritten(one_line), now)) == set()
    for _ in range(2):
        assert "SIG-BASE64" in codes(receiver.receive(rewritten(one_line[:40] + ":" + one_line[41:]), now))
        assert receiver.receive(data, now).accepted
