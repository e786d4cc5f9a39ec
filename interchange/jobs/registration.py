"""Registration for electronic transactions (SPEC §9): 04/DK-IVAN, 05/SD-IVAN, 06/NG-IVAN.

The certificate was verified at receipt (a received dossier passed the signature layer,
bound to the unit's MST). The work item checks the rest, issues the signed KET_QUA and
sets the unit's state, all in one transaction (`Store.results.settle`); a second run finds the
KET_QUA and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from interchange import codes
from interchange.errors import Layer, Problem, Severity
from interchange.identifiers import mst_valid
from interchange.kinds import NOTICE_RESULT
from interchange.notices.notice import NoticeData
from interchange.store.store import Store
from interchange.store.types import (
    ACCEPTED,
    ACTIVE,
    REJECTED,
    STOPPED,
    Dossier,
    Settlement,
    Unit,
    WorkItem,
)

REGISTER, CHANGE, STOP = "04/DK-IVAN", "05/SD-IVAN", "06/NG-IVAN"
REGISTRATION_PROCEDURES = frozenset({REGISTER, CHANGE, STOP})
CHAP_NHAN, KHONG_CHAP_NHAN = "CHAP_NHAN", "KHONG_CHAP_NHAN"
NOT_ACTIVE = codes.REG_NOT_ACTIVE  # also the receipt's refusal when [registration] required is on

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_NOI_DUNG = "/Hoso/NoiDung"


def _problem(code: str, vi: str, en: str, xpath: str, value: str | None = None) -> Problem:
    return Problem(layer=Layer.RULE, code=code, message_vi=vi, message_en=en, xpath=xpath, value=value)


def not_active_problem(mst: str | None, state: str | None) -> Problem:
    """A unit that is not registered and active (SPEC §9)."""
    what_vi = "chưa đăng ký" if state is None else "đã ngừng"
    what_en = "is not registered for" if state is None else "has stopped"
    return _problem(
        NOT_ACTIVE,
        f"Đơn vị (MST {mst}) {what_vi} giao dịch điện tử với cơ quan BHXH; "
        f"hãy đăng ký bằng thủ tục {REGISTER}.",
        f"The unit (tax code {mst}) {what_en} electronic transactions with the social-insurance "
        f"agency; register with procedure {REGISTER} first.",
        f"{_NOI_DUNG}/ThongTinDonVi/MaSoThue",
        mst,
    )


def result_notice(
    dossier: Dossier, now: datetime, *, accepted: bool, problems: list[Problem], truncated: int = 0
) -> NoticeData:
    """The KET_QUA of a received dossier: the rule layer passed (CHAP_NHAN) or failed."""
    return NoticeData(
        kind=NOTICE_RESULT, transaction_id=dossier.id, received_at=dossier.received_at, issued_at=now,
        sha256=dossier.sha256, so_ho_so=dossier.so_ho_so, procedure=dossier.procedure,
        mst=dossier.unit_mst, unit_code=dossier.unit_code, ivan_code=dossier.ivan_code,
        due_at=dossier.due_at, result=CHAP_NHAN if accepted else KHONG_CHAP_NHAN,
        layers={**dossier.layers, str(Layer.RULE): "passed" if accepted else "failed"},
        problems=problems, truncated=truncated,
    )  # fmt: skip


def registration_problems(procedure: str, mst: str | None, contact: dict[str, str], unit: Unit | None) -> list[Problem]:
    """The automatic checks of a registration dossier, against the unit's registration as it is."""
    out: list[Problem] = []
    if not mst or not mst_valid(mst):
        out.append(_problem(
            codes.REG_MST, f"Mã số thuế {mst} sai chữ số kiểm tra.",
            f"The tax code {mst} has a wrong check digit.", f"{_NOI_DUNG}/ThongTinDonVi/MaSoThue", mst,
        ))  # fmt: skip
    if procedure in (REGISTER, CHANGE):
        email = (contact.get("Email") or "").strip()
        if not email:
            out.append(_problem(codes.REG_EMAIL_MISSING, "Thiếu địa chỉ thư điện tử (Email).",
                                "The e-mail address (Email) is missing.", f"{_NOI_DUNG}/Email"))
        elif len(email) > 254 or not _EMAIL.match(email):
            out.append(_problem(codes.REG_EMAIL_INVALID, f"Địa chỉ thư điện tử {email} không hợp lệ.",
                                f"The e-mail address {email} is not valid.", f"{_NOI_DUNG}/Email", email))
        if not (contact.get("DiaChi") or "").strip():
            out.append(_problem(codes.REG_ADDRESS_MISSING, "Thiếu địa chỉ liên hệ (DiaChi).",
                                "The contact address (DiaChi) is missing.", f"{_NOI_DUNG}/DiaChi"))
        if not (contact.get("NguoiLienHe") or "").strip():
            out.append(_problem(codes.REG_CONTACT_MISSING, "Thiếu người liên hệ (NguoiLienHe).",
                                "The contact person (NguoiLienHe) is missing.", f"{_NOI_DUNG}/NguoiLienHe"))
    if procedure == REGISTER and unit is not None and unit.state == ACTIVE:
        out.append(_problem(
            codes.REG_ALREADY_ACTIVE,
            f"Đơn vị (MST {mst}) đã đăng ký giao dịch điện tử; thay đổi thông tin bằng thủ tục {CHANGE}.",
            f"The unit (tax code {mst}) is registered already; change its data with procedure {CHANGE}.",
            f"{_NOI_DUNG}/ThongTinHoSo/MaThuTuc", procedure,
        ))  # fmt: skip
    if procedure in (CHANGE, STOP) and (unit is None or unit.state != ACTIVE):
        out.append(not_active_problem(mst, None if unit is None else unit.state))
    return out


