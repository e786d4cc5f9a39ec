"""The schema layer: forms, the envelope and notices against the derived XSDs in `xsd/`.

Validation runs in two steps:

1. lxml (libxml2) decides valid / invalid. It is fast (tens of milliseconds for a
   several-megabyte form) and it is the only step for valid documents.
2. Only for an invalid document, the problem list is built:
   - small documents (`size_hint` <= `max_readable_bytes`): xmlschema's `iter_errors` on
     the lxml tree, whose reasons read better ("value doesn't match any pattern of ...",
     "Tag 'HoTen' expected");
   - large documents: lxml's own error log (line, message, path), since xmlschema is
     about 100 times slower than libxml2.

One thing about libxml2's error log shapes the first step: for every error, lxml records
the node's path, and computing "LaoDong[40000]" walks all 39,999 preceding siblings. A
large document with an error in each row is therefore quadratic (about 45 s for 50,000
rows with one bad value each). So a document with a list longer than `WINDOW` rows is
validated in windows: the rows of each long list are detached and put back `WINDOW` at a
time, all inside the same document (moving nodes within a document is cheap and keeps
their line numbers), and the document is restored exactly, in a `finally`, before
returning. Windows are only used for homogeneous lists (every row has the same tag), whose
content model is `Row*` in every schema here, so validating window by window reports the
same errors as validating the whole list.

Every error is listed up to `cap`; `Problems.truncated` counts the rest. XPaths are
absolute and positional, as lxml's `getpath` writes them (`/D02-TS/NoiDung/LaoDong[3]/TienLuong`);
for notices, whose elements are namespaced, the same shape with prefixes `tb:` and `ds:`.

Schema objects are built once per process (`default_schema_set()`); lxml schema objects
cannot be pickled, so each worker process builds its own.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from interchange import codes
from interchange.errors import Layer, Problem, Problems

log = logging.getLogger(__name__)

FORM_SCHEMAS: dict[str, str] = {
    "D02-TS": "D02-TS-1.0.xsd",
    "TK1-TS": "TK1-TS-1.0.xsd",
    "D01-TS": "D01-TS-1.0.xsd",
    "M01B-HSB": "M01B-HSB-1.0.xsd",
}
ENVELOPE_SCHEMA = "Hoso-1.0.xsd"
NOTICE_SCHEMA = "ThongBao-1.0.xsd"
NOTICE_NS = "urn:interchange:thongbao:1"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
PREFIXES = {NOTICE_NS: "tb", DSIG_NS: "ds"}

WINDOW = 1000  # rows of one list validated at a time by libxml2 (see the module docstring)
VALUE_MAX = 200  # characters of an offending value kept in a Problem
REASON_MAX = 500  # characters of a validator's reason kept in a Problem
_LIST_DEPTH = 4  # lists sit at most this deep in every schema here (M01B-HSB/NoiDung/PhatSinh/CheDoOmDau)
# Is there any list longer than a window? Asked in C, so small documents skip the Python walk.
_HAS_LONG_LIST = etree.XPath(
    "boolean(" + " | ".join("/".join(["*"] * (depth + 1)) + f"[{WINDOW + 1}]" for depth in range(_LIST_DEPTH)) + ")"
)

XS = "{http://www.w3.org/2001/XMLSchema}"

# What a value of each named simple type of the XSDs looks like, for the messages.
TYPE_HINTS: dict[str, tuple[str, str]] = {
    "Date": ("ngày dạng dd/MM/yyyy", "a date dd/MM/yyyy"),
    "DateOrEmpty": ("ngày dạng dd/MM/yyyy hoặc để trống", "a date dd/MM/yyyy, or empty"),
    "BirthDate": (
        "ngày sinh dạng dd/MM/yyyy (hoặc MM/yyyy, yyyy)",
        "a birth date dd/MM/yyyy (or MM/yyyy, yyyy)",
    ),
    "Month": ("tháng dạng MM/yyyy", "a month MM/yyyy"),
    "MonthOrEmpty": ("tháng dạng MM/yyyy hoặc để trống", "a month MM/yyyy, or empty"),
    "PeriodOrEmpty": ("kỳ kê khai dạng MM/yyyy", "a period MM/yyyy"),
    "CompactDate": ("ngày dạng yyyymmdd", "a date yyyymmdd"),
    "Flag": ("0 hoặc 1", "0 or 1"),
    "FlagOrEmpty": ("0, 1 hoặc để trống", "0, 1, or empty"),
    "Gender": ("1 (nam) hoặc 0 (nữ)", "1 (male) or 0 (female)"),
    "PersonalIdOrEmpty": ("số định danh cá nhân 12 chữ số hoặc để trống", "a 12-digit personal ID, or empty"),
    "SiCodeOrEmpty": ("mã số BHXH 10 chữ số hoặc để trống", "a 10-digit social-insurance code, or empty"),
    "Sequence": ("số thứ tự nguyên dương", "a positive whole number"),
    "Amount": ("số tiền không âm", "a non-negative amount"),
    "AmountOrEmpty": (
        "số tiền không âm (chỉ gồm chữ số) hoặc để trống",
        "a non-negative amount (digits only), or empty",
    ),
    "DecimalOrEmpty": ("số thập phân (dấu chấm) hoặc để trống", "a decimal number (with a dot), or empty"),
    "CountOrEmpty": ("số nguyên không âm hoặc để trống", "a non-negative whole number, or empty"),
    "RegionOrEmpty": ("mã vùng từ 01 đến 04 hoặc để trống", "a region code 01 to 04, or empty"),
    "CountryOrEmpty": ("mã quốc gia 2 chữ cái hoặc để trống", "a two-letter country code, or empty"),
    "EthnicOrEmpty": ("mã dân tộc 2 chữ số hoặc để trống", "a two-digit ethnic-group code, or empty"),
    "NonEmptyText": ("một giá trị, không được để trống", "a value; it may not be empty"),
    "NonEmptyCode": (
        "một mã (tối đa 50 ký tự), không được để trống",
        "a code (at most 50 characters); not empty",
    ),
    "Code": ("một mã tối đa 50 ký tự", "a code of at most 50 characters"),
    "IvanCode": ("mã I-VAN 5 chữ số", "a 5-digit I-VAN code"),
    "TaxCode": ("mã số thuế 10 chữ số, có thể thêm -NNN", "a 10-digit tax code, optionally -NNN"),
    "nonNegativeInteger": ("số nguyên không âm", "a non-negative whole number"),
    "positiveInteger": ("số nguyên dương", "a positive whole number"),
    "decimal": ("số thập phân (dấu chấm)", "a decimal number (with a dot)"),
    "base64Binary": ("dữ liệu base64", "base64 data"),
    "dateTime": ("thời điểm ISO 8601 (yyyy-MM-ddTHH:mm:ss+07:00)", "an ISO 8601 date-time"),
    "Kind": ("TIEP_NHAN, TU_CHOI hoặc KET_QUA", "TIEP_NHAN, TU_CHOI or KET_QUA"),
    "Outcome": ("CHAP_NHAN hoặc KHONG_CHAP_NHAN", "CHAP_NHAN or KHONG_CHAP_NHAN"),
    "LayerName": (
        "transport, envelope, signature, schema hoặc rule",
        "transport, envelope, signature, schema or rule",
    ),
    "LayerState": ("dat, khong_dat hoặc chua_chay", "dat, khong_dat or chua_chay"),
    "Severity": ("error hoặc warning", "error or warning"),
}


@dataclass(frozen=True, slots=True)
class _Target:
    """What is validated: how its problems are labelled."""

    layer: Layer
    code: str
    form: str | None
    what_vi: str  # "Tờ khai D02-TS", "Hồ sơ", "Thông báo"


@dataclass(slots=True)
class _Error:
    """One schema error, engine-neutral."""

    kind: str  # value | unexpected | missing | root | attribute | text | other
    element: etree._Element | None
    line: int | None
    reason: str
    expected: list[str]
    attribute: str | None = None
    value: str | None = None
    by_xmlschema: bool = False


class _Schema:
    """One XSD: the lxml schema (loaded eagerly) and the xmlschema one (built on first need)."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        self.version = path.name.removesuffix(".xsd")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        doc = etree.parse(str(self.path), parser)
        self.lxml = etree.XMLSchema(doc)
        self.types, self.unions = _type_map(doc.getroot())
        self._xs = None
        self._lock = threading.Lock()  # XMLSchema.error_log is per object: one validation at a time

    def xmlschema(self):
        with self._lock:
            if self._xs is None:
                import xmlschema

                self._xs = xmlschema.XMLSchema10(str(self.path), defuse="always")
            return self._xs

    def type_of(self, element: etree._Element | None, attribute: str | None) -> tuple[str, bool]:
        """(simple type name, is it a union) of an element or attribute, "" when unknown."""
        if element is None:
            return "", False
        name = self.types.get(_local_path(element) + (f"/@{attribute}" if attribute else ""), "")
        return name, name in self.unions


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
        target = _Target(Layer.SCHEMA, codes.XSD, form_code, f"Tờ khai {form_code}")
        return self._validate(schema, target, root, size_hint, line_offset, problems)

    def validate_envelope(
        self, root: etree._Element, *, size_hint: int = 0, line_offset: int = 0, cap: int = 100
    ) -> Problems:
        """Problems of a `Hoso` envelope: layer `envelope`, code `ENV-XSD`."""
        target = _Target(Layer.ENVELOPE, codes.ENV_XSD, None, "Hồ sơ")
        return self._validate(self._envelope, target, root, size_hint, line_offset, Problems(cap=cap))

    def validate_notice(self, root: etree._Element, *, cap: int = 100) -> Problems:
        """Problems of a `ThongBao` notice (a self-check before signing): code `XSD`, form "ThongBao"."""
        target = _Target(Layer.SCHEMA, codes.XSD, "ThongBao", "Thông báo")
        return self._validate(self._notice, target, root, 0, 0, Problems(cap=cap))

    # --- the work -------------------------------------------------------------------

    def _validate(
        self,
        schema: _Schema,
        target: _Target,
        root: etree._Element,
        size_hint: int,
        line_offset: int,
        problems: Problems,
    ) -> Problems:
        if isinstance(root, etree._ElementTree):
            root = root.getroot()
        with schema._lock:
            ok, errors, total = _lxml_validate(schema.lxml, root, problems.cap)
        if ok:
            return problems
        if self._readable(root, size_hint):
            try:
                readable, count = _xmlschema_errors(schema.xmlschema(), root, problems.cap)
            except Exception:  # never lose libxml2's verdict to a second engine's failure
                log.exception("xmlschema failed on %s; reporting libxml2's errors", schema.version)
                readable, count = [], 0
            if count:  # lxml is the judge: if xmlschema finds nothing, keep lxml's errors
                errors, total = readable, count
        for error in errors:
            problems.add(_problem(schema, target, error, line_offset))
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


