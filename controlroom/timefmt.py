"""Converting between stored UTC microseconds and what people read and type.

Stored: integer microseconds since the epoch, UTC. Shown: ISO 8601 with the offset, in
Europe/London by default, so the October hour that happens twice is unambiguous (+01:00 then
+00:00). Input: ISO 8601 with an explicit offset or ``Z``; a naive time is refused, because in
the October hour it would be ambiguous and in the March hour it would not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from storage import Invalid

LONDON = ZoneInfo("Europe/London")
# Times people may type: nothing was recorded before 1970, and nothing is kept or reviewed
# beyond 2200. Outside this range, arithmetic on the time (a window, a review date, the
# local time to show) left datetime's years 1..9999 and was a server error.
EARLIEST_US = 0  # 1970-01-01T00:00:00Z
LATEST_US = 7_258_118_400_000_000  # 2200-01-01T00:00:00Z


def us_to_iso(us: int | None, tz: ZoneInfo = UTC) -> str | None:  # type: ignore[assignment]
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).astimezone(tz).isoformat(timespec="milliseconds")


def iso_to_us(text: str, field: str = "time") -> int:
    """Microseconds since the epoch of an ISO 8601 time with an offset, within 1970..2200,
    else :class:`Invalid` naming ``field``."""
    shown = repr(text[:60]) if isinstance(text, str) else repr(text)
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        raise Invalid(f"{field}: {shown} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise Invalid(f"{field}: {shown} has no UTC offset; add Z or +01:00")
    try:  # a time near year 1 or 9999 leaves datetime's range once the offset is applied
        whole_s = int(dt.replace(microsecond=0).astimezone(UTC).timestamp())
    except (OverflowError, ValueError):
        whole_s = None
    if whole_s is None or not EARLIEST_US <= whole_s * 1_000_000 + dt.microsecond < LATEST_US:
        raise Invalid(f"{field}: {shown} is outside 1970-01-01 to 2200-01-01")
    return whole_s * 1_000_000 + dt.microsecond


def local_iso(us: int | None) -> str | None:
    return us_to_iso(us, LONDON)
