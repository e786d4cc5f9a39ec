"""The dossier-level rules: the unit's tax code in the envelope, and the procedure (MaThuTuc)
with the forms and attachments it takes."""

from __future__ import annotations

from interchange.identifiers import mst_valid
from interchange.intake.envelope import Envelope, FormFile
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import HOSO
from interchange.rules.context import Context

ENVELOPE_FORMS_XPATH = "/Hoso/NoiDung/ThongTinHoSo/ToKhais"
ENVELOPE_MST_XPATH = "/Hoso/NoiDung/ThongTinDonVi/MaSoThue"
ENVELOPE_PROCEDURE_XPATH = "/Hoso/NoiDung/ThongTinHoSo/MaThuTuc"


def judge_envelope(env: Envelope, ctx: Context) -> None:
    """The dossier-level rules: the unit's tax code, the procedure and its forms."""
    if env.mst and not mst_valid(env.mst):
        ctx.out.add("R-MST", form=HOSO, xpath=ENVELOPE_MST_XPATH, value=env.mst)
    judge_procedure(env.procedure, env.files, ctx)


def judge_procedure(procedure: str | None, files: list[FormFile], ctx: Context) -> None:
    out = ctx.out
    if procedure in cat.REGISTRATION_PROCEDURES:
        return
    wanted = cat.PROCEDURES.get(procedure or "")
    if wanted is None:
        out.add("R-PROCEDURE-UNKNOWN", form=HOSO, xpath=ENVELOPE_PROCEDURE_XPATH, value=procedure or "",
                known=", ".join(sorted(cat.PROCEDURES)))
        return
    present = set()
    for f in files:
        if not f.is_xml:
            if not wanted.attachments:
                out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=f.xpath, line=f.line, value=f.name, procedure=procedure,
                        problem_vi=f"không nhận tệp đính kèm {f.name}", problem_en=f"takes no attachments ({f.name})")
            continue
        present.add(f.code)
        if f.code not in wanted.needs | wanted.may:
            allowed = ", ".join(sorted(wanted.needs | wanted.may))
            out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=f.xpath + "/MaToKhai", line=f.line, value=f.code,
                    procedure=procedure,
                    problem_vi=f"không nhận tờ khai {f.code or '(trống)'} (chỉ nhận {allowed})",
                    problem_en=f"does not take the form {f.code or '(empty)'} (only {allowed})")
    for code in sorted(wanted.needs - present):
        out.add("R-PROCEDURE-FORMS", form=HOSO, xpath=ENVELOPE_FORMS_XPATH, value=None, procedure=procedure,
                problem_vi=f"hồ sơ phải có tờ khai {code}", problem_en=f"the dossier must carry a {code} form")
