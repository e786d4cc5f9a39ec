"""The one ThongBao reader (interchange.notices.reader) against the builder (interchange.notices.notice)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from interchange.clock import VN_TZ
from interchange.errors import Layer, Problem, Severity
from interchange.kinds import NOTICE_RECEIPT, NOTICE_REFUSAL, NOTICE_RESULT
from interchange.notices.notice import NS, NoticeData, build_notice
from interchange.notices.reader import NotANotice, notice_from_root, read_notice

RECEIVED = datetime(2025, 3, 3, 1, 30, 5, tzinfo=UTC)  # 08:30:05 in Vietnam


def _bytes(data: NoticeData) -> bytes:
    return etree.tostring(build_notice(data), xml_declaration=True, encoding="utf-8")


def test_round_trip_every_field():
    digest = hashlib.sha256(b"the dossier").digest()
    problems = [
        Problem(layer=Layer.RULE, code="R-D02-PA", message_vi="Sai phương án", message_en="Wrong plan",
                xpath="/D02-TS/NoiDung/LaoDong[3]/PA", line=42, form="D02-TS", value=" 9 "),
        Problem(layer=Layer.RULE, code="R-GENDER", message_vi="Chỉ cảnh báo", severity=Severity.WARNING),
    ]  # fmt: skip
    data = NoticeData(
        kind=NOTICE_RESULT, transaction_id="tx-1", received_at=RECEIVED, issued_at=RECEIVED + timedelta(hours=2),
        sha256=digest, so_ho_so="00012/2025/HN001", procedure="600", mst="0101234565", unit_code="YN0123A",
        ivan_code="00123", due_at=RECEIVED + timedelta(days=1), result="KHONG_CHAP_NHAN",
        layers={"envelope": "passed", "signature": "passed", "schema": "passed", "rule": "failed"},
        problems=problems, truncated=3,
    )  # fmt: skip
    n = read_notice(_bytes(data))
    assert (n.kind, n.transaction_id, n.so_ho_so, n.procedure) == (NOTICE_RESULT, "tx-1", "00012/2025/HN001", "600")
    assert (n.mst, n.unit_code, n.ivan_code, n.result) == ("0101234565", "YN0123A", "00123", "KHONG_CHAP_NHAN")
    assert n.received_text == "2025-03-03T08:30:05+07:00"
    assert n.received_at == RECEIVED and n.received_at.utcoffset() == timedelta(hours=7)
    assert n.issued_at == data.issued_at and n.due_at == data.due_at
    assert n.received_at.tzinfo is not None and n.received_at.astimezone(VN_TZ).hour == 8
    assert base64.b64decode(n.digest) == digest and n.digest_algorithm == "SHA-256"
    assert n.layers == data.layers and n.truncated == 3
    first, second = n.problems
    assert first.as_dict() == {**problems[0].as_dict(), "layer": "rule", "severity": "error"}
    assert (first.layer, first.code, first.severity, first.form, first.xpath, first.line, first.value) == (
        "rule", "R-D02-PA", "error", "D02-TS", "/D02-TS/NoiDung/LaoDong[3]/PA", 42, " 9 "
    )  # GiaTri kept exactly as written
    assert (first.message_vi, first.message_en) == ("Sai phương án", "Wrong plan")
    assert (second.severity, second.xpath, second.line, second.form, second.value, second.message_en) == (
        "warning", "/", None, None, None, None
    )
    assert second.as_dict()["message_en"] == ""


def test_missing_optional_fields():
    n = read_notice(_bytes(NoticeData(kind=NOTICE_REFUSAL, transaction_id="tx-2", received_at=RECEIVED, issued_at=RECEIVED)))
    assert (n.kind, n.transaction_id) == (NOTICE_REFUSAL, "tx-2")
    assert n.so_ho_so is n.procedure is n.mst is n.unit_code is n.ivan_code is n.result is None
    assert n.due_text is None and n.due_at is None
    assert n.digest is None and n.digest_algorithm is None
    assert n.problems == () and n.layers == {} and n.truncated == 0


def test_receipt_from_a_parsed_tree():
    data = NoticeData(kind=NOTICE_RECEIPT, transaction_id="tx-3", received_at=RECEIVED, issued_at=RECEIVED,
                      sha256=b"\0" * 32, due_at=RECEIVED + timedelta(hours=8))  # fmt: skip
    n = notice_from_root(etree.fromstring(_bytes(data)))
    assert n.kind == NOTICE_RECEIPT and n.due_at == data.due_at


def test_odd_values_read_leniently():
    xml = f"""<ThongBao xmlns="{NS}"><LoaiThongBao> KET_QUA </LoaiThongBao><MaGiaoDich>  </MaGiaoDich>
      <HanTraKetQua>tomorrow</HanTraKetQua><ThoiGianNhan>2025-03-03T08:30:05</ThoiGianNhan>
      <DanhSachLoi><Loi><Ma>X</Ma><Dong>²</Dong></Loi><SoLoiBiBoQua>many</SoLoiBiBoQua></DanhSachLoi>
    </ThongBao>""".encode()
    n = read_notice(xml)
    assert n.kind == NOTICE_RESULT and n.transaction_id is None  # stripped; whitespace only is absent
    assert n.due_text == "tomorrow" and n.due_at is None  # kept as text; not a time
    assert n.received_at == datetime(2025, 3, 3, 8, 30, 5)  # naive: the caller decides
    assert n.problems[0].line is None and n.problems[0].message_vi is None and n.truncated == 0


@pytest.mark.parametrize("xml, why", [
    (b"<Hoso><LoaiThongBao>TIEP_NHAN</LoaiThongBao></Hoso>", "root element Hoso"),
    (b'<ThongBao xmlns="urn:other"/>', "root element {urn:other}ThongBao"),
    (b"<ThongBao", "not readable XML"),
    (b'<!DOCTYPE x [<!ENTITY e "e">]><ThongBao/>', "not readable XML"),
])  # fmt: skip
def test_foreign_documents_refused_clearly(xml, why):
    with pytest.raises(NotANotice, match="not a notice|not readable") as caught:
        read_notice(xml)
    assert why in str(caught.value)
    if why == "not readable XML":
        assert caught.value.problems and caught.value.problems[0].code.startswith("XML-")
