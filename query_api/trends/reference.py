"""Trends, literally, in Python: the yardstick for :mod:`query_api.trends.sql` (pure, small data)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Set

from query_api.cohorts.persons import person_events
from query_api.trends.result import TrendsResult, build_result
from query_api.trends.spec import ALL, NONE, OTHER, TrendsSpec, bucket
from schemas.matchers import matches
from schemas.records import EventRecord

__all__ = ["evaluate"]


def evaluate(records: Iterable[EventRecord], spec: TrendsSpec, cohort: Set[str] | None = None) -> TrendsResult:
    rows: list[tuple[str, int]] = []
    for rec, ev in person_events(records, spec.date_from, spec.date_to):
        if (cohort is not None and ev.person not in cohort) or not matches(spec.matcher, rec):
            continue
        value = ALL if spec.breakdown is None else spec.breakdown.value(rec) or NONE
        rows.append((value, bucket(spec.interval, rec.ts_ms)))
    if spec.breakdown is not None:
        totals = Counter(v for v, _ in rows)
        top = {v for v, _ in sorted(totals.items(), key=lambda t: (-t[1], t[0]))[: spec.limit]}
        rows = [(v if v in top else OTHER, b) for v, b in rows]
    return build_result(spec, Counter(rows))
