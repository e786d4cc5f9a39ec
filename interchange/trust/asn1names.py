"""asn1crypto's comparisons of distinguished names, worked out once per name instead of at
every use.

pyhanko-certvalidator keys its certificate registry and trust anchors by `Name.hashable` and
matches issuers with `Name.__eq__`, and asn1crypto computes both afresh at every use: RFC 4518
string preparation of each attribute, about 0.4 ms per name. Building one path for a new signer
does this about 20 times (the anchors registered again in each validation context, the issuer
searched for, the anchor matched), and nearly every dossier comes from a certificate not yet
validated: 2.5 to 3 ms of each such dossier went to it (in process, 1,100 signers). `install()` makes both remember what they
work out, by the DER encoding of the name's RDN sequence (without the tag a name carries inside
a GeneralName), which is all it depends on:
- `hashable`: asn1crypto's string, as it computes it;
- `==`: asn1crypto's RFC 5280 section 7.1 rule (names of the same length whose RDNs pairwise
  have the same number of attributes and the same prepared value for each attribute type),
  decided by comparing one key per name that holds exactly those things.
"""

from __future__ import annotations

import functools

from asn1crypto import x509 as asn1_x509

ASN1CRYPTO_HASHABLE = asn1_x509.Name.hashable  # the property as asn1crypto defines it
ASN1CRYPTO_EQ = asn1_x509.Name.__eq__

_NAMES_KEPT = 8192  # issuers and subjects of the signers in flight, and the CAs


@functools.lru_cache(maxsize=_NAMES_KEPT)
def hashable_of(der: bytes) -> str:
    return asn1_x509.RDNSequence.load(der).hashable  # what asn1crypto's Name.hashable returns


@functools.lru_cache(maxsize=_NAMES_KEPT)
def comparison_key(der: bytes) -> tuple:
    """What asn1crypto's `RelativeDistinguishedName.__eq__` compares, for each RDN in order: its
    number of attributes and its prepared value of each attribute type (asn1crypto's own
    `_get_values`, so that the preparation is the one its comparison applies)."""
    rdns = asn1_x509.RDNSequence.load(der)
    return tuple((len(rdn), frozenset(rdn._get_values(rdn).items())) for rdn in rdns)


def _remembered_hashable(name: asn1_x509.Name) -> str:
    return hashable_of(name.chosen.dump())


def _remembered_eq(name: asn1_x509.Name, other: object) -> bool:
    if not isinstance(other, asn1_x509.Name):
        return False
    mine, theirs = name.chosen.dump(), other.chosen.dump()
    return mine == theirs or comparison_key(mine) == comparison_key(theirs)


def install() -> None:
    asn1_x509.Name.hashable = property(_remembered_hashable, doc=ASN1CRYPTO_HASHABLE.__doc__)
    asn1_x509.Name.__eq__ = _remembered_eq
