"""Retention, literally, in Python: the yardstick for :mod:`query_api.retention.sql` (pure, small data).

Over one project's stored events (duplicates allowed), as the funnels see them
(:func:`query_api.cohorts.persons.person_events`: dedup, order, rule-4 persons): per person the first
start event of the scan decides the cohort, and every return event's period gives a cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from query_api.cohorts.persons import person_events
from query_api.retention.result import RetentionResult, build_result
from query_api.retention.spec import RetentionSpec, index
from schemas.records import EventRecord

__all__ = ["evaluate"]


def evaluate(records: Iterable[EventRecord], spec: RetentionSpec, cohort: Set[str] | None = None) -> RetentionResult:
    """``cohort``: the person keys of the cohort filter (``None``: everyone)."""
    first: dict[str, int] = {}
    returns: dict[str, set[int]] = {}
    for _, ev in person_events(records, spec.scan_from, spec.scan_to, (spec.start, spec.returning)):
        if cohort is not None and ev.person not in cohort:
            continue
        if 1 in ev.steps:
            first.setdefault(ev.person, ev.ts)  # the events come in the total order
        if 2 in ev.steps:
            returns.setdefault(ev.person, set()).add(index(spec.period, ev.ts))
    sizes: dict[int, int] = {}
    counts: dict[tuple[int, int], int] = {}
    for person, ts in first.items():
        c = index(spec.period, ts)
        if not spec.first_cohort <= c <= spec.last_cohort:
            continue
        sizes[c] = sizes.get(c, 0) + 1
        for p in returns.get(person, ()):
            if 0 <= p - c <= spec.periods:
                counts[(c, p - c)] = counts.get((c, p - c), 0) + 1
    return build_result(spec, sizes, counts)
