"""Hardened XML parsing: no DTD, no entities, no network; limits on the shape of the tree.

The body-size limit (checked by the HTTP layer before reading) bounds the parse itself;
DTDs are refused by a byte scan before libxml2 sees the input, so entity expansion
attacks never start. Comments are dropped while parsing: canonical XML without comments
is what signatures cover, so the tree we read is exactly the signed content (a comment
injected into a value cannot change what we read).

Shape limits (`XmlLimits`): depth, elements, attributes and namespace declarations per element,
name length, attribute value length and text node length. libxml2 parses all of these in
linear time, but later stages do not (xmlschema's errors cost O(attributes) each, one per bad
attribute), so they are refused here, before any stage runs. Each check first asks the bytes
(a count or a regular expression anchored on a literal, at C speed, that can only over-report
because a character is at least one byte) and walks the tree only when the bytes say it may be
needed: a real 50,000-row form pays a few byte scans, not a tree walk per limit. Inputs that are
not ASCII-compatible (UTF-16/32: NUL bytes) always get the tree checks.
"""

from __future__ import annotations

import binascii
import functools
import io
import re
import threading
from base64 import b64decode
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lxml import etree

from interchange import codes
from interchange.errors import Layer, Problem, Refusal
from interchange.spool import Spooled, head_of

_local = threading.local()


@dataclass(frozen=True)
class XmlLimits:
    max_depth: int = 64
    max_elements: int = 5_000_000
    max_attributes: int = 256  # attributes of one element (namespace declarations not counted)
    max_namespaces: int = 64  # namespace declarations on one element
    max_name_length: int = 1000  # characters of an element or attribute name, prefix included
    max_attribute_length: int = 65_536  # characters of one attribute value
    max_text_length: int = 10 * 1024 * 1024  # characters of one text node, but those of `long_text`
    long_text: tuple[str, ...] = ()  # elements whose text is exempt (the envelope's base64 NoiDungFile)

    @classmethod
    def of(cls, limits, **kw) -> XmlLimits:
        """From a `[limits]` section (`config.LimitsConfig`)."""
        names = ("max_depth", "max_elements", "max_attributes", "max_namespaces", "max_name_length",
                 "max_attribute_length", "max_text_length")
        return cls(**{n: getattr(limits, n) for n in names if hasattr(limits, n)}, **kw)


# The hardened parse's options but entities (each parse says how it treats them): no network, no
# DTD loaded, comments dropped, no ID index; huge_tree because a form's base64 content is one large
# text node (our own limits apply instead). The tree parse and every streaming pass use these.
PARSE_OPTIONS = {"no_network": True, "load_dtd": False, "huge_tree": True, "remove_comments": True,
                 "collect_ids": False}


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, dtd_validation=False, **PARSE_OPTIONS)
        _local.parser = parser
    return parser


def _refuse(layer: Layer, code: str, vi: str, en: str, form: str | None, line: int | None = None) -> Refusal:
    return Refusal(Problem(layer=layer, code=code, message_vi=vi, message_en=en, form=form, line=line, xpath="/"))


def markup_bang(data: bytes) -> bool:
    """Whether `data` holds "<!" (a DOCTYPE, an ENTITY, a CDATA section or a comment begins so).
    A one-byte search first: "!" is rare in forms and found at memchr speed, where the two-byte
    search took 42 us on a 45 KiB dossier and 73 ms on a 78 MiB form."""
    return b"!" in data and b"<!" in data


