"""What a retention question is, and the calendar it is asked on (pure).

Rule 12 (../shared/design/analytics-semantics.md): a person (rule 4) belongs to the cohort of the UTC
calendar day / ISO week (Monday) / month of their first start event; period ``n`` of that cohort counts the
members with any return event in the cohort's period + ``n``; cells after the current period are null.

Decisions where the rules are silent:
- the range is widened to whole periods: cohorts are the periods that ``[date_from, date_to)`` touches
  (periods after the current one are dropped); "first" means first since the start of the first cohort
  (history before it is not consulted, as the funnels do not consult events outside their range);
- the scan ends with the last cell that can exist: ``min(last cohort + periods + 1, current period + 1)``;
  it may span at most 400 days (so MONTH x 12 periods, WEEK x 52, DAY x 90 fit with the default range);
- period 0 counts any return event in the cohort's period, also one before the first start event that day;
- an empty cohort has rate 0; rates have 6 decimals (rule 11).

Periods are numbered from the epoch (``index``) so that Python and SQL compute the same integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from query_api.cohorts.bounds import MAX_RANGE, check_int, ms, parse_time
from query_api.cohorts.persons import ANY
from query_api.errors import InvalidInput
from schemas.matchers import Matcher, MatcherError, parse_matcher

__all__ = ["MAX_PERIODS", "Period", "RetentionSpec", "index", "index_sql", "parse_retention_spec", "period_start"]

Period = Literal["DAY", "WEEK", "MONTH"]
MAX_PERIODS: Mapping[str, int] = {"DAY": 90, "WEEK": 52, "MONTH": 12}
DEFAULT_PERIODS: Mapping[str, int] = {"DAY": 7, "WEEK": 8, "MONTH": 6}
_DAY_MS = 86_400_000


def index(period: Period, ts_ms: int) -> int:
    """The period containing ``ts_ms``, counted from the epoch (weeks start on Monday)."""
    days = ts_ms // _DAY_MS
    if period == "DAY":
        return days
    if period == "WEEK":
        return (days + 3) // 7  # 1970-01-01 was a Thursday: Monday 1969-12-29 starts week 0
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return d.year * 12 + d.month - 1


def index_sql(period: Period, ts_ms: str) -> str:
    """:func:`index` in ClickHouse over an Int64 millisecond expression."""
    if period == "DAY":
        return f"intDiv({ts_ms}, {_DAY_MS})"
    if period == "WEEK":
        return f"intDiv(intDiv({ts_ms}, {_DAY_MS}) + 3, 7)"
    d = f"fromUnixTimestamp64Milli({ts_ms}, 'UTC')"
    return f"(toYear({d}) * 12 + toMonth({d}) - 1)"


def period_start(period: Period, idx: int) -> datetime:
    if period == "DAY":
        return datetime.fromtimestamp(idx * 86_400, tz=UTC)
    if period == "WEEK":
        return datetime.fromtimestamp((idx * 7 - 3) * 86_400, tz=UTC)
    return datetime(idx // 12, idx % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetentionSpec:
    period: Period
    periods: int  # cells 0..periods per cohort
    start: Matcher
    returning: Matcher
    first_cohort: int  # period indexes, inclusive
    last_cohort: int
    today: int  # the current period: later cells are null
    cohort_id: str | None = None

    @property
    def scan_from(self) -> datetime:
        return period_start(self.period, self.first_cohort)

    @property
    def scan_to(self) -> datetime:
        return period_start(self.period, min(self.last_cohort + self.periods, self.today) + 1)

    @property
    def scan_from_ms(self) -> int:
        return ms(self.scan_from)

    @property
    def scan_to_ms(self) -> int:
        return ms(self.scan_to)


def _matcher(name: str, raw: object) -> Matcher:
    if raw is None or raw == {}:
        return ANY
    try:
        return parse_matcher(raw)
    except MatcherError as exc:
        raise InvalidInput(f"{name}.{exc}") from None


def parse_retention_spec(
    *,
    period: str = "DAY",
    periods: int | None = None,
    start_event: object = None,
    return_event: object = None,
    date_from: object = None,
    date_to: object = None,
    cohort_id: str | None = None,
    now: datetime,
) -> RetentionSpec:
    if period not in MAX_PERIODS:
        raise InvalidInput("period: must be DAY, WEEK or MONTH")
    p: Period = "DAY" if period == "DAY" else "WEEK" if period == "WEEK" else "MONTH"
    n = check_int("periods", DEFAULT_PERIODS[p] if periods is None else periods, 1, MAX_PERIODS[p])
    today = index(p, ms(now))
    end = parse_time("dateTo", date_to) or now
    start = parse_time("dateFrom", date_from) or period_start(p, min(index(p, ms(end) - 1), today) - n)
    if start >= end:
        raise InvalidInput("dateTo: must be after dateFrom")
    spec = RetentionSpec(
        period=p,
        periods=n,
        start=_matcher("startEvent", start_event),
        returning=_matcher("returnEvent", return_event),
        first_cohort=index(p, ms(start)),
        last_cohort=min(index(p, ms(end) - 1), today),
        today=today,
        cohort_id=cohort_id,
    )
    if spec.first_cohort > spec.today:
        raise InvalidInput("dateFrom: no cohort period has begun yet")
    if spec.scan_to - spec.scan_from > MAX_RANGE + timedelta(days=1):
        raise InvalidInput(
            f"dateFrom: the cohorts and their {n} periods may span at most {MAX_RANGE.days} days; "
            "narrow the range or ask for fewer periods"
        )
    return spec
