"""Turning a schema error into a `Problem`: its XPath, its line, the offending value, and a
message in Vietnamese (with what a value of the declared type looks like) beside the
validator's own reason in English."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from interchange.errors import Layer, Problem
from interchange.forms.xsderror import XsdError
from interchange.forms.xsdtypes import TypeMap, local_name

NOTICE_NS = "urn:interchange:thongbao:1"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
PREFIXES = {NOTICE_NS: "tb", DSIG_NS: "ds"}

VALUE_MAX = 200  # characters of an offending value kept in a Problem
REASON_MAX = 500  # characters of a validator's reason kept in a Problem

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
class Target:
    """What is validated: how its problems are labelled."""

    layer: Layer
    code: str
    form: str | None
    what_vi: str  # "Tờ khai D02-TS", "Hồ sơ", "Thông báo"


def problem_of(types: TypeMap, target: Target, error: XsdError, line_offset: int) -> Problem:
    """The `Problem` of one error: where it is, and a Vietnamese sentence saying what is wrong."""
    element = error.element
    xpath = xpath_of(element) if element is not None else ""
    if error.attribute and element is not None and error.kind in ("value", "attribute"):
        xpath += f"/@{error.attribute}"
    tag = local_name(element.tag) if element is not None else ""
    name = f"@{error.attribute}" if error.attribute and error.kind == "value" else f"<{tag}>"
    type_name, is_union = types.type_of(element, error.attribute if error.kind == "value" else None)
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


def xpath_of(element: etree._Element) -> str:
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


def _short(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"
