"""The e-HI card answer as a small XML document (docs/hi-card.md), to be signed by the server's
notice key the way notices are (interchange.notices.notice.NoticeSigner.sign_root, SPEC §4
profile). Pure: builds the unsigned element only.

```
TheBHYT                  xmlns="urn:interchange:thebhyt:1"
  MaTraCuu               the ID as asked (personal ID or SI code)
  SoDinhDanh?, MaSoBHXH?, HoTen, NgaySinh (YYYY-MM-DD), GioiTinh? (1 male, 0 female)
  TrangThai              valid | not_valid | suspended
  GiaTriTu?, GiaTriDen?  YYYY-MM-DD; GiaTriDen absent and KhongThoiHan true: open
  KhongThoiHan           true | false
  MucHuong?              percent, attribute Ma (MucHuong code 1-5)
  NoiDangKyKCBBD?        MaTinh?, MaBenhVien
  ThoiDiemDu5Nam?        YYYY-MM-DD
  DonViDong?             MaSoThue?, MaDonVi?, TenDonVi?, NguonDong (unit | si_fund)
  NgayTraCuu             the as-of day, YYYY-MM-DD
  ThoiGianTraLoi         when the answer was made, ISO 8601 with +07:00
  CoSoKCB?               the asking facility's code
  ds:Signature
```
"""

from __future__ import annotations

from datetime import date, datetime

from lxml import etree

from interchange.clock import vn_iso
from interchange.records.card import Card

NS = "urn:interchange:thebhyt:1"
ROOT = "TheBHYT"


def card_element(card: Card, *, asked: str, answered_at: datetime, facility: str | None) -> etree._Element:
    root = etree.Element(f"{{{NS}}}{ROOT}", nsmap={None: NS})

    def add(parent: etree._Element, name: str, value: object | None) -> etree._Element | None:
        if value is None:
            return None
        el = etree.SubElement(parent, f"{{{NS}}}{name}")
        el.text = value.isoformat() if isinstance(value, date) else str(value)
        return el

    i = card.identity
    add(root, "MaTraCuu", asked)
    add(root, "SoDinhDanh", i.personal_id)
    add(root, "MaSoBHXH", i.si_code)
    add(root, "HoTen", i.name)
    add(root, "NgaySinh", i.birth_date)
    add(root, "GioiTinh", i.gender)
    add(root, "TrangThai", card.status)
    add(root, "GiaTriTu", card.valid_from)
    add(root, "GiaTriDen", card.valid_to)
    add(root, "KhongThoiHan", "true" if card.open else "false")
    level = add(root, "MucHuong", card.percent)
    if level is not None:
        level.set("Ma", card.level or "")
    if card.facility is not None:
        place = etree.SubElement(root, f"{{{NS}}}NoiDangKyKCBBD")
        add(place, "MaTinh", card.facility.province)
        add(place, "MaBenhVien", card.facility.code)
    add(root, "ThoiDiemDu5Nam", card.five_years_at)
    if card.unit is not None:
        unit = etree.SubElement(root, f"{{{NS}}}DonViDong")
        add(unit, "MaSoThue", card.unit.mst)
        add(unit, "MaDonVi", card.unit.code)
        add(unit, "TenDonVi", card.unit.name)
        add(unit, "NguonDong", card.paid_by)
    add(root, "NgayTraCuu", card.as_of)
    add(root, "ThoiGianTraLoi", vn_iso(answered_at))
    add(root, "CoSoKCB", facility)
    return root
