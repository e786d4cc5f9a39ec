"""The one clock vocabulary: Vietnam's time zone, the current UTC moment, and the ISO 8601
+07:00 form notices and manifests carry.

Asia/Ho_Chi_Minh is UTC+7 with no daylight saving; the zone (not a fixed offset) is used so
that historical moments before 1975 still convert as the tz database says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def utc_now() -> datetime:
    """The current moment, aware, in UTC."""
    return datetime.now(UTC)


def vn_now() -> datetime:
    """The current moment, aware, in Vietnamese time."""
    return datetime.now(VN_TZ)


def vn_iso(moment: datetime) -> str:
    """`moment` in Vietnamese time, ISO 8601 to the second: 2025-03-01T08:30:00+07:00."""
    return moment.astimezone(VN_TZ).isoformat(timespec="seconds")
