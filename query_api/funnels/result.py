"""The answer to a funnel question, and the one place that turns per-step aggregates into it (rule 11).

Both evaluators end here: the Python reference aggregates its chosen paths with :func:`summarize`; the
ClickHouse evaluator aggregates in SQL and calls :func:`build_result` with the same :class:`StepAggregate`
values.  Medians are kept as their two middle values and means as (sum, n) until this module, so the
floats are computed by the same Python expressions on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from query_api.funnels.spec import CountBy, FunnelSpec, Mode

__all__ = [
    "NONE_VALUE",
    "BreakdownGroup",
    "EntityRef",
    "FunnelResult",
    "PathOutcome",
    "StepAggregate",
    "StepResult",
    "TimeStats",
    "build_result",
    "page_refs",
    "summarize",
]

NONE_VALUE = "(none)"  # breakdown value when the property is missing or empty


@dataclass(frozen=True, slots=True, order=True)
class EntityRef:
    """Who converted or dropped: the counted entity and the session to open (replay) for that step."""

    entity_id: str  # "user:<id>" | "anonymous:<id>" | "session:<id>" (users, totals); "session:<id>#<n>" (sessions)
    session_id: str


@dataclass(frozen=True, slots=True)
class StepResult:
    step: int  # 1-based
    name: str | None
    count: int
    conversion_from_first: float
    conversion_from_previous: float
    drop_off: int
    median_ms_from_previous: float | None
    mean_ms_from_previous: float | None
    median_ms_from_first: float | None
    mean_ms_from_first: float | None
    converted: tuple[EntityRef, ...]  # a page (entities_offset, entities_limit) of the sorted distinct refs
    dropped: tuple[EntityRef, ...]  # reached the previous step but not this one; ref to the previous step's session


@dataclass(frozen=True, slots=True)
class BreakdownGroup:
    value: str
    steps: tuple[StepResult, ...]


@dataclass(frozen=True, slots=True)
class FunnelResult:
    mode: Mode
    count_by: CountBy
    steps: tuple[StepResult, ...]
    breakdown: tuple[BreakdownGroup, ...] = ()  # empty without a breakdown; largest step-1 count first
    breakdown_truncated: bool = False  # more groups exist than breakdown_limit


@dataclass(frozen=True, slots=True)
class PathOutcome:
    """One counted unit (entity, or attempt with totals) and its chosen path (rule 8)."""

    entity_id: str
    times: tuple[int, ...]  # ms of the path's events, steps 1..level
    sessions: tuple[str, ...]  # session id of each path event
    breakdown: str

    @property
    def level(self) -> int:
        return len(self.times)


@dataclass(frozen=True, slots=True)
class TimeStats:
    n: int
    total: int
    median_low: int  # the lower and upper middle values (equal for odd n)
    median_high: int

    @classmethod
    def of(cls, values: Sequence[int]) -> TimeStats | None:
        if not values:
            return None
        xs = sorted(values)
        n = len(xs)
        return cls(n, sum(xs), xs[(n - 1) // 2], xs[n // 2])

    @property
    def median(self) -> float:
        return (self.median_low + self.median_high) / 2

    @property
    def mean(self) -> float:
        return self.total / self.n


@dataclass(frozen=True, slots=True)
class StepAggregate:
    count: int
    from_previous: TimeStats | None
    from_first: TimeStats | None
    converted: tuple[EntityRef, ...]  # already paged
    dropped: tuple[EntityRef, ...]  # already paged


def counts_from_levels(levels: Iterable[Sequence[int]], n_steps: int) -> list[int]:
    """Per-step counts from ``(level, units)`` rows (units reaching exactly ``level`` steps): step k counts
    the units of level >= k."""
    units = {int(level): int(n) for level, n in levels}
    return [sum(n for level, n in units.items() if level >= k) for k in range(1, n_steps + 1)]


def page_refs(refs: Iterable[EntityRef], spec: FunnelSpec) -> tuple[EntityRef, ...]:
    ordered = sorted(set(refs), key=lambda r: (r.entity_id, r.session_id))  # tuple keys: C-speed compares
    return tuple(ordered[spec.entities_offset : spec.entities_offset + spec.entities_limit])


def _aggregate(outcomes: Sequence[PathOutcome], spec: FunnelSpec) -> list[StepAggregate]:
    out = []
    for k in range(1, len(spec.steps) + 1):
        reached = [o for o in outcomes if o.level >= k]
        prev = TimeStats.of([o.times[k - 1] - o.times[k - 2] for o in reached]) if k > 1 else None
        first = TimeStats.of([o.times[k - 1] - o.times[0] for o in reached]) if k > 1 else None
        converted = page_refs((EntityRef(o.entity_id, o.sessions[k - 1]) for o in reached), spec)
        dropped = page_refs((EntityRef(o.entity_id, o.sessions[k - 2]) for o in outcomes if o.level == k - 1), spec)
        out.append(StepAggregate(len(reached), prev, first, converted, dropped if k > 1 else ()))
    return out


def summarize(outcomes: Sequence[PathOutcome], spec: FunnelSpec) -> FunnelResult:
    """The result from every counted unit's chosen path (units with level 0 are not passed)."""
    groups: dict[str, list[PathOutcome]] = {}
    if spec.breakdown is not None:
        for o in outcomes:
            groups.setdefault(o.breakdown, []).append(o)
    return build_result(spec, _aggregate(outcomes, spec), {v: _aggregate(os, spec) for v, os in groups.items()})


def _rate(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


def _steps(spec: FunnelSpec, aggs: Sequence[StepAggregate]) -> tuple[StepResult, ...]:
    out = []
    first_count = aggs[0].count
    for i, a in enumerate(aggs):
        prev_count = aggs[i - 1].count if i else a.count
        out.append(
            StepResult(
                step=i + 1,
                name=spec.steps[i].name,
                count=a.count,
                conversion_from_first=1.0 if i == 0 else _rate(a.count, first_count),
                conversion_from_previous=1.0 if i == 0 else _rate(a.count, prev_count),
                drop_off=0 if i == 0 else prev_count - a.count,
                median_ms_from_previous=None if a.from_previous is None else a.from_previous.median,
                mean_ms_from_previous=None if a.from_previous is None else a.from_previous.mean,
                median_ms_from_first=None if a.from_first is None else a.from_first.median,
                mean_ms_from_first=None if a.from_first is None else a.from_first.mean,
                converted=a.converted,
                dropped=a.dropped,
            )
        )
    return tuple(out)


def build_result(
    spec: FunnelSpec, overall: Sequence[StepAggregate], groups: Mapping[str, Sequence[StepAggregate]]
) -> FunnelResult:
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0].count, kv[0]))
    shown = ranked[: spec.breakdown_limit]
    return FunnelResult(
        mode=spec.mode,
        count_by=spec.count_by,
        steps=_steps(spec, overall),
        breakdown=tuple(BreakdownGroup(v, _steps(spec, aggs)) for v, aggs in shown),
        breakdown_truncated=len(ranked) > len(shown),
    )
