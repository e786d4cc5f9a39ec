"""The schema layer: forms, the envelope and notices against the derived XSDs in `xsd/`.

Validation runs in two steps:

1. lxml (libxml2) decides valid / invalid (`forms/libxml.py`). It is fast (tens of
   milliseconds for a several-megabyte form) and it is the only step for valid documents.
   Long lists are validated in windows, because libxml2's error log is quadratic in them.
2. Only for an invalid document, the problem list is built:
   - small documents (`size_hint` <= `max_readable_bytes`) whose errors (as libxml2 counts
     them) are within the cap: xmlschema's `iter_errors` on the lxml tree
     (`forms/readable.py`), whose reasons read better ("value doesn't match any pattern of
     ...", "Tag 'HoTen' expected"), stopped at the cap;
   - large documents, or more errors than the cap: lxml's own error log (line, message,
     path), since xmlschema is about 100 times slower than libxml2 and each of its errors
     costs time in the size of its element (10,000 bad attributes took minutes).

Every error is listed up to `cap`; `Problems.truncated` counts the rest. XPaths are
absolute and positional, as lxml's `getpath` writes them (`/D02-TS/NoiDung/LaoDong[3]/TienLuong`);
for notices, whose elements are namespaced, the same shape with prefixes `tb:` and `ds:`
(`forms/messages.py`).

Schema objects are built once per process (`default_schema_set()`); lxml schema objects
cannot be pickled, so each worker process builds its own.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import NamedTuple

from lxml import etree

from interchange import codes
from interchange.errors import Layer, Problem, Problems
from interchange.forms.libxml import libxml_validate
from interchange.forms.messages import Target, problem_of
from interchange.forms.readable import readable_errors
from interchange.forms.xsdtypes import TypeMap

log = logging.getLogger(__name__)
XS_NS = "http://www.w3.org/2001/XMLSchema"

FORM_SCHEMAS: dict[str, str] = {
    "D02-TS": "D02-TS-1.0.xsd",
    "TK1-TS": "TK1-TS-1.0.xsd",
    "D01-TS": "D01-TS-1.0.xsd",
    "M01B-HSB": "M01B-HSB-1.0.xsd",
}
ENVELOPE_SCHEMA = "Hoso-1.0.xsd"
NOTICE_SCHEMA = "ThongBao-1.0.xsd"


class _Schema:
    """One XSD: the lxml schema (loaded eagerly) and the xmlschema one (built on first need)."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        self.version = path.name.removesuffix(".xsd")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        doc = etree.parse(str(self.path), parser)
        self.lxml = etree.XMLSchema(doc)
        self.types = TypeMap(doc.getroot())
        # the repeated elements (maxOccurs above 1): the rows a large form is read by, one at a time
        self.row_tags = tuple(sorted({
            el.get("name") for el in doc.getroot().iter(f"{{{XS_NS}}}element")
            if el.get("name") and el.get("maxOccurs") not in (None, "0", "1")
        }))
        self._xs = None
        self._lock = threading.Lock()  # XMLSchema.error_log is per object: one validation at a time
        self.streaming = Streaming(self.lxml, self.row_tags, self._lock, _longest_local_name(doc.getroot()))

    def xmlschema(self):
        with self._lock:
            if self._xs is None:
                import xmlschema

                self._xs = xmlschema.XMLSchema10(str(self.path), defuse="always")
            return self._xs

    @property
    def xmlschema_loaded(self) -> bool:
        """Has the readable-errors validator been built (it is built only when first needed)?"""
        return self._xs is not None


def _longest_local_name(xsd: etree._Element) -> int | None:
    """The longest name of an element or attribute in no namespace that a valid document can hold
    (all are declared here); None when a wildcard lets in undeclared ones in no namespace
    (xs:any or xs:anyAttribute other than namespace="##other" or a list of URIs)."""
    for wildcard in xsd.iter(f"{{{XS_NS}}}any", f"{{{XS_NS}}}anyAttribute"):
        allowed = wildcard.get("namespace", "##any").split()
        if allowed != ["##other"] and any(n.startswith("##") for n in allowed):
            return None
    names = [el.get("name") for el in xsd.iter(f"{{{XS_NS}}}element", f"{{{XS_NS}}}attribute") if el.get("name")]
    return max(map(len, names), default=0)


class Streaming(NamedTuple):
    """What a streaming pass over a form needs (interchange.trust.streaming.stream_form)."""

    schema: etree.XMLSchema
    row_tags: tuple[str, ...]
    lock: threading.Lock  # held while the schema is in use (its error log is the object's)
    longest_local_name: int | None  # of what a valid form holds in no namespace; None: not bounded


