"""Cohort membership, literally, in Python: the yardstick for :mod:`query_api.cohorts.sql` (pure).

Over one project's stored events (duplicates allowed): the events of the cohort's range
``[now - days, now + 1 day)`` as the funnels see them (:func:`~query_api.cohorts.persons.person_events`),
per person the count of each condition's matching events inside that condition's own range, then the
definition's AND/OR.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from query_api.cohorts.bounds import ms
from query_api.cohorts.definition import CohortDefinition, EventCondition, Group, Node, PropertyCondition
from query_api.cohorts.persons import person_events
from query_api.cohorts.sql import FUTURE_SLACK
from schemas.matchers import matches
from schemas.records import EventRecord

__all__ = ["members"]


def members(records: Iterable[EventRecord], definition: CohortDefinition, now: datetime) -> set[str]:
    leaves = list(definition.leaves())
    scanned = person_events(records, now - timedelta(days=definition.days), now + FUTURE_SLACK)
    counts: dict[str, list[int]] = {}
    for rec, ev in scanned:
        row = counts.setdefault(ev.person, [0] * len(leaves))
        for i, leaf in enumerate(leaves):
            if rec.ts_ms < ms(now - timedelta(days=leaf.days)):
                continue
            if isinstance(leaf, EventCondition):
                hit = matches(leaf.matcher, rec)
            else:
                hit = leaf.holds(leaf.property.value(rec))
            row[i] += hit
    index = {id(leaf): i for i, leaf in enumerate(leaves)}

    def holds(node: Node, row: list[int]) -> bool:
        if isinstance(node, Group):
            results = (holds(c, row) for c in node.children)
            return all(results) if node.op == "all" else any(results)
        n = row[index[id(node)]]
        if isinstance(node, PropertyCondition):
            return n > 0
        return n >= node.min and (node.max is None or n <= node.max)

    return {person for person, row in counts.items() if holds(definition.root, row)}
