"""Trends buckets, defaults, breakdown top N and the reference on hand-computed data (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from query_api.errors import InvalidInput
from query_api.trends import evaluate_reference, parse_trends_spec
from query_api.trends.spec import bucket
from schemas.records import EventRecord

NOW = datetime(2026, 3, 12, 15, 30, tzinfo=UTC)  # Thursday


def ev(i: int, at: datetime, name: str, etype: str = "custom", page: str | None = None) -> EventRecord:
    ts = int(at.timestamp() * 1000)
    f: dict[str, Any] = {"event.name": name} | ({"page.path": page} if page else {})
    return EventRecord("o", "p", f"e{i}", "s", etype, ts, ts, fields=f)


H = datetime(2026, 3, 12, tzinfo=UTC)
RECORDS = [
    ev(1, H + timedelta(hours=1), "a"), ev(2, H + timedelta(hours=1, minutes=5), "a"),
    ev(3, H + timedelta(hours=3), "b"), ev(4, H + timedelta(hours=3), "c", "page.view", "/x"),
    ev(5, H + timedelta(hours=4), "c"), ev(6, H + timedelta(hours=4), ""),
]  # fmt: skip


def test_hourly_zero_filled_and_top_n_with_other_and_none() -> None:
    spec = parse_trends_spec(interval="HOUR", date_from=H + timedelta(minutes=30), date_to=H + timedelta(hours=5),
                             breakdown="NAME", limit=2, now=NOW)  # fmt: skip
    r = evaluate_reference([*RECORDS, RECORDS[0]], spec)
    assert r.buckets[0] == H and len(r.buckets) == 5  # widened to 00:00, 5 hourly buckets to 05:00
    # totals: a 2, c 2, b 1, (none) 1 → top 2 = a, c (ties by value); b and (none) → (other)
    assert [(s.value, s.counts) for s in r.series] == [
        ("a", (0, 2, 0, 0, 0)), ("c", (0, 0, 0, 1, 1)), ("(other)", (0, 0, 0, 1, 1))]  # fmt: skip
    assert r.total == 6
    only = parse_trends_spec(interval="DAY", date_from=H, date_to=H + timedelta(days=1), event_type="page.view",
                             page="/x", now=NOW)  # fmt: skip
    assert [(s.value, s.counts) for s in evaluate_reference(RECORDS, only).series] == [("(all)", (1,))]
    empty = evaluate_reference([], only)
    assert [(s.value, s.total) for s in empty.series] == [("(all)", 0)]


def test_weeks_start_monday_and_guard_rails() -> None:
    assert datetime.fromtimestamp(bucket("WEEK", int(NOW.timestamp() * 1000)) / 1000, tz=UTC) == datetime(
        2026, 3, 9, tzinfo=UTC)  # fmt: skip
    spec = parse_trends_spec(interval="MINUTE", now=NOW)
    assert len(spec.buckets()) == 60 and spec.date_to == NOW
    with pytest.raises(InvalidInput, match="at most 1500"):
        parse_trends_spec(interval="MINUTE", date_from=NOW - timedelta(days=2), now=NOW)
    with pytest.raises(InvalidInput, match=r"limit: must be an integer in 1\.\.50"):
        parse_trends_spec(limit=0, now=NOW)
    with pytest.raises(InvalidInput, match="breakdown: unknown or unsupported property"):
        parse_trends_spec(breakdown="nope", now=NOW)
    with pytest.raises(InvalidInput, match="at most 400 days"):
        parse_trends_spec(interval="WEEK", date_from=NOW - timedelta(days=401), now=NOW)