class SchemaSet:
    """Every XSD of `xsd_dir`, loaded once. Not picklable: build one per process."""

    def __init__(self, xsd_dir: Path, max_readable_bytes: int = 2_000_000):
        self.xsd_dir = Path(xsd_dir)
        self.max_readable_bytes = max_readable_bytes
        self._forms = {code: _Schema(self.xsd_dir / name) for code, name in FORM_SCHEMAS.items()}
        self._envelope = _Schema(self.xsd_dir / ENVELOPE_SCHEMA)
        self._notice = _Schema(self.xsd_dir / NOTICE_SCHEMA)

    # --- what is known --------------------------------------------------------------

    def knows(self, form_code: str) -> bool:
        return form_code in self._forms

    def version(self, form_code: str) -> str:
        """The schema version used for a form ("D02-TS-1.0"); also "Hoso" and "ThongBao"."""
        if form_code == "Hoso":
            return self._envelope.version
        if form_code == "ThongBao":
            return self._notice.version
        return self._forms[form_code].version

    def streaming(self, form_code: str) -> Streaming | None:
        """What a streaming pass over a form needs (`interchange.trust.streaming`); None: unknown form."""
        schema = self._forms.get(form_code)
        return None if schema is None else schema.streaming

    def readable_loaded(self, form_code: str) -> bool:
        """Whether a form's readable-errors validator (xmlschema) was ever needed and built."""
        return self._forms[form_code].xmlschema_loaded

    # --- validation -----------------------------------------------------------------

    def validate_form(
        self,
        form_code: str,
        root: etree._Element,
        *,
        size_hint: int = 0,
        line_offset: int = 0,
        cap: int = 100,
    ) -> Problems:
        """Problems of one form (empty when it is valid). `size_hint`: the form's size in
        bytes (0: estimated); `line_offset` is added to every line number."""
        problems = Problems(cap=cap)
        schema = self._forms.get(form_code)
        if schema is None:
            problems.add(
                Problem(
                    layer=Layer.SCHEMA,
                    code=codes.XSD_UNKNOWN_FORM,
                    form=form_code,
                    message_vi=f"Không có lược đồ cho tờ khai '{form_code}'; mẫu tờ khai này chưa được hỗ trợ.",
                    message_en=f"No schema for form '{form_code}'; this form is not supported.",
                )
            )
            return problems
        target = Target(Layer.SCHEMA, codes.XSD, form_code, f"Tờ khai {form_code}")
        return self._validate(schema, target, root, size_hint, line_offset, problems)

    def validate_envelope(
        self, root: etree._Element, *, size_hint: int = 0, line_offset: int = 0, cap: int = 100
    ) -> Problems:
        """Problems of a `Hoso` envelope: layer `envelope`, code `ENV-XSD`."""
        target = Target(Layer.ENVELOPE, codes.ENV_XSD, None, "Hồ sơ")
        return self._validate(self._envelope, target, root, size_hint, line_offset, Problems(cap=cap))

    def validate_notice(self, root: etree._Element, *, cap: int = 100) -> Problems:
        """Problems of a `ThongBao` notice (a self-check before signing): code `XSD`, form "ThongBao"."""
        target = Target(Layer.SCHEMA, codes.XSD, "ThongBao", "Thông báo")
        return self._validate(self._notice, target, root, 0, 0, Problems(cap=cap))

    # --- the work -------------------------------------------------------------------

    def _validate(
        self,
        schema: _Schema,
        target: Target,
        root: etree._Element,
        size_hint: int,
        line_offset: int,
        problems: Problems,
    ) -> Problems:
        if isinstance(root, etree._ElementTree):
            root = root.getroot()
        with schema._lock:
            ok, errors, total = libxml_validate(schema.lxml, root, problems.cap)
        if ok:
            return problems
        # xmlschema's errors cost more than linear time in the shape of the document (each error
        # describes its element): only for small documents with few enough errors to list them all
        if total <= problems.cap and self._readable(root, size_hint):
            try:
                readable, count = readable_errors(schema.xmlschema(), root, problems.cap)
            except Exception:  # never lose libxml2's verdict to a second engine's failure
                log.exception("xmlschema failed on %s; reporting libxml2's errors", schema.version)
                readable, count = [], 0
            if count:  # lxml is the judge: if xmlschema finds nothing, keep lxml's errors
                errors, total = readable, count if count <= problems.cap else max(count, total)
        for error in errors:
            problems.add(problem_of(schema.types, target, error, line_offset))
        problems.truncated += max(0, total - len(errors))
        return problems

    def _readable(self, root: etree._Element, size_hint: int) -> bool:
        limit = self.max_readable_bytes
        if size_hint > 0:
            return size_hint <= limit
        return _estimated_size(root, limit) <= limit


@functools.cache
def default_schema_set() -> SchemaSet:
    """The process-wide schema set over the repository's `xsd/`."""
    return SchemaSet(Path(__file__).resolve().parents[2] / "xsd")


def _estimated_size(root: etree._Element, limit: int) -> int:
    """A rough byte size of a document, counted only until it passes `limit`."""
    size = 0
    for element in root.iter():
        size += 2 * len(str(element.tag)) + 5 + len(element.text or "") + len(element.tail or "")
        if size > limit:
            break
    return size