# --- lxml ------------------------------------------------------------------------------


def _lxml_validate(schema: etree.XMLSchema, root: etree._Element, cap: int) -> tuple[bool, list[_Error], int]:
    """(valid, the first `cap` errors, how many errors in all), windowing long lists."""
    tree = root.getroottree()
    lists = _long_lists(root)
    if not lists:
        if schema.validate(root):
            return True, [], 0
        errors: list[_Error] = []
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


def _collect(log, tree: etree._ElementTree, cap: int, out: list[_Error], under: str | None) -> int:
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
            expected = [_local(name.strip()) for name in m.group(1).split(",")]
        value = None
        if kind == "value" and element is not None:
            value = element.get(attribute) if attribute else (element.text or "")
        out.append(
            _Error(
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


# --- xmlschema -------------------------------------------------------------------------


def _xmlschema_errors(xs, root: etree._Element, cap: int) -> tuple[list[_Error], int]:
    """Readable errors of xmlschema on the lxml tree itself (no re-parsing; never `to_dict`)."""
    from xmlschema.validators import XsdAttribute
    from xmlschema.validators.exceptions import XMLSchemaChildrenValidationError

    errors: list[_Error] = []
    total = 0
    for err in xs.iter_errors(root, use_location_hints=False):
        total += 1
        if len(errors) >= cap:
            continue
        element = err.elem if isinstance(err.elem, etree._Element) else None
        reason = err.reason or err.message
        attribute = None
        value = None
        expected: list[str] = []
        if isinstance(err, XMLSchemaChildrenValidationError):
            expected = [_local(getattr(e, "name", None) or "") for e in (err.expected or [])]
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
                attribute = _local(m.group(1))
            elif "attribute" in reason and ("not allowed" in reason or "missing" in reason):
                m = re.search(r"'([^']+)' attribute", reason) or re.search(
                    r"attribute '?([\w:{}.-]+)'?", reason
                )
                attribute = _local(m.group(1)) if m else None
            if attribute and ("not allowed" in reason or "missing" in reason or "required" in reason):
                kind = "attribute"
            elif "character data" in reason.lower():
                kind = "text"
            else:
                kind = "value"
                if element is not None:
                    value = element.get(attribute) if attribute else (element.text or "")
        errors.append(
            _Error(
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


# --- problems --------------------------------------------------------------------------


def _problem(schema: _Schema, target: _Target, error: _Error, line_offset: int) -> Problem:
    element = error.element
    xpath = _xpath(element) if element is not None else ""
    if error.attribute and element is not None and error.kind in ("value", "attribute"):
        xpath += f"/@{error.attribute}"
    tag = _local(element.tag) if element is not None else ""
    name = f"@{error.attribute}" if error.attribute and error.kind == "value" else f"<{tag}>"
    type_name, is_union = schema.type_of(element, error.attribute if error.kind == "value" else None)
    hint_vi, hint_en = TYPE_HINTS.get(type_name, ("", ""))
    value = error.value
    reason = error.reason
    expected = ", ".join(f"<{e}>" for e in error.expected)

    if error.kind == "value":
        shown = (value or "").strip()
        if shown:
            detail = f"giá trị '{_short(shown, 60)}' của {name} không hợp lệ"
        else:
            detail = f"{name} không được để trống"
        if not shown and type_name.startswith("NonEmpty"):
            hint_vi = hint_en = ""  # "may not be empty" says it all
        if hint_vi:
            detail += f"; cần {hint_vi}"
        if (is_union and error.by_xmlschema) or not reason:
            # xmlschema reports only the last member type of a union ("length has to be 0")
            reason = f"invalid value {_short(value or '', 60)!r} for {tag}"
        if hint_en:
            reason += f" (expected {hint_en})"
    elif error.kind == "unexpected":
        detail = f"phần tử <{tag}> không đúng vị trí hoặc không được phép ở đây"
        if expected:
            detail += f"; cần {expected}"
    elif error.kind == "missing":
        detail = f"thiếu phần tử bắt buộc trong <{tag}>"
        if expected:
            detail += f": {expected}"
    elif error.kind == "root":
        detail = f"phần tử gốc <{tag}> không đúng loại tài liệu"
    elif error.kind == "attribute":
        if "not allowed" in reason:
            detail = f"thuộc tính '{error.attribute}' không được phép trong <{tag}>"
        else:
            detail = f"thiếu thuộc tính bắt buộc '{error.attribute}' của <{tag}>"
    elif error.kind == "text":
        detail = f"phần tử <{tag}> không được chứa văn bản"
    else:
        detail = f"lỗi tại <{tag}>" if tag else "lỗi cấu trúc"

    line = error.line + line_offset if error.line else None
    where = f" (dòng {line})" if line else ""
    return Problem(
        layer=target.layer,
        code=target.code,
        form=target.form,
        xpath=xpath,
        line=line,
        value=_short(value, VALUE_MAX) if value is not None else None,
        message_en=_short(reason, REASON_MAX),  # validators quote the value: never 64 KB of base64
        message_vi=f"{target.what_vi} không đúng lược đồ{where}: {detail}.",
    )


# --- helpers ---------------------------------------------------------------------------


def _xpath(element: etree._Element) -> str:
    """Absolute positional XPath, as `getpath` writes it; with tb:/ds: prefixes when namespaced."""
    tree = element.getroottree()
    path = tree.getpath(element)
    if "*" not in path:
        return path
    parts = []
    node = element
    while node is not None:
        qname = etree.QName(node)
        name = (
            f"{PREFIXES.get(qname.namespace, 'ns')}:{qname.localname}" if qname.namespace else qname.localname
        )
        parent = node.getparent()
        if parent is None:
            parts.append(name)
            break
        same = [c for c in parent if c.tag == node.tag]
        parts.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/" + "/".join(reversed(parts))


def _local_path(element: etree._Element) -> str:
    """/Root/Child/... by local names, no positions: the key of the schema's type map."""
    names = []
    node = element
    while node is not None:
        names.append(_local(node.tag))
        node = node.getparent()
    return "/" + "/".join(reversed(names))


def _local(name) -> str:
    name = str(name)
    if name.startswith("{"):
        name = name.rsplit("}", 1)[-1]
    return name.rsplit(":", 1)[-1]


def _short(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _estimated_size(root: etree._Element, limit: int) -> int:
    """A rough byte size of a document, counted only until it passes `limit`."""
    size = 0
    for element in root.iter():
        size += 2 * len(str(element.tag)) + 5 + len(element.text or "") + len(element.tail or "")
        if size > limit:
            break
    return size


def _type_map(xsd_root: etree._Element) -> tuple[dict[str, str], set[str]]:
    """Local-name path of every element and attribute declared -> its simple type's local
    name (e.g. "/D02-TS/NoiDung/LaoDong/TienLuong" -> "AmountOrEmpty"), and the union types."""
    complex_types = {ct.get("name"): ct for ct in xsd_root.findall(f"{XS}complexType")}
    simple_types = {st.get("name"): st for st in xsd_root.findall(f"{XS}simpleType")}
    unions = {name for name, st in simple_types.items() if st.find(f"{XS}union") is not None}
    out: dict[str, str] = {}

    def element(decl, prefix: str, depth: int) -> None:
        if depth > 30:
            return
        path = f"{prefix}/{decl.get('name')}"
        type_name = _local(decl.get("type") or "")
        if type_name in complex_types:
            complex_type(complex_types[type_name], path, depth)
        elif type_name:
            out[path] = type_name
        elif (ct := decl.find(f"{XS}complexType")) is not None:
            complex_type(ct, path, depth)
        elif (st := decl.find(f"{XS}simpleType")) is not None:
            restriction = st.find(f"{XS}restriction")
            out[path] = _local(restriction.get("base", "")) if restriction is not None else ""

    def complex_type(ct, path: str, depth: int) -> None:
        attributes = ct.findall(f"{XS}attribute")
        content = ct.find(f"{XS}simpleContent")
        if content is not None and len(content):
            out[path] = _local(content[0].get("base") or "")
            attributes += content[0].findall(f"{XS}attribute")
        for attribute in attributes:
            out[f"{path}/@{attribute.get('name')}"] = _local(attribute.get("type") or "")
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
