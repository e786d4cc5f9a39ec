"""Work kinds: what a row of the work queue (`work_items.kind`) does. One name, one meaning.

The values are stored in the database: never change one.
"""

from __future__ import annotations

WORK_REGISTRATION = "registration"  # judge a 04/DK-IVAN, 05/SD-IVAN or 06/NG-IVAN and give its KET_QUA
WORK_JUDGE = "result"  # judge a declaration dossier by the business rules and give its KET_QUA
WORK_FORWARD = "forward"  # role ivan: send the original bytes upstream
WORK_RELAY = "relay"  # role ivan: poll the upstream for its KET_QUA and keep it as the dossier's result
WORK_DELIVER_PREFIX = "deliver:"  # deliver:<notice slug>:<route>, one per dossier, notice and route


def delivery_work(notice_slug: str, route: str) -> str:
    """The work kind of a delivery of one notice along one route."""
    return f"{WORK_DELIVER_PREFIX}{notice_slug}:{route}"
