"""Step 1 of the schema layer: libxml2's verdict (valid or not) and its error log.

For every error, lxml records the node's path, and computing "LaoDong[40000]" walks all
39,999 preceding siblings. A large document with an error in each row is therefore
quadratic (about 45 s for 50,000 rows with one bad value each). So a document with a list
longer than `WINDOW` rows is validated in windows: the rows of each long list are detached
and put back `WINDOW` at a time, all inside the same document (moving nodes within a
document is cheap and keeps their line numbers), and the document is restored exactly, in a
`finally`, before returning. Windows are only used for homogeneous lists (every row has the
same tag), whose content model is `Row*` in every schema here, so validating window by
window reports the same errors as validating the whole list.
"""

from __future__ import annotations

import re

from lxml import etree

from interchange.forms.xsderror import XsdError
from interchange.forms.xsdtypes import local_name

WINDOW = 1000  # rows of one list validated at a time by libxml2 (see the module docstring)
_LIST_DEPTH = 4  # lists sit at most this deep in every schema here (M01B-HSB/NoiDung/PhatSinh/CheDoOmDau)
# Is there any list longer than a window? Asked in C, so small documents skip the Python walk.
_HAS_LONG_LIST = etree.XPath(
    "boolean(" + " | ".join("/".join(["*"] * (depth + 1)) + f"[{WINDOW + 1}]" for depth in range(_LIST_DEPTH)) + ")"
)


def libxml_validate(schema: etree.XMLSchema, root: etree._Element, cap: int) -> tuple[bool, list[XsdError], int]:
    """(valid, the first `cap` errors, how many errors in all), windowing long lists."""
    tree = root.getroottree()
    lists = _long_lists(root)
    if not lists:
        if schema.validate(root):
            return True, [], 0
        errors: list[XsdError] = []
        total = _collect(schema.error_log, tree, cap, errors, None)
        return False, errors, total

    saved = [(parent, list(parent)) for parent in lists]
    errors = []
    total = 0
    ok = True
    try:
        for parent, rows in saved:  # every list holds its first window
            parent[:] = rows[:WINDOW]
        if not schema.validate(root):
            ok = False
            total += _collect(schema.error_log, tree, cap, errors, None)
        for parent, rows in saved:
            for start in range(WINDOW, len(rows), WINDOW):
                parent[:] = rows[start : start + WINDOW]
                if not schema.validate(root):
                    ok = False
                    total += _collect(schema.error_log, tree, cap, errors, tree.getpath(parent) + "/")
            parent[:] = rows[:WINDOW]
    finally:
        for parent, rows in saved:
            parent[:] = rows
    errors.sort(key=lambda e: e.line or 0)  # windows report out of document order
    return ok, errors, total


def _long_lists(root: etree._Element) -> list[etree._Element]:
    """Elements near the top with more than WINDOW children, all of one tag."""
    if not _HAS_LONG_LIST(root):
        return []
    found = []
    level = [root]
    for _ in range(_LIST_DEPTH):
        following = []
        for element in level:
            if len(element) > WINDOW:
                tags = {child.tag for child in element if isinstance(child.tag, str)}
                if len(tags) == 1:
                    found.append(element)
                    continue
            following.extend(child for child in element if isinstance(child.tag, str))
            if len(following) > 50 * WINDOW:  # wide but heterogeneous: not a list
                return found
        level = following
    return found


_EXPECTED = re.compile(r"Expected is (?:one of )?\( (.*?) \)")
_ATTRIBUTE = re.compile(r"attribute '([^']+)'")


def _collect(log, tree: etree._ElementTree, cap: int, out: list[XsdError], under: str | None) -> int:
    """Append the first errors of an lxml error log to `out` (up to `cap` in all); return
    how many errors the log holds. With `under`, only errors below that path count (the
    rows of the current window; the rest of the document was checked in the first pass)."""
    count = 0
    for entry in log:
        if entry.level < etree.ErrorLevels.ERROR:
            continue
        path = entry.path or ""
        if under is not None and not path.startswith(under):
            continue
        count += 1
        if len(out) >= cap:
            continue
        element = None
        if path:
            try:
                found = tree.xpath(path)
            except etree.XPathError:  # libxml2 writes prefixes (/Hoso/a:x) we hold no map for
                found = []
            element = found[0] if found and isinstance(found[0], etree._Element) else None
        message = entry.message
        attribute = None
        if "This element is not expected" in message:
            kind = "unexpected"
        elif "Missing child element" in message:
            kind = "missing"
        elif "No matching global declaration" in message:
            kind = "root"
        elif "Character content" in message:
            kind = "text"
        elif (m := _ATTRIBUTE.search(message)) and ("is not allowed" in message or "is required" in message):
            kind, attribute = "attribute", m.group(1)
        else:
            kind = "value"
            m = _ATTRIBUTE.search(message)
            attribute = m.group(1) if m else None
        expected = []
        if m := _EXPECTED.search(message):
            expected = [local_name(name.strip()) for name in m.group(1).split(",")]
        value = None
        if kind == "value" and element is not None:
            value = element.get(attribute) if attribute else (element.text or "")
        out.append(
            XsdError(
                kind=kind,
                element=element,
                # the element's own line: libxml2's entry.line is sometimes one off (an
                # empty element that ends its line gets the next line)
                line=(element.sourceline if element is not None else None) or entry.line or None,
                reason=message,
                expected=[e for e in expected if e],
                attribute=attribute,
                value=value,
            )
        )
    return count
