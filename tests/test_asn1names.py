"""The remembered name comparisons (interchange.trust.asn1names) give asn1crypto's answers: the
same `hashable` string and the same RFC 5280 equality, on names that differ in string type,
case, spacing, attribute order within an RDN, RDN order, repeated attribute types and length."""

from __future__ import annotations

import itertools
import random

from asn1crypto import x509 as asn1_x509

from interchange.trust import asn1names, pathvalidation  # noqa: F401  (pathvalidation installs)

VALUE_TYPES = ["utf8_string", "printable_string", "teletex_string", "bmp_string"]
TYPES = ["common_name", "organization_name", "country_name", "locality_name", "serial_number"]
VALUES = ["Cục Thuế", "ACME  Co", "acme co", " ACME CO ", "VN", "vn", "MST:0101234567", "MST:0101234568"]


def name_of(rdns: list[list[tuple[str, str, str]]]) -> asn1_x509.Name:
    """A Name from RDNs of (attribute type, value, string type) triples, encoded as given."""
    built = []
    for rdn in rdns:
        atvs = []
        for attr, value, kind in rdn:
            atvs.append(asn1_x509.NameTypeAndValue(
                {"type": attr, "value": asn1_x509.DirectoryString(name=kind, value=value)}
            ))
        built.append(asn1_x509.RelativeDistinguishedName(atvs))
    return asn1_x509.Name.load(asn1_x509.Name(name="", value=asn1_x509.RDNSequence(built)).dump())


def random_rdns(rng: random.Random) -> list[list[tuple[str, str, str]]]:
    def kind_for(value: str) -> str:
        ascii_only = all(ord(ch) < 128 for ch in value) and ":" not in value
        return rng.choice(VALUE_TYPES if ascii_only else ["utf8_string", "bmp_string"])

    rdns = []
    for _ in range(rng.randint(1, 3)):
        rdn = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            value = rng.choice(VALUES)
            rdn.append((rng.choice(TYPES), value, kind_for(value)))
        rdns.append(rdn)
    return rdns


def variant(rdns, rng: random.Random):
    """A name that asn1crypto may or may not judge equal: another string type, case or spacing,
    the attributes of an RDN reordered, one repeated, RDNs swapped, one dropped."""
    out = [list(rdn) for rdn in rdns]
    change = rng.randrange(6)
    i = rng.randrange(len(out))
    if change == 0:
        attr, value, _ = out[i][0]
        out[i][0] = (attr, value, "utf8_string")
    elif change == 1:
        attr, value, kind = out[i][0]
        out[i][0] = (attr, rng.choice([value.upper(), value.lower(), f"  {value}  "]), kind)
    elif change == 2:
        rng.shuffle(out[i])
    elif change == 3:
        out[i].append(out[i][0])  # the same attribute twice: one type, but more attributes
    elif change == 4 and len(out) > 1:
        out.reverse()
    elif len(out) > 1:
        del out[i]
    return out


def test_the_remembered_answers_are_asn1cryptos():
    rng = random.Random(20261203)
    names = []
    for _ in range(120):
        rdns = random_rdns(rng)
        names += [name_of(rdns), name_of(variant(rdns, rng)), name_of(variant(rdns, rng))]
    equal_seen = unequal_seen = differently_encoded_equal = repeated_only_differ = 0
    for a, b in itertools.product(names[:150], names[:150]):
        expected = asn1names.ASN1CRYPTO_EQ(a, b)
        assert (a == b) is expected, (a.native, b.native)
        assert (a != b) is (not expected)
        equal_seen += expected
        unequal_seen += not expected
        differently_encoded_equal += expected and a.dump() != b.dump()
        repeated_only_differ += not expected and a.hashable == b.hashable  # an attribute repeated
    for name in names:
        assert name.hashable == asn1names.ASN1CRYPTO_HASHABLE.fget(name)
    # the comparison saw every case it decides
    assert equal_seen > 150 and unequal_seen > 1000 and differently_encoded_equal > 20
    assert repeated_only_differ > 0


def test_a_name_is_never_equal_to_something_else():
    name = name_of([[("common_name", "CA", "utf8_string")]])
    assert name != "CA" and name != name.chosen and not (name == None)  # noqa: E711


def test_names_read_from_certificates_keep_comparing_after_reuse():
    first = name_of([[("country_name", "VN", "printable_string")], [("common_name", "Cục Thuế", "utf8_string")]])
    same_written_otherwise = name_of(
        [[("country_name", "vn", "utf8_string")], [("common_name", "cục  thuế", "utf8_string")]]
    )
    for _ in range(3):  # answered from what was remembered on the second and third time
        assert first == same_written_otherwise
        assert first.hashable == same_written_otherwise.hashable


def test_a_name_inside_a_general_name_compares_as_itself():
    # a CRL entry's certificateIssuer holds the name with the tag of its GeneralName choice
    name = name_of([[("country_name", "VN", "printable_string")], [("common_name", "CA", "utf8_string")]])
    general = asn1_x509.GeneralName.load(asn1_x509.GeneralName(name="directory_name", value=name).dump())
    tagged = general.chosen
    assert tagged.dump() != name.dump()
    assert tagged == name and name == tagged and asn1names.ASN1CRYPTO_EQ(tagged, name)
    assert tagged.hashable == name.hashable == asn1names.ASN1CRYPTO_HASHABLE.fget(tagged)
