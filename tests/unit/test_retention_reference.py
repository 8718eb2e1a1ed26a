"""The retention reference and calendar on hand-computed data (pure; rule 12).  Fixed dates are fine here:
nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from query_api.errors import InvalidInput
from query_api.retention import evaluate_reference, parse_retention_spec
from query_api.retention.spec import index, index_sql, period_start
from schemas.records import EventRecord

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)  # a Thursday; today is day 12


def day(d: int, hour: float = 10) -> datetime:
    return datetime(2026, 3, d, tzinfo=UTC) + timedelta(hours=hour)


_n = 0


def ev(at: datetime, session: str, user: str | None = None, anon: str | None = None, name: str = "x") -> EventRecord:
    global _n
    _n += 1
    f: dict[str, Any] = {"event.name": name}
    if user:
        f["user.id"] = user
    if anon:
        f["user.anonymous_id"] = anon
    ts = int(at.timestamp() * 1000)
    return EventRecord("o", "p", f"e{_n}", session, "custom", ts, ts + 5, fields=f)


def triangle(records: list[EventRecord], **kw: Any) -> list[tuple[int, list[int | None]]]:
    spec = parse_retention_spec(now=NOW, **kw)
    return [(c.size, [x.count for x in c.cells]) for c in evaluate_reference(records, spec).cohorts]


def test_cross_day_merge_session_only_history_and_future_cells() -> None:
    records = [
        ev(day(8), "s1", "u1"), ev(day(9), "s1b", "u1"), ev(day(11), "s1c", "u1"),
        ev(day(8, 23.5), "s2", anon="a1"), ev(day(9, 1), "s2", "u2", "a1"), ev(day(10), "s2b", "u2"),
        ev(day(9, 12), "s9"),  # session only
        ev(day(7), "s3", "u3"), ev(day(9, 14), "s3b", "u3"), ev(day(12, 0.5), "s3c", "u3"),
        ev(day(11, 8), "s4", "u4"), ev(day(12, 1), "s4b", "u4"),
    ]  # fmt: skip
    records.append(records[0])  # a redelivery
    assert triangle(records, period="DAY", periods=3, date_from=day(8, 0)) == [
        (2, [2, 2, 1, 1]),  # day 8: u1 and u2 (anonymous since 23:30 on day 8)
        (2, [2, 0, 0, 1]),  # day 9: session:s9 and u3 (day 7 is before the range)
        (0, [0, 0, 0, None]),
        (1, [1, 1, None, None]),  # day 11: u4
        (0, [0, None, None, None]),  # today
    ]
    spec = parse_retention_spec(period="DAY", periods=3, date_from=day(8, 0), now=NOW)
    first = evaluate_reference(records, spec).cohorts[0]
    assert [x.rate for x in first.cells] == [1.0, 1.0, 0.5, 0.5]
    # from day 7, u3's first event is day 7: cohort day 7 (back on day 9 = period 2)
    assert triangle(records, period="DAY", periods=2, date_from=day(7, 0))[:3] == [
        (1, [1, 0, 1]), (2, [2, 2, 1]), (1, [1, 0, 0])]  # fmt: skip


def test_start_and_return_matchers() -> None:
    records = [
        ev(day(8, 9), "s5", "u5", name="login"), ev(day(8, 10), "s5", "u5", name="signup"),
        ev(day(10), "s5b", "u5", name="login"),
        ev(day(9), "s6", "u6", name="signup"), ev(day(10), "s6", "u6", name="signup"),
        ev(day(8), "s7", "u7", name="login"),  # never signs up: in no cohort
    ]  # fmt: skip
    got = triangle(records, period="DAY", periods=3, date_from=day(8, 0),
                   start_event={"event_name": "signup"}, return_event={"event_name": "login"})  # fmt: skip
    assert got[:2] == [(1, [1, 0, 1, 0]), (1, [0, 0, 0, 0])]


def test_weeks_and_months() -> None:
    records = [ev(day(2), "a", "u1"), ev(day(9), "b", "u1"), ev(day(8), "c", "u2"), ev(day(12), "d", "u2")]
    # weeks start on Monday: Mar 2 and Mar 9; u2's Sunday Mar 8 is in the first week, Mar 12 in the second
    assert triangle(records, period="WEEK", periods=1, date_from=day(2, 0)) == [(2, [2, 2]), (0, [0, None])]
    feb = [ev(datetime(2026, 2, 27, tzinfo=UTC), "f", "u3"), ev(day(1), "g", "u3")]
    assert triangle(feb, period="MONTH", periods=1, date_from=datetime(2026, 2, 1, tzinfo=UTC)) == [
        (1, [1, 1]), (0, [0, None])]  # fmt: skip


@pytest.mark.parametrize("period", ["DAY", "WEEK", "MONTH"])
def test_calendar_round_trips(period: Any) -> None:
    for d in (datetime(2024, 2, 29, 23, 59, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC), day(8, 23.99)):
        i = index(period, int(d.timestamp() * 1000))
        assert period_start(period, i) <= d < period_start(period, i + 1)
        assert index(period, int(period_start(period, i).timestamp() * 1000)) == i
    assert period_start("WEEK", index("WEEK", int(day(12).timestamp() * 1000))) == datetime(2026, 3, 9, tzinfo=UTC)
    assert "intDiv" in index_sql("WEEK", "ts") and "toMonth" in index_sql("MONTH", "ts")


def test_defaults_and_guard_rails() -> None:
    spec = parse_retention_spec(period="DAY", now=NOW)  # 7 periods: cohorts day 5 .. day 12
    assert (spec.scan_from, spec.scan_to) == (datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 13, tzinfo=UTC))
    with pytest.raises(InvalidInput, match=r"periods: must be an integer in 1\.\.90"):
        parse_retention_spec(period="DAY", periods=91, now=NOW)
    with pytest.raises(InvalidInput, match="period: must be DAY, WEEK or MONTH"):
        parse_retention_spec(period="YEAR", now=NOW)
    with pytest.raises(InvalidInput, match="at most 400 days"):
        parse_retention_spec(period="DAY", periods=10, date_from=NOW - timedelta(days=420), now=NOW)
    with pytest.raises(InvalidInput, match=r"returnEvent\.event_type: unknown type"):
        parse_retention_spec(period="DAY", return_event={"event_type": "nope"}, now=NOW)
    with pytest.raises(InvalidInput, match="dateTo: must be after dateFrom"):
        parse_retention_spec(period="DAY", date_from=day(9), date_to=day(8), now=NOW)
