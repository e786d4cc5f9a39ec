"""Realistic sample documents: the forms and the envelope as payroll and I-VAN software write them.

Used by the tests, the benchmark and the demo (`make serve`). Everything here is made up
but plausible: Vietnamese names with diacritics, 12-digit personal IDs whose digits agree
with the birth date and gender, 10-digit social-insurance codes, tax codes with a valid
check digit, salaries above the regional minimum.

Conventions of real files that the samples copy (SPEC §2):
- UTF-8 BOM, then `<?xml version="1.0" encoding="utf-8"?>`;
- form roots declare `xmlns:xsi` and `xmlns:xsd` (as .NET's XmlSerializer writes them),
  no default namespace;
- every field is present, in the order of SPEC §2; optional values that are missing are
  empty elements (`<DenThang />`);
- each form ends with an empty `<Cky />` and the envelope with an empty `<CKy_Dvi />`,
  where the signature is inserted later. Nothing here is signed.
Line ends are LF, two-space indentation.

Every generator is deterministic for a given seed (`random.Random(seed)`), and rows vary
by seed, so two dossiers built with different seeds have different bytes. `d02ts` builds
its text with string joins so that 50,000 rows take well under a few seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from dataclasses import dataclass
from xml.sax.saxutils import escape

from interchange.clock import vn_now
from interchange.devkit.people import PLACES, POSITIONS, STREETS, new_person
from interchange.forms.fields import D02_FIELDS, TK1_FIELDS

# The tax-code checks live in interchange.identifiers; tests and the demo call them from here too.
from interchange.identifiers import mst_check_digit, mst_valid  # noqa: F401

BOM = "\ufeff"
DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'
XMLNS = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'

# --- tax codes (MST) -------------------------------------------------------------------


def make_mst(first9: str) -> str:
    check = mst_check_digit(first9)
    if check is None:
        raise ValueError(f"no valid tax code starts with {first9}")
    return f"{first9}{check}"


# --- the employer ----------------------------------------------------------------------


@dataclass
class Unit:
    """An employer (đơn vị). The default tax code 0101234565 has a valid check digit
    (0101234568, which looks similar, does not: 010123456 gives check 5)."""

    mst: str = "0101234565"
    code: str = "TZH490L"  # MaSoBHXH of the unit
    name: str = "Công ty TNHH Mẫu Việt"
    office: str = "00101"  # CoQuanQuanLy: the SI office that manages the unit
    signer: str = "Nguyễn Văn An"
    phone: str = "0912345678"


# A few more units for tests that need more than one employer (all with valid check digits).
UNIT_HANOI = Unit()
UNIT_HCM = Unit(
    mst="0312345673",
    code="YN0123A",
    name="Công ty Cổ phần Dệt may Sài Gòn Xanh",
    office="07901",
    signer="Trần Thị Bích Ngọc",
    phone="02838221234",
)
UNIT_DANANG = Unit(
    mst="0401234566",
    code="DA0456B",
    name="Công ty TNHH Phần mềm Sông Hàn",
    office="04801",
    signer="Lê Quang Huy",
    phone="02363815678",
)

def _d(day: dt.date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year}"


def _month_start(period: str) -> dt.date:
    month, year = period.split("/")
    return dt.date(int(year), int(month), 1)


def _text(value: str) -> str:
    return escape(value)


def _el(name: str, value: str, indent: str) -> str:
    return f"{indent}<{name}>{value}</{name}>" if value != "" else f"{indent}<{name} />"


def _doc(body_lines: list[str]) -> bytes:
    return (BOM + DECLARATION + "\n" + "\n".join(body_lines) + "\n").encode("utf-8")


# --- D02-TS ----------------------------------------------------------------------------



def _e(name: str, value: str) -> str:
    """One element on one line of a D02-TS row (values here need no escaping)."""
    return f"      <{name}>{value}</{name}>" if value else f"      <{name} />"


def _serials(offsets: tuple[int, int], n: int) -> tuple[int, int]:
    """The n-th distinct (personal ID serial, SI code serial) of a form: 7919 is prime to 10**6
    and 10**8, so a million rows never repeat one."""
    return (offsets[0] + n * 7919) % 1_000_000, (offsets[1] + n * 7919) % 100_000_000


def _d02_row(
    rng: random.Random, stt: int, period_start: dt.date, tu_thang: str, workplace: str, offsets: tuple[int, int]
) -> str:
    # Built as one f-string per row: d02ts(50000) is used by a benchmark.
    p = new_person(rng, si_code=rng.random() < 0.8, serials=_serials(offsets, stt))
    salary = rng.randrange(5_500, 40_000) * 1000
    allowance = rng.choice((0, 0, 0, 500_000, 1_000_000, 2_000_000))
    extra = rng.choice((300_000, 500_000)) if rng.random() < 0.2 else 0
    start = period_start - dt.timedelta(days=rng.randint(0, 20))
    start = start.replace(day=1) if rng.random() < 0.5 else start
    fixed_term = rng.random() < 0.6
    manager = allowance > 0
    since = _d(start)
    position = "Trưởng phòng" if manager else rng.choice(POSITIONS)
    return (
        "    <LaoDong>\n"
        f"      <STT>{stt}</STT>\n"
        f"      <HoTen>{p.name}</HoTen>\n"
        f"{_e('MasoBHXH', p.si_code)}\n"
        f"      <ChucVu>{position}</ChucVu>\n"
        f"      <NoiLamViec>{workplace}</NoiLamViec>\n"
        f"      <TienLuong>{salary}</TienLuong>\n"
        f"{_e('PhuCapCV', str(allowance) if allowance else '')}\n"
        "      <PhuCapTNVK />\n"
        "      <PhuCapTNNghe />\n"
        "      <PhuCapLuong />\n"
        f"{_e('PhuCapBosung', str(extra) if extra else '')}\n"
        f"      <TuThang>{tu_thang}</TuThang>\n"
        "      <DenThang />\n"
        "      <Ghichu />\n"
        "      <PA>TM</PA>\n"
        "      <TyleDong>32.0</TyleDong>\n"
        "      <TinhLai>0</TinhLai>\n"
        f"      <DaCoSo>{1 if p.si_code else 0}</DaCoSo>\n"
        "      <MucHuong />\n"
        "      <MaPhongBan />\n"
        "      <MavungSS />\n"
        "      <MavungLTT>01</MavungLTT>\n"
        "      <ID />\n"
        "      <Loai>1</Loai>\n"
        "      <CoGiamChet />\n"
        "      <NgayChet />\n"
        f"      <NgaySinh>{_d(p.born)}</NgaySinh>\n"
        f"      <GioiTinh>{1 if p.male else 0}</GioiTinh>\n"
        f"      <CMND>{p.cccd}</CMND>\n"
        f"{_e('Vtvl_nql_tungay', since if manager else '')}\n"
        "      <Vtvl_nql_denngay />\n"
        f"{_e('Vtvl_cmktbc_tungay', '' if manager else since)}\n"
        "      <Vtvl_cmktbc_denngay />\n"
        "      <Vtvl_cmktbt_tungay />\n"
        "      <Vtvl_cmktbt_denngay />\n"
        "      <Vtvl_khac_tungay />\n"
        "      <Vtvl_khac_denngay />\n"
        "      <Nndh_tungay />\n"
        "      <Nndh_denngay />\n"
        f"      <Hdld_tungay>{since}</Hdld_tungay>\n"
        f"{_e('Hdld_xdth_tungay', since if fixed_term else '')}\n"
        f"{_e('Hdld_xdth_denngay', _d(start + dt.timedelta(days=364)) if fixed_term else '')}\n"
        "      <Hdld_khac_tungay />\n"
        "      <Hdld_khac_denngay />\n"
        "    </LaoDong>"
    )


def d02ts(rows: int = 20, *, seed: int = 0, period: str = "11/2026", unit: Unit | None = None) -> bytes:
    """A D02-TS (procedure 600): `rows` employees joining in `period` (PA TM, 32.0%)."""
    unit = unit or Unit()
    rng = random.Random(f"D02-TS/{seed}")
    period_start = _month_start(period)
    workplace = _text(unit.name)
    tu_thang = f"{period_start.month:02d}/{period_start.year}"
    ids = random.Random(f"D02-TS/{seed}/ids")
    offsets = (ids.randrange(1_000_000), ids.randrange(100_000_000))
    body = "\n".join(_d02_row(rng, i, period_start, tu_thang, workplace, offsets) for i in range(1, rows + 1))
    lines = [
        f"<D02-TS {XMLNS}>",
        "  <ThongTinKhac>",
        "    <SoToBiaSoBHXH>0</SoToBiaSoBHXH>",
        "    <SoToRoiSoBHXH>0</SoToRoiSoBHXH>",
        f"    <SoTheBHYT>{rows}</SoTheBHYT>",
        "  </ThongTinKhac>",
    ]
    lines += ["  <NoiDung>", body, "  </NoiDung>"] if rows else ["  <NoiDung />"]
    lines += ["  <Cky />", "</D02-TS>"]
    return _doc(lines)


def d02ts_of(rows: list[dict[str, str]]) -> bytes:
    """A D02-TS with exactly these rows: each a {field: value} of D02_FIELDS (others empty, STT
    numbered when absent)."""
    people = _given_rows("D02-TS", D02_FIELDS, rows)
    lines = [
        f"<D02-TS {XMLNS}>",
        "  <ThongTinKhac>",
        "    <SoToBiaSoBHXH>0</SoToBiaSoBHXH>",
        "    <SoToRoiSoBHXH>0</SoToRoiSoBHXH>",
        f"    <SoTheBHYT>{len(rows)}</SoTheBHYT>",
        "  </ThongTinKhac>",
        "  <NoiDung>" if rows else "  <NoiDung />",
    ]
    lines += people
    lines += ["  </NoiDung>"] if rows else []
    lines += ["  <Cky />", "</D02-TS>"]
    return _doc(lines)


# --- TK1-TS ----------------------------------------------------------------------------



def tk1ts(people: int = 1, *, seed: int = 0) -> bytes:
    """A TK1-TS: `people` participants registering (no SI code yet for most of them).

    District codes (Mahuyen_*) are empty: Vietnam abolished the district level in July 2025.
    """
    rng = random.Random(f"TK1-TS/{seed}")
    out = [f"<TK1-TS {XMLNS}>", "  <NoiDung>"] if people else [f"<TK1-TS {XMLNS}>", "  <NoiDung />"]
    for i in range(1, people + 1):
        p = new_person(rng, si_code=rng.random() < 0.3)
        home = rng.choice(PLACES)
        v = {
            "STT": str(i),
            "HoTen": p.name,
            "NgaySinh": _d(p.born),
            "GioiTinh": "1" if p.male else "0",
            "QuocTich": "VN",
            "DanToc": "01",
            "Matinh_KS": p.place[1],
            "Mahuyen_KS": "",
            "Maxa_KS": p.place[2],
            "Diachi_NN": f"Số {rng.randint(1, 200)} phố {rng.choice(STREETS)}",
            "Matinh_NN": home[1],
            "Mahuyen_NN": "",
            "Maxa_NN": home[2],
            "Ten_ChaMe_Giamho": "",
            "MasoBHXH": p.si_code,
            "Dienthoai_LH": f"09{rng.randrange(100_000_000):08d}",
            "CMND": p.cccd,
            "Maho_Giadinh": "",
            "Mucdong": "",
            "Phuongthuc": "",
            "MaTinhBenhVien": home[1],
            "MaBenhVien": f"{home[1]}{rng.randint(1, 150):03d}",
            "Noidung_Thaydoi": "",
            "HosoKemtheo": "",
            "CCNS": "",
            "ID": "",
            "Diachi_KS": p.place[3],
            "Email_LH": "",
        }
        out.append("    <LaoDong>")
        out.extend(_el(k, _text(v[k]), "      ") for k in TK1_FIELDS)
        out.append("    </LaoDong>")
    if people:
        out.append("  </NoiDung>")
    out += ["  <Cky />", "</TK1-TS>"]
    return _doc(out)


def tk1ts_of(rows: list[dict[str, str]]) -> bytes:
    """A TK1-TS with exactly these rows: each a {field: value} of TK1_FIELDS (others empty, STT
    numbered when absent)."""
    out = [f"<TK1-TS {XMLNS}>", "  <NoiDung>", *_given_rows("TK1-TS", TK1_FIELDS, rows)]
    out += ["  </NoiDung>", "  <Cky />", "</TK1-TS>"]
    return _doc(out)


def _given_rows(form: str, fields: tuple[str, ...], rows: list[dict[str, str]]) -> list[str]:
    """The LaoDong elements of `rows`, each a {field: value} of `fields` (others empty, STT
    numbered when absent)."""
    unknown = {k for row in rows for k in row} - set(fields)
    if unknown:
        raise ValueError(f"not {form} fields: {sorted(unknown)}")
    lines = []
    for n, row in enumerate(rows, start=1):
        values = {"STT": str(n), **row}
        lines += ["    <LaoDong>", *(_el(f, _text(values.get(f, "")), "      ") for f in fields), "    </LaoDong>"]
    return lines


# --- D01-TS ----------------------------------------------------------------------------


def d01ts(items: int = 1, *, seed: int = 0, unit: Unit | None = None) -> bytes:
    """A D01-TS: `items` labour contracts listed as documents attached to the dossier."""
    unit = unit or Unit()
    rng = random.Random(f"D01-TS/{seed}")
    out = [
        f"<D01-TS {XMLNS}>",
        "  <NoiDung>",
        "    <TenBangKe>Bảng kê thông tin</TenBangKe>",
        "    <KemTheo />",
    ]
    out.append("    <BangKe>" if items else "    <BangKe />")
    for i in range(1, items + 1):
        p = new_person(rng)
        signed = dt.date(2026, rng.randint(1, 10), rng.randint(1, 28))
        fields = (
            ("STT", str(i)),
            ("HoTen", p.name),
            ("MasoBHXH", p.si_code),
            ("TenLoaiVanBan", "Hợp đồng lao động"),
            ("SoVanBan", f"{rng.randint(1, 999):03d}/{signed.year}/HĐLĐ"),
            ("NgayBanHanh", _d(signed)),
            ("NgayHieuLuc", _d(signed + dt.timedelta(days=rng.randint(0, 15)))),
            ("CoQuanBanHanh", unit.name),
            ("TrichYeu", "Hợp đồng lao động xác định thời hạn 12 tháng"),
            ("NoiDungThamDinh", "Tăng mới lao động, mức lương ghi trên hợp đồng"),
        )
        out.append("      <ThongTin>")
        out.extend(_el(k, _text(val), "        ") for k, val in fields)
        out.append("      </ThongTin>")
    if items:
        out.append("    </BangKe>")
    out += ["  </NoiDung>", "  <Cky />", "</D01-TS>"]
    return _doc(out)


# --- M01B-HSB --------------------------------------------------------------------------

M01B_FIELDS = (
    "STT", "MaNhomHuong", "SoBHXH", "SoCMND", "HoTen", "TuNgay", "DenNgay", "TongSoNgay",
    "DotDaGiaiQuyet", "HinhThucNhan", "SoTaiKhoan", "TenChuTaiKhoan", "MaNganHang", "MaNhanVien",
    "GhiChu", "LyDoDieuChinh", "TuNgayDuyetTruoc",
)  # fmt: skip

_ASCII = str.maketrans(
    "àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ",
    "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd",
)


def _account_holder(name: str) -> str:
    """Bank account holder names are upper case without diacritics."""
    return name.lower().translate(_ASCII).upper()


def m01bhsb(rows: int = 2, *, seed: int = 0, unit: Unit | None = None) -> bytes:
    """An M01B-HSB: `rows` new claims, alternately sickness (CheDoOmDau) and maternity
    (CheDoThaiSan); no convalescence claims and no adjustments (empty elements)."""
    unit = unit or Unit()
    rng = random.Random(f"M01B-HSB/{seed}")
    groups: dict[str, list[str]] = {"CheDoOmDau": [], "CheDoThaiSan": [], "CheDoDuongSuc": []}
    for i in range(1, rows + 1):
        maternity = i % 2 == 0
        p = new_person(rng, male=False, years=(1986, 2004)) if maternity else new_person(rng)
        start = dt.date(2026, 10, rng.randint(1, 20))
        days = 180 if maternity else rng.randint(1, 10)
        end = start + dt.timedelta(days=days - 1)
        fields = (
            ("STT", str(i)),
            ("MaNhomHuong", "2" if maternity else "1"),
            ("SoBHXH", p.si_code),
            ("SoCMND", p.cccd),
            ("HoTen", p.name),
            ("TuNgay", _d(start)),
            ("DenNgay", _d(end)),
            ("TongSoNgay", str(days)),
            ("DotDaGiaiQuyet", ""),
            ("HinhThucNhan", "1"),
            ("SoTaiKhoan", f"{rng.randrange(10**12, 10**13)}"),
            ("TenChuTaiKhoan", _account_holder(p.name)),
            ("MaNganHang", "01203001"),
            ("MaNhanVien", f"NV{rng.randint(1, 9999):04d}"),
            ("GhiChu", ""),
            ("LyDoDieuChinh", ""),
            ("TuNgayDuyetTruoc", ""),
        )
        row = ["        <LaoDong>"]
        row.extend(_el(k, _text(val), "          ") for k, val in fields)
        row.append("        </LaoDong>")
        groups["CheDoThaiSan" if maternity else "CheDoOmDau"].append("\n".join(row))
    out = [
        f"<M01B-HSB {XMLNS}>",
        "  <ThongTinKhac>",
        _el("MaDonVi", _text(unit.code), "    "),
        _el("SoDienThoai", _text(unit.phone), "    "),
        "    <SoTaiKhoan>0011004123456</SoTaiKhoan>",
        "    <MoTai>Ngân hàng TMCP Ngoại thương Việt Nam</MoTai>",
        "    <ChiNhanh>Chi nhánh Thành Công</ChiNhanh>",
        "    <DotXetDuyet>20261115</DotXetDuyet>",
        _el("ThuTruongDonVi", _text(unit.signer), "    "),
        "    <KemHoSoGiay>0</KemHoSoGiay>",
        "    <LyDoGiaiTrinh />",
        "  </ThongTinKhac>",
        "  <NoiDung>",
        "    <PhatSinh>",
    ]
    for name, items in groups.items():
        out += [f"      <{name}>", *items, f"      </{name}>"] if items else [f"      <{name} />"]
    out += ["    </PhatSinh>", "    <DieuChinh />", "  </NoiDung>", "  <Cky />", "</M01B-HSB>"]
    return _doc(out)


# --- the envelope ----------------------------------------------------------------------

PROCEDURE_NAMES = {
    "600": "Đăng ký, đăng ký điều chỉnh đóng BHXH bắt buộc, BHYT, BHTN, BHTNLĐ, BNN; cấp sổ BHXH, thẻ BHYT",
    "602": "Cấp lại, đổi, điều chỉnh thông tin trên sổ BHXH, thẻ BHYT",
    "603": "Giải quyết hưởng chế độ ốm đau, thai sản, dưỡng sức phục hồi sức khỏe",
    "630": "Đăng ký, điều chỉnh thông tin tham gia BHXH, BHYT",
    "04/DK-IVAN": "Đăng ký tham gia giao dịch điện tử trong lĩnh vực BHXH",
    "05/SD-IVAN": "Thay đổi thông tin đăng ký giao dịch điện tử trong lĩnh vực BHXH",
    "06/NG-IVAN": "Ngừng tham gia giao dịch điện tử trong lĩnh vực BHXH",
}

FORM_DESCRIPTIONS = {
    "D02-TS": "Báo cáo tình hình sử dụng lao động và danh sách người tham gia BHXH, BHYT, BHTN, BHTNLĐ-BNN",
    "TK1-TS": "Tờ khai tham gia, điều chỉnh thông tin BHXH, BHYT",
    "D01-TS": "Bảng kê thông tin",
    "M01B-HSB": "Danh sách đề nghị giải quyết hưởng chế độ ốm đau, thai sản, dưỡng sức phục hồi sức khỏe",
}

REGISTRATION_FIELDS = ("Email", "DiaChi", "NguoiLienHe", "PTNhanKetQua")


def today_vn() -> str:
    """Today's date in Asia/Ho_Chi_Minh (UTC+7, no daylight saving), dd/MM/yyyy."""
    return _d(vn_now().date())


