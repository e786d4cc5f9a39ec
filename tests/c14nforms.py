"""Shared by the streamed-C14N tests (test_c14nstream, test_c14nstream_namespaces): the digest
of a whole document as the verifier computes it and the spliced one of a reduced tree, a form of
rows, the receipt of one body streamed and not."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from lxml import etree

from interchange.intake.pipeline import Caller, Receiver
from interchange.trust.c14nstream import Splice
from interchange.trust.dsigshort import detach
from interchange.trust.xmldsig import SIGNATURE_TAG
from interchange.xmlparse import XmlLimits
from tests.helpers import UNIT

LIMITS = XmlLimits()
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)


def detach_signatures(root: etree._Element) -> None:
    """As the verifier does: each Signature removed, its tail kept in the parent's content."""
    for sig in list(root.iter(SIGNATURE_TAG)):
        detach(sig)


def whole_digest(data: bytes) -> bytes:
    root = etree.fromstring(data, PARSER)
    detach_signatures(root)
    return hashlib.sha256(etree.tostring(root.getroottree(), method="c14n")).digest()


def spliced_digest(root: etree._Element, splice: Splice) -> bytes:
    detach_signatures(root)
    return splice.digest(etree.tostring(root.getroottree(), method="c14n"), "sha256")


NS = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'


def a_form(body: str, decls: str = NS, lists: int = 1) -> bytes:
    one = f"<List>\n    {body}</List>"
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Form {decls}>\n  <Head>h</Head>\n  '
            + "\n  ".join([one] * lists) + "\n  <Cky/>\n</Form>").encode()


def both(receiver: Receiver, body: bytes):
    caller = Caller(role="submitter", mst=UNIT.mst)
    at = datetime.now(UTC)
    return receiver.receive(body, at, caller), receiver.receive(body, at, caller, stream=False)


def summary(out) -> tuple:
    return out.accepted, out.layers, [(p.code, p.xpath, p.line) for p in out.problems], out.envelope, \
        [(s["valid"], s["mst"]) for s in out.signers], out.forms
