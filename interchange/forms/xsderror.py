"""One schema error as either validator reports it, before it becomes a `Problem`."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree


@dataclass(slots=True)
class XsdError:
    """One schema error, engine-neutral."""

    kind: str  # value | unexpected | missing | root | attribute | text | other
    element: etree._Element | None
    line: int | None
    reason: str
    expected: list[str]
    attribute: str | None = None
    value: str | None = None
    by_xmlschema: bool = False