def envelope(
    unit: Unit,
    files: list[tuple[str, str, bytes]],
    *,
    procedure: str = "600",
    procedure_name: str | None = None,
    period: str = "11/2026",
    ivan: tuple[str, str] | None = ("00123", "Công ty I-VAN Mẫu"),
    created: str | None = None,
    tamper_count: bool = False,
    registration: dict[str, str] | None = None,
) -> bytes:
    """An unsigned `Hoso` envelope carrying `files` as (MaToKhai, TenFile, exact bytes).

    LoaiFile comes from the file name's extension (".xml", ".pdf"); NoiDungFile is the
    base64 of the exact bytes, on one line; DoDaiFile is the length of that base64 text;
    SoLuongFile is the number of files (one more with `tamper_count`, to exercise the rule
    that it must match). `procedure_name` defaults to the procedure's usual title;
    `created` (NgayLap, dd/MM/yyyy) to today's date in Vietnam; `ivan=None` leaves out
    ThongTinIVAN (a unit sending directly); `period=""` writes an empty KyKeKhai.
    `registration` adds the contact fields of registration dossiers (keys Email, DiaChi,
    NguoiLienHe, PTNhanKetQua).
    """
    name = (
        procedure_name
        if procedure_name is not None
        else PROCEDURE_NAMES.get(procedure, f"Thủ tục {procedure}")
    )
    out = [f"<Hoso {XMLNS}>", "  <NoiDung>"]
    if ivan is not None:
        out += [
            "    <ThongTinIVAN>",
            _el("MaIVAN", _text(ivan[0]), "      "),
            _el("TenIVAN", _text(ivan[1]), "      "),
            "    </ThongTinIVAN>",
        ]
    out += _unit_lines(unit)
    out += [
        "    <ThongTinHoSo>",
        _el("TenThuTuc", _text(name), "      "),
        _el("MaThuTuc", _text(procedure), "      "),
        _el("KyKeKhai", _text(period), "      "),
        _el("NgayLap", _text(created or today_vn()), "      "),
        f"      <SoLuongFile>{len(files) + (1 if tamper_count else 0)}</SoLuongFile>",
    ]
    out += _files_lines(files)
    out.append("    </ThongTinHoSo>")
    for key in REGISTRATION_FIELDS:
        if registration and key in registration:
            out.append(_el(key, _text(registration[key]), "    "))
    out += ["  </NoiDung>", "  <CKy_Dvi />", "</Hoso>"]
    return _doc(out)


