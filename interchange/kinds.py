"""The kinds of things, one name each: notice types, notice slugs and work kinds.

- A notice type is the LoaiThongBao a notice states (SPEC §4): NOTICE_*.
- A notice slug names a stored notice: the `notices.kind` column and the URL
  `/api/v1/dossiers/{id}/notices/{slug}`: SLUG_*. Role ivan keeps the upstream agency's own
  receipt or refusal under slugs of their own (its KET_QUA is the dossier's result).
- A work kind is what a row of the work queue (`work_items.kind`) does: WORK_*.

Slugs and work kinds are stored in the database: never change a value.
"""

from __future__ import annotations

# Notice types (LoaiThongBao).
NOTICE_RECEIPT = "TIEP_NHAN"  # received (HTTP 202)
NOTICE_REFUSAL = "TU_CHOI"  # refused at receipt (HTTP 4xx)
NOTICE_RESULT = "KET_QUA"  # the result: CHAP_NHAN or KHONG_CHAP_NHAN

# Notice slugs (at most 16 characters: notices.kind).
SLUG_RECEIPT = "tiep-nhan"
SLUG_REFUSAL = "tu-choi"
SLUG_RESULT = "ket-qua"
SLUG_UPSTREAM_RECEIPT = "bhxh-tiep-nhan"  # role ivan: the agency's TIEP_NHAN of the forwarded bytes
SLUG_UPSTREAM_REFUSAL = "bhxh-tu-choi"  # role ivan: the agency's TU_CHOI of the forwarded bytes
NOTICE_SLUGS = (SLUG_RECEIPT, SLUG_REFUSAL, SLUG_RESULT, SLUG_UPSTREAM_RECEIPT, SLUG_UPSTREAM_REFUSAL)
SLUG_OF_NOTICE = {NOTICE_RECEIPT: SLUG_RECEIPT, NOTICE_REFUSAL: SLUG_REFUSAL, NOTICE_RESULT: SLUG_RESULT}

# Work kinds.
WORK_REGISTRATION = "registration"  # judge a 04/DK-IVAN, 05/SD-IVAN or 06/NG-IVAN and give its KET_QUA
WORK_JUDGE = "result"  # judge a declaration dossier by the business rules and give its KET_QUA
WORK_FORWARD = "forward"  # role ivan: send the original bytes upstream
WORK_RELAY = "relay"  # role ivan: poll the upstream for its KET_QUA and keep it as the dossier's result
WORK_DELIVER_PREFIX = "deliver:"  # deliver:<notice slug>:<route>, one per dossier, notice and route


def delivery_work(notice_slug: str, route: str) -> str:
    """The work kind of a delivery of one notice along one route."""
    return f"{WORK_DELIVER_PREFIX}{notice_slug}:{route}"
