"""Step 2 of the schema layer, for small invalid documents: xmlschema's errors, whose reasons
read better than libxml2's ("value doesn't match any pattern of ...", "Tag 'HoTen' expected")
but which is about 100 times slower, so it runs only once libxml2 has said "invalid"."""

from __future__ import annotations

import re

from lxml import etree

from interchange.forms.xsderror import XsdError
from interchange.forms.xsdtypes import local_name


def readable_errors(xs, root: etree._Element, cap: int) -> tuple[list[XsdError], int]:
    """Readable errors of xmlschema on the lxml tree itself (no re-parsing; never `to_dict`):
    the first `cap`, and how many were seen (`cap` + 1 when it stopped early)."""
    from xmlschema.validators import XsdAttribute
    from xmlschema.validators.exceptions import XMLSchemaChildrenValidationError

    errors: list[XsdError] = []
    total = 0
    for err in xs.iter_errors(root, use_location_hints=False):
        total += 1
        if len(errors) >= cap:
            break  # never more work than the cap: the caller counts the rest from libxml2's log
        element = err.elem if isinstance(err.elem, etree._Element) else None
        reason = err.reason or err.message
        attribute = None
        value = None
        expected: list[str] = []
        if isinstance(err, XMLSchemaChildrenValidationError):
            expected = [local_name(getattr(e, "name", None) or "") for e in (err.expected or [])]
            child = err.invalid_child
            if isinstance(child, etree._Element):
                kind, element = "unexpected", child
            else:
                kind = "missing"
        elif element is not None and element.getparent() is None and "not an element of the schema" in reason:
            kind = "root"
        else:
            validator = err.validator
            while validator is not None and not isinstance(validator, XsdAttribute):
                validator = getattr(validator, "parent", None)
            if isinstance(validator, XsdAttribute):
                attribute = validator.local_name
            elif m := re.match(r"attribute ([^=\s]+)=", reason):  # a bad attribute value
                attribute = local_name(m.group(1))
            elif "attribute" in reason and ("not allowed" in reason or "missing" in reason):
                m = re.search(r"'([^']+)' attribute", reason) or re.search(
                    r"attribute '?([\w:{}.-]+)'?", reason
                )
                attribute = local_name(m.group(1)) if m else None
            if attribute and ("not allowed" in reason or "missing" in reason or "required" in reason):
                kind = "attribute"
            elif "character data" in reason.lower():
                kind = "text"
            else:
                kind = "value"
                if element is not None:
                    value = element.get(attribute) if attribute else (element.text or "")
        errors.append(
            XsdError(
                kind=kind,
                element=element,
                line=element.sourceline if element is not None else None,
                reason=reason,
                expected=[e for e in expected if e],
                attribute=attribute,
                value=value,
                by_xmlschema=True,
            )
        )
    return errors, total