def parse_xml(
    data: bytes, limits: XmlLimits, *, layer: Layer = Layer.ENVELOPE, form: str | None = None
) -> etree._ElementTree:
    """Parse bytes into a tree, or raise Refusal with a problem that says what and where."""
    if (declared := declared_encoding(data)) is not None and not accepted_encoding(declared):
        said = (f"declares the encoding {declared!r}" if declared
                else f"has an XML declaration that does not end in its first {DECLARATION_HEAD} bytes")
        said_vi = (f"khai báo bảng mã {declared!r}" if declared
                   else f"có phần khai báo XML không kết thúc trong {DECLARATION_HEAD} byte đầu")
        raise _refuse(
            layer,
            codes.XML_ENCODING,
            f"Tệp XML {said_vi}, không được chấp nhận; hãy dùng UTF-8.",
            f"The XML {said}, which is not accepted: use UTF-8 (UTF-16, ISO-8859-n and windows-125n are read too).",
            form,
            1,
        )
    markers = [b"<!DOCTYPE", b"<!ENTITY"] if markup_bang(data) else []  # one scan rules out both, usually
    if b"\x00" in data:  # a memchr: UTF-16 text has NUL bytes
        markers.append(b"<\x00!\x00D\x00O\x00C\x00T\x00Y\x00P\x00E")
    for marker in markers:
        if marker in data:
            raise _refuse(
                layer,
                codes.XML_DTD,
                "Tệp XML không được chứa khai báo DTD hoặc thực thể (DOCTYPE/ENTITY).",
                "XML must not contain a DTD or entity declarations (DOCTYPE/ENTITY).",
                form,
            )
    # Before any tree is built (about 35 bytes of memory per byte of a dense input): every
    # element starts with "<" not followed by "/", "!" or "?", so this bounds the element count
    # from above at C speed (UTF-16/32 inputs only count higher, as "</" is spelt otherwise there).
    start_tags = 0
    if len(data) // 4 > limits.max_elements:  # "<a/>" is the shortest element: smaller inputs cannot
        start_tags = data.count(b"<") - data.count(b"</") - data.count(b"<!") - data.count(b"<?")
    if start_tags > limits.max_elements:
        raise _refuse(
            layer,
            codes.XML_TOO_MANY_ELEMENTS,
            f"Tệp XML có khoảng {start_tags} phần tử, vượt giới hạn {limits.max_elements}.",
            f"XML has about {start_tags} elements, over the limit of {limits.max_elements}.",
            form,
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        raise _refuse(
            layer,
            codes.XML_MALFORMED,
            f"Tệp XML không đúng cú pháp: {exc.msg}",
            f"Malformed XML: {exc.msg}",
            form,
            line,
        ) from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise _refuse(layer, codes.XML_DTD, "Tệp XML không được chứa DTD.", "XML must not contain a DTD.", form)
    try:
        # an input of at most 4 * max_elements bytes cannot hold more elements (see above)
        count = int(root.xpath("count(//*)")) if len(data) // 4 > limits.max_elements else 0
        too_deep = root.xpath("boolean(/" + "*/" * limits.max_depth + "*)")
    except etree.XPathError:  # libxml2's node-set ceiling (10 million): more than any limit here
        count, too_deep = limits.max_elements + 1, False
    if count > limits.max_elements:
        raise _refuse(
            layer,
            codes.XML_TOO_MANY_ELEMENTS,
            f"Tệp XML có {count} phần tử, vượt giới hạn {limits.max_elements}.",
            f"XML has {count} elements, over the limit of {limits.max_elements}.",
            form,
        )
    if too_deep:
        raise _refuse(
            layer,
            codes.XML_TOO_DEEP,
            f"Tệp XML lồng quá {limits.max_depth} cấp.",
            f"XML nests deeper than {limits.max_depth} levels.",
            form,
        )
    _check_shape(data, root, limits, layer, form)
    return tree


# --- shape limits (see the module docstring) ---------------------------------------------------


def _long_run(limit: int) -> int:
    return min(limit, 10_000_000) + 1  # re's repeat counts are bounded; a bigger limit is no limit here


@functools.lru_cache(maxsize=8)
def _shape_patterns(name_limit: int, value_limit: int, text_limit: int) -> tuple[re.Pattern, ...]:
    name, value, text = _long_run(name_limit), _long_run(value_limit), _long_run(text_limit)
    return (
        # an element name is a run after "<"; an attribute name a run ending at "=" (white space
        # before "=" is legal but rare: then the tree decides)
        re.compile(rb"<[^\s<>/!?]{%d}" % name),
        re.compile(rb"=(?<=[^\s<>=\"'/]{%d}=)" % name),
        re.compile(rb"=(?<=[ \t\r\n]=)"),
        re.compile(rb"=[ \t\r\n]*(?:\"[^\"]{%d}|'[^']{%d})" % (value, value)),
        re.compile(rb">[^<]{%d}" % text),
    )


def long_name_in_canonical(data: bytes, limits: XmlLimits) -> bool:
    """Does canonical XML (C14N: no white space around "=", "<" only in markup) hold an element
    or attribute name, prefix included, longer than the limit? As `ShapeScan` looks for one
    (a long run of name characters ending at "=" in a text or a value counts too)."""
    element, attribute = _shape_patterns(limits.max_name_length, limits.max_attribute_length, limits.max_text_length)[:2]
    return bool(element.search(data) or attribute.search(data))


def shape_gates(data: bytes, limits: XmlLimits) -> dict[str, bool]:
    """Which tree checks the bytes cannot rule out."""
    scan = ShapeScan(limits)
    scan.feed(data)
    return scan.gates()


class ShapeScan:
    """`shape_gates` (with `stream`, what a streaming pass checks besides, DOCTYPE or ENTITY and
    start tags, and not the namespace declarations: that pass counts them) over bytes given as
    consecutive windows that each begin with "<" (but the first): every pattern here is a tag, a text between tags or a byte, none holds a "<" but at its start,
    so each lies inside one window and the sums and searches equal those over the whole bytes
    (`windows` cuts a file so)."""

    def __init__(self, limits: XmlLimits, *, stream: bool = False, names: bool = True):
        self.limits = limits
        self.stream = stream
        self.names = names  # look for long names (False: the caller does, its own way)
        self.size = 0
        # A streaming pass counts namespace declarations itself, element by element: no "xmlns" count.
        self.counts = dict.fromkeys((b"=", b"<", b"</") if stream else (b"=", b"xmlns"), 0)
        # "nul": UTF-16/32; "foreign": with `stream`, markup not spelt in ASCII bytes (`ascii_markup`;
        # a tree's parse refuses those encodings first, `parse_xml`): the byte patterns do not apply
        self.flags = dict.fromkeys(("nul", "foreign", "dtd", "names", "values", "text", "cdata"), False)
        self._patterns = _shape_patterns(limits.max_name_length, limits.max_attribute_length, limits.max_text_length)

    def feed(self, data: bytes) -> None:
        if self.stream and self.size == 0:  # the first window holds the XML declaration whole
            self.flags["foreign"] = not ascii_markup(data)
        self.size += len(data)
        for needle in self.counts:
            self.counts[needle] += data.count(needle)
        flags, (element, attribute, blank, value, text) = self.flags, self._patterns
        flags["nul"] = flags["nul"] or b"\x00" in data
        if self.names:
            flags["names"] = flags["names"] or bool(element.search(data) or attribute.search(data) or blank.search(data))
        flags["values"] = flags["values"] or bool(value.search(data))
        if not self.stream and len(data) <= self.limits.max_text_length:
            return  # no text can be too long, and no DOCTYPE is looked for
        # DOCTYPE, ENTITY and CDATA all start "<!": one search rules the three out (forms rarely hold any)
        if markup_bang(data):
            flags["dtd"] = flags["dtd"] or (self.stream and (b"<!DOCTYPE" in data or b"<!ENTITY" in data))
            flags["cdata"] = flags["cdata"] or b"<![CDATA[" in data
        flags["text"] = flags["text"] or (len(data) > self.limits.max_text_length and bool(text.search(data)))

    @property
    def start_tags(self) -> int:
        """At least the start tags (comments, PIs and CDATA counted too: rare, and two-byte counts
        over a large form cost a tenth of a second each)."""
        return self.counts[b"<"] - self.counts[b"</"]

    @property
    def readable(self) -> bool:
        """Whether the bytes spell their markup as the patterns here look for it."""
        return not (self.flags["nul"] or self.flags["foreign"])

    def gates(self) -> dict[str, bool]:
        limits, flags = self.limits, self.flags
        gates = {
            "attributes": self.counts[b"="] > limits.max_attributes,
            "names": flags["names"],
            "values": flags["values"],
            "text": self.size > limits.max_text_length and (flags["cdata"] or flags["text"]),
        }
        if not self.stream:
            gates["namespaces"] = self.counts[b"xmlns"] > limits.max_namespaces
        if not self.readable:  # not ASCII-compatible: the byte patterns do not apply
            return dict.fromkeys(gates, True)
        return gates


_ENCODING_PSEUDO_ATTRIBUTE = re.compile(rb"\sencoding\s*=\s*[\"']([^\"']*)[\"']")
DECLARATION_HEAD = 1024  # bytes in which an XML declaration must end (it is about 60)
# Encodings in which every ASCII byte is that character, as the byte gates assume: UTF-8, ASCII
# and the ISO-8859 and Windows code pages (Vietnamese: windows-1258). UTF-16 and UTF-32 spell
# markup with NUL bytes, which the gates tell apart (then the tree checks all run).
_ASCII_SUPERSETS = re.compile(rb"UTF8|(US)?ASCII|ISO8859\d{1,2}|LATIN\d|(WINDOWS|CP)125\d")
_WIDE = re.compile(rb"(UTF|UCS)(16|32|2|4)(LE|BE)?")


def _start(head: bytes) -> bytes:
    """A document's first `DECLARATION_HEAD` bytes after a UTF-8 BOM and white space."""
    return head[:DECLARATION_HEAD].removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")


def declared_encoding(head: bytes) -> str | None:
    """The encoding an 8-bit document's XML declaration names (after a UTF-8 BOM), if any, read
    from its first `DECLARATION_HEAD` bytes: a declaration that does not end there (libxml2 reads
    any white space in it) reads as naming "" (no encoding by that name is accepted)."""
    head = _start(head)
    if not re.match(rb"<\?xml[ \t\r\n]", head):
        return None
    end = head.find(b"?>")
    if end < 0:
        return ""
    declared = _ENCODING_PSEUDO_ATTRIBUTE.search(head, 0, end)
    return None if declared is None else declared[1].decode("ascii", "replace")


def _normal(name: str) -> bytes:
    return name.upper().replace("-", "").replace("_", "").encode("ascii", "replace")


def accepted_encoding(name: str) -> bool:
    """An encoding libxml2 may read a document in here: every other one (UTF-7, in which
    "+ADw-!DOCTYPE" is "<!DOCTYPE"; JAVA, in which "\\u003c" is "<"; EBCDIC ...) spells markup in
    bytes that the byte gates do not look for, and is refused (XML-ENCODING)."""
    return bool(_ASCII_SUPERSETS.fullmatch(_normal(name)) or _WIDE.fullmatch(_normal(name)))


def ascii_markup(head: bytes) -> bool:
    """Whether a document starting with `head` spells its markup in ASCII bytes, as the byte
    gates look for it: it starts with "<" (after a UTF-8 BOM) and declares no encoding but UTF-8,
    ASCII or an ISO-8859 or Windows code page (not UTF-7, EBCDIC, UTF-16 ...)."""
    if not _start(head).startswith(b"<"):
        return False
    declared = declared_encoding(head)
    return declared is None or bool(_ASCII_SUPERSETS.fullmatch(_normal(declared)))


def windows(chunks: Iterable[bytes], most: int) -> Iterator[bytes]:
    """The bytes of `chunks` again, cut just before a "<" (for `ShapeScan`); a stretch without
    any "<" longer than `most` bytes raises ValueError (a text too long to hold: let the tree judge)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"<")
        if cut <= 0:
            if len(data) > most:
                raise ValueError("a stretch without markup longer than the window")
            carry = data
            continue
        yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


def _check_shape(data: bytes, root: etree._Element, limits: XmlLimits, layer: Layer, form: str | None) -> None:
    gates = shape_gates(data, limits)
    if gates["attributes"]:
        found = root.xpath(f"(//*[count(@*) > {limits.max_attributes}])[1]")
        if found:
            raise _refuse_at(found[0], layer, codes.XML_TOO_MANY_ATTRIBUTES,
                             f"Phần tử có {len(found[0].attrib)} thuộc tính, vượt giới hạn {limits.max_attributes}.",
                             f"An element has {len(found[0].attrib)} attributes, over the limit of "
                             f"{limits.max_attributes}.", form)
    if gates["namespaces"]:
        _check_namespaces(data, limits, layer, form)
    if gates["names"]:
        n = limits.max_name_length
        found = root.xpath(f"(//*[string-length(name()) > {n}] | //@*[string-length(name()) > {n}])[1]")
        if found:
            element = found[0] if isinstance(found[0], etree._Element) else found[0].getparent()
            raise _refuse_at(element, layer, codes.XML_NAME_TOO_LONG,
                             f"Tên phần tử hoặc thuộc tính dài quá {n} ký tự.",
                             f"An element or attribute name is longer than {n} characters.", form)
    if gates["values"]:
        n = limits.max_attribute_length
        found = root.xpath(f"(//@*[string-length(.) > {n}])[1]")
        if found:
            raise _refuse_at(found[0].getparent(), layer, codes.XML_ATTRIBUTE_TOO_LONG,
                             f"Giá trị thuộc tính dài quá {n} ký tự.",
                             f"An attribute value is longer than {n} characters.", form)
    if gates["text"]:
        n = limits.max_text_length
        exempt = "".join(f"[not(parent::{tag})]" for tag in limits.long_text)
        found = root.xpath(f"(//text(){exempt}[string-length(.) > {n}])[1]")
        if found:
            raise _refuse_at(found[0].getparent(), layer, codes.XML_TEXT_TOO_LONG,
                             f"Một đoạn văn bản dài quá {n} ký tự.", f"A text node is longer than {n} characters.",
                             form)


def _check_namespaces(data: bytes, limits: XmlLimits, layer: Layer, form: str | None) -> None:
    """Namespace declarations of each element, exactly: libxml2 reports an element's own
    declarations as start-ns events just before its start event (a second parse, only for
    documents that hold more declarations in all than one element may)."""
    declared = 0
    events = etree.iterparse(io.BytesIO(data), events=("start-ns", "start"), resolve_entities=False,
                             no_network=True, load_dtd=False, huge_tree=True, remove_comments=True)
    for event, item in events:
        if event == "start-ns":
            declared += 1
            continue
        if declared > limits.max_namespaces:
            raise _refuse_at(item, layer, codes.XML_TOO_MANY_NAMESPACES,
                             f"Phần tử khai báo {declared} không gian tên, vượt giới hạn {limits.max_namespaces}.",
                             f"An element declares {declared} namespaces, over the limit of "
                             f"{limits.max_namespaces}.", form)
        declared = 0
        if item.getparent() is not None and item.getprevious() is not None:
            item.getprevious().clear()  # keep the second tree small


def _refuse_at(element: etree._Element, layer: Layer, code: str, vi: str, en: str, form: str | None) -> Refusal:
    """A refusal at an element: its line, and a path of its ancestors (names cut short)."""
    steps = []
    node = element
    while node is not None and len(steps) < 64:
        steps.append(etree.QName(node).localname[:100] if isinstance(node.tag, str) else "?")
        node = node.getparent()
    xpath = "/" + "/".join(reversed(steps))
    return Refusal(Problem(layer=layer, code=code, message_vi=vi, message_en=en, form=form,
                           line=element.sourceline, xpath=xpath))


# --- base64 content (SPEC §3): XML white space may be dropped, nothing else ----------------------

_XML_SPACE = {ord(c): None for c in " \t\r\n"}


def without_xml_space(text: str) -> str:
    """`text` without XML white space (the same object when it has none: base64 of a large form
    is usually one line, and a copy of it costs its size again)."""
    return text.translate(_XML_SPACE) if any(c in text for c in " \t\r\n") else text


def strict_base64(text: str | None) -> bytes | None:
    """The bytes of base64 text that holds only the alphabet, at most two "=" at the end and XML
    white space; None for anything else (`validate=True` refuses every other character)."""
    compact = without_xml_space(text or "")
    if not compact:
        return None
    try:
        return b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def root_name(data: bytes | Spooled) -> str | None:
    """The local name of the document's root element, read from its first start tag only (no
    tree built, no DTD or entity read); None when the bytes do not start like XML. A name to
    choose a reader by, not a check: the hardened parse still judges the whole document."""
    if any(marker in head_of(data, 65536) for marker in (b"<!DOCTYPE", b"<!ENTITY")):
        return None
    source = open(data.path, "rb") if isinstance(data, Spooled) else io.BytesIO(data)  # noqa: SIM115
    try:
        with source:
            for _event, element in etree.iterparse(
                source, events=("start",), resolve_entities=False, no_network=True, load_dtd=False,
                huge_tree=True,
            ):  # fmt: skip
                return etree.QName(element).localname
    except (etree.XMLSyntaxError, ValueError):
        return None
    return None
