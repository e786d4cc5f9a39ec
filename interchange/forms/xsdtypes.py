"""What the XSDs declare: the simple type of every element and attribute, by local-name path.

The messages of the schema layer name what a value should look like ("a date dd/MM/yyyy");
for that they need the declared type of the offending element or attribute, which neither
validator reports. `TypeMap` reads it from the XSD once, when the schema is loaded.
"""

from __future__ import annotations

from lxml import etree

XS = "{http://www.w3.org/2001/XMLSchema}"


def local_name(name) -> str:
    """A tag or a validator's name without its namespace or prefix."""
    name = str(name)
    if name.startswith("{"):
        name = name.rsplit("}", 1)[-1]
    return name.rsplit(":", 1)[-1]


def local_path(element: etree._Element) -> str:
    """/Root/Child/... by local names, no positions: the key of the schema's type map."""
    names = []
    node = element
    while node is not None:
        names.append(local_name(node.tag))
        node = node.getparent()
    return "/" + "/".join(reversed(names))


class TypeMap:
    """Local-name path of every element and attribute declared -> its simple type's local
    name (e.g. "/D02-TS/NoiDung/LaoDong/TienLuong" -> "AmountOrEmpty"), and the union types."""

    __slots__ = ("types", "unions")

    def __init__(self, xsd_root: etree._Element):
        self.types, self.unions = _type_map(xsd_root)

    def type_of(self, element: etree._Element | None, attribute: str | None) -> tuple[str, bool]:
        """(simple type name, is it a union) of an element or attribute, "" when unknown."""
        if element is None:
            return "", False
        name = self.types.get(local_path(element) + (f"/@{attribute}" if attribute else ""), "")
        return name, name in self.unions


def _type_map(xsd_root: etree._Element) -> tuple[dict[str, str], set[str]]:
    complex_types = {ct.get("name"): ct for ct in xsd_root.findall(f"{XS}complexType")}
    simple_types = {st.get("name"): st for st in xsd_root.findall(f"{XS}simpleType")}
    unions = {name for name, st in simple_types.items() if st.find(f"{XS}union") is not None}
    out: dict[str, str] = {}

    def element(decl, prefix: str, depth: int) -> None:
        if depth > 30:
            return
        path = f"{prefix}/{decl.get('name')}"
        type_name = local_name(decl.get("type") or "")
        if type_name in complex_types:
            complex_type(complex_types[type_name], path, depth)
        elif type_name:
            out[path] = type_name
        elif (ct := decl.find(f"{XS}complexType")) is not None:
            complex_type(ct, path, depth)
        elif (st := decl.find(f"{XS}simpleType")) is not None:
            restriction = st.find(f"{XS}restriction")
            out[path] = local_name(restriction.get("base", "")) if restriction is not None else ""

    def complex_type(ct, path: str, depth: int) -> None:
        attributes = ct.findall(f"{XS}attribute")
        content = ct.find(f"{XS}simpleContent")
        if content is not None and len(content):
            out[path] = local_name(content[0].get("base") or "")
            attributes += content[0].findall(f"{XS}attribute")
        for attribute in attributes:
            out[f"{path}/@{attribute.get('name')}"] = local_name(attribute.get("type") or "")
        for particle in ct:
            group(particle, path, depth)

    def group(particle, path: str, depth: int) -> None:
        if particle.tag == f"{XS}element":
            element(particle, path, depth + 1)
        elif particle.tag in (f"{XS}sequence", f"{XS}choice", f"{XS}all"):
            for child in particle:
                group(child, path, depth)

    for decl in xsd_root.findall(f"{XS}element"):
        element(decl, "", 0)
    return out, unions
