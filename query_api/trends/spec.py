"""What a trends question is: events per interval, filtered, optionally broken down (pure).

Decisions where the issue is silent:
- buckets start at whole intervals in UTC (weeks on Monday); ``dateFrom`` is widened down to its bucket's
  start, ``dateTo`` is exclusive (the last bucket may be partial); every bucket is listed, zero-filled;
- defaults: ``dateTo`` = now, ``dateFrom`` = 1 hour / 24 hours / 30 days / 12 weeks before it;
  at most :data:`MAX_BUCKETS` buckets and 400 days;
- filters ``eventType``, ``eventName``, ``page`` (exact path) are the matcher language's fields;
- breakdown ``TYPE`` / ``NAME`` / ``PAGE`` or any property path of :mod:`query_api.cohorts.properties`;
  the ``limit`` values with most events in the range (ties by value) get their own series, the rest is
  summed into ``(other)``; an empty value is ``(none)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from query_api.cohorts.bounds import check_int, check_range, ms, parse_time
from query_api.cohorts.persons import ANY
from query_api.cohorts.properties import Property, parse_property
from query_api.errors import InvalidInput
from schemas.matchers import Matcher, MatcherError, parse_matcher

__all__ = ["ALL", "MAX_BUCKETS", "NONE", "OTHER", "Interval", "TrendsSpec", "bucket", "bucket_sql", "parse_trends_spec"]

Interval = Literal["MINUTE", "HOUR", "DAY", "WEEK"]
SIZE_MS: dict[str, int] = {"MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000, "WEEK": 7 * 86_400_000}
DEFAULT_RANGE: dict[str, timedelta] = {
    "MINUTE": timedelta(hours=1), "HOUR": timedelta(days=1), "DAY": timedelta(days=30), "WEEK": timedelta(weeks=12),
}  # fmt: skip
MAX_BUCKETS = 1500
MAX_LIMIT = 50
ALL, OTHER, NONE = "(all)", "(other)", "(none)"
_SHORT = {"TYPE": "event.type", "NAME": "event.name", "PAGE": "page.path"}
_MONDAY_SHIFT = 3 * 86_400_000  # epoch day 0 was a Thursday


def bucket(interval: Interval, ts_ms: int) -> int:
    if interval == "WEEK":
        return (ts_ms + _MONDAY_SHIFT) // SIZE_MS["WEEK"] * SIZE_MS["WEEK"] - _MONDAY_SHIFT
    return ts_ms // SIZE_MS[interval] * SIZE_MS[interval]


def bucket_sql(interval: Interval, ts_ms: str) -> str:
    size = SIZE_MS[interval]
    if interval == "WEEK":
        return f"(intDiv({ts_ms} + {_MONDAY_SHIFT}, {size}) * {size} - {_MONDAY_SHIFT})"
    return f"(intDiv({ts_ms}, {size}) * {size})"


@dataclass(frozen=True, slots=True)
class TrendsSpec:
    interval: Interval
    date_from: datetime  # the first bucket's start
    date_to: datetime
    matcher: Matcher
    breakdown: Property | None = None
    limit: int = 10
    cohort_id: str | None = None

    @property
    def from_ms(self) -> int:
        return ms(self.date_from)

    @property
    def to_ms(self) -> int:
        return ms(self.date_to)

    def buckets(self) -> list[int]:
        return list(range(self.from_ms, self.to_ms, SIZE_MS[self.interval]))


def parse_trends_spec(
    *,
    interval: str = "DAY",
    date_from: object = None,
    date_to: object = None,
    event_type: str | None = None,
    event_name: str | None = None,
    page: str | None = None,
    breakdown: str | None = None,
    limit: int = 10,
    cohort_id: str | None = None,
    now: datetime,
) -> TrendsSpec:
    if interval not in SIZE_MS:
        raise InvalidInput("interval: must be MINUTE, HOUR, DAY or WEEK")
    iv: Interval = (
        "MINUTE" if interval == "MINUTE" else "HOUR" if interval == "HOUR" else "DAY" if interval == "DAY" else "WEEK"
    )
    end = parse_time("dateTo", date_to) or now
    start = parse_time("dateFrom", date_from) or end - DEFAULT_RANGE[iv]
    check_range(start, end)
    first = datetime.fromtimestamp(bucket(iv, ms(start)) / 1000, tz=UTC)
    n = -(-(ms(end) - ms(first)) // SIZE_MS[iv])
    if n > MAX_BUCKETS:
        raise InvalidInput(f"interval: {n} buckets; at most {MAX_BUCKETS} (use a longer interval or a shorter range)")
    raw = {"event_type": event_type, "event_name": event_name, "page_path": page}
    raw = {k: v for k, v in raw.items() if v is not None}
    try:
        matcher = parse_matcher(raw) if raw else ANY
    except MatcherError as exc:
        where = {"event_type": "eventType", "event_name": "eventName", "page_path": "page"}
        field, _, reason = str(exc).partition(": ")
        raise InvalidInput(f"{where.get(field, field)}: {reason}") from None
    prop = None if breakdown is None else parse_property("breakdown", _SHORT.get(breakdown, breakdown))
    return TrendsSpec(iv, first, end, matcher, prop, check_int("limit", limit, 1, MAX_LIMIT), cohort_id)
