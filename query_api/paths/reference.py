"""Top paths, literally, in Python: the yardstick for :mod:`query_api.paths.sql` (pure, small data).

The events, segments and labels are the funnels' (:func:`query_api.cohorts.persons.person_events` with the
spec's own funnel scan), so both evaluators see the same segments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from query_api.cohorts.persons import person_events
from query_api.funnels.events import FunnelEvent
from query_api.paths.result import PathsResult, build_result
from query_api.paths.spec import NO_LABEL, PathsSpec
from schemas.records import EventRecord

__all__ = ["evaluate"]


def evaluate(records: Iterable[EventRecord], spec: PathsSpec) -> PathsResult:
    segments: dict[tuple[str, int], list[FunnelEvent]] = {}
    fs = spec.funnel_spec()
    scanned = person_events(
        records, fs.date_from, spec.scan_to, (spec.step, spec.node_matcher),
        start_before=spec.date_to, timeout_ms=spec.session_timeout_ms, breakdown=spec.label_column,
    )  # fmt: skip
    for _, ev in scanned:
        segments.setdefault((ev.session_id, ev.segment), []).append(ev)
    counts: Counter[tuple[str, ...]] = Counter()
    for evs in segments.values():
        anchor = next((i for i, e in enumerate(evs) if 1 in e.steps and e.can_start), None)
        if anchor is None:
            continue
        side = evs[anchor + 1 :] if spec.direction == "AFTER" else evs[:anchor]
        labels = [e.breakdown for e in side if 2 in e.steps and e.breakdown != NO_LABEL]
        counts[tuple(labels[: spec.depth] if spec.direction == "AFTER" else labels[-spec.depth :])] += 1
    return build_result(spec, counts)
