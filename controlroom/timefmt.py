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


def us_to_iso(us: int | None, tz: ZoneInfo = UTC) -> str | None:  # type: ignore[assignment]
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).astimezone(tz).isoformat(timespec="milliseconds")


def iso_to_us(text: str, field: str = "time") -> int:
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise Invalid(f"{field}: {text!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise Invalid(f"{field}: {text!r} has no UTC offset; add Z or +01:00")
    return int(dt.timestamp() * 1_000_000) if dt.microsecond == 0 else (
        int(dt.replace(microsecond=0).timestamp()) * 1_000_000 + dt.microsecond
    )


def local_iso(us: int | None) -> str | None:
    return us_to_iso(us, LONDON)