def _unit_lines(unit: Unit) -> list[str]:
    """ThongTinDonVi: the employer, as it signs the dossier."""
    fields = (
        ("TenDoiTuong", unit.name),
        ("MaSoBHXH", unit.code),
        ("LoaiDoiTuong", "1"),
        ("MaSoThue", unit.mst),
        ("NguoiKy", unit.signer),
        ("DienThoai", unit.phone),
        ("CoQuanQuanLy", unit.office),
    )
    return ["    <ThongTinDonVi>", *(_el(k, _text(v), "      ") for k, v in fields), "    </ThongTinDonVi>"]


def _files_lines(files: list[tuple[str, str, bytes]]) -> list[str]:
    """ToKhais: each file as base64 on one line, its type from its name's extension."""
    if not files:
        return ["      <ToKhais />"]
    out = ["      <ToKhais>"]
    for code, file_name, content in files:
        b64 = base64.b64encode(content).decode("ascii")
        ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
        out += [
            "        <FileToKhai>",
            _el("MaToKhai", _text(code), "          "),
            _el("MoTaToKhai", _text(FORM_DESCRIPTIONS.get(code, code)), "          "),
            _el("TenFile", _text(file_name), "          "),
            _el("LoaiFile", f".{ext}" if ext else "", "          "),
            f"          <DoDaiFile>{len(b64)}</DoDaiFile>",
            f"          <NoiDungFile>{b64}</NoiDungFile>",
            "        </FileToKhai>",
        ]
    out.append("      </ToKhais>")
    return out


def dossier_600(
    unit: Unit | None = None, *, rows: int = 20, seed: int = 0, period: str = "11/2026", **kw
) -> bytes:
    """A typical procedure-600 dossier: a D02-TS, a TK1-TS and a D01-TS (all unsigned)."""
    unit = unit or Unit()
    stamp = period.replace("/", "")
    files = [
        ("D02-TS", f"D02-TS_{unit.mst}_{stamp}.xml", d02ts(rows, seed=seed, period=period, unit=unit)),
        ("TK1-TS", f"TK1-TS_{unit.mst}_{stamp}.xml", tk1ts(1, seed=seed)),
        ("D01-TS", f"D01-TS_{unit.mst}_{stamp}.xml", d01ts(1, seed=seed, unit=unit)),
    ]
    return envelope(unit, files, procedure="600", period=period, **kw)