def unit_after(dossier: Dossier, unit: Unit | None, contact: dict[str, str], now: datetime) -> Unit:
    """The unit's registration once an accepted registration dossier is applied."""
    if dossier.procedure == STOP:
        assert unit is not None  # registration_problems refuses a stop of an unknown unit
        return Unit(**{**vars(unit), "state": STOPPED, "dossier_id": dossier.id, "updated_at": now})
    return Unit(
        mst=dossier.unit_mst or "",
        unit_code=dossier.unit_code,
        name=dossier.unit_name,
        state=ACTIVE,
        email=contact.get("Email"),
        address=contact.get("DiaChi"),
        contact=contact.get("NguoiLienHe"),
        result_channel=contact.get("PTNhanKetQua"),
        dossier_id=dossier.id,
        updated_at=now,
    )


class RegistrationWork:
    """The handler of WORK_REGISTRATION items (interchange.kinds)."""

    def __init__(
        self,
        store: Store,
        sign: Callable[[NoticeData], Awaitable[bytes]],
        *,
        on_result: Callable[[Dossier, datetime], None] | None = None,
    ):
        self.store = store
        self.sign = sign  # ReceiptWorkers.sign_notice: RSA off the event loop
        self.on_result = on_result

    async def __call__(self, item: WorkItem, now: datetime) -> bool:
        """True when the item was marked done with the result (see WorkRunner)."""
        settled: list[Dossier] = []

        async def decide(dossier: Dossier, unit: Unit | None) -> Settlement:
            contact = dossier.facts.get("contact") or {}
            problems = registration_problems(dossier.procedure or "", dossier.unit_mst, contact, unit)
            accepted = not any(p.severity == Severity.ERROR for p in problems)
            notice = await self.sign(result_notice(dossier, now, accepted=accepted, problems=problems))
            settled.append(replace(dossier, state=ACCEPTED if accepted else REJECTED))  # as settled: for the log
            return Settlement(
                state=ACCEPTED if accepted else REJECTED,
                notice=notice,
                problems=[p.as_dict() for p in problems],
                unit=unit_after(dossier, unit, contact, now) if accepted else None,
            )

        if await self.store.results.settle(item.dossier_id, decide, now=now, work=item) is None:
            return False
        if self.on_result:
            self.on_result(settled[0], now)
        return True
