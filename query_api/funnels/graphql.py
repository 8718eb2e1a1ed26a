"""The ``funnel`` GraphQL field: the question as JSON (the same shape :func:`parse_funnel_spec` and the MCP
tool take), the answer fully typed.  Thin: tenant from the token, spec validated, :func:`run_funnel`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from query_api.context import QueryContext
from query_api.funnels.clickhouse import run_funnel
from query_api.funnels.result import FunnelResult, StepResult
from query_api.funnels.spec import parse_funnel_spec

__all__ = ["FunnelQuery", "counts_only"]

DEFAULT_RANGE = timedelta(days=30)  # like PostHog/Mixpanel: the last 30 days when no range is given
# What a funnel chart reads of a step: answered without the chosen paths (run_funnel(counts_only=True)).
_COUNT_STEP_FIELDS = frozenset(
    {"__typename", "step", "name", "count", "conversionFromFirst", "conversionFromPrevious", "dropOff"}
)


def _fields(selections: Iterable[Selection]) -> Iterator[SelectedField]:
    """The fields of a selection set, fragments (named or inline) flattened."""
    for s in selections:
        if isinstance(s, SelectedField):
            yield s
        else:
            yield from _fields(s.selections)


def counts_only(info: Info[QueryContext, None]) -> bool:
    """True when the request reads no time or entity field of any step (overall or per breakdown group)."""

    def steps_ok(steps: SelectedField) -> bool:
        return all(f.name in _COUNT_STEP_FIELDS for f in _fields(steps.selections))

    for funnel in _fields(info.selected_fields):
        for f in _fields(funnel.selections):
            if f.name == "steps" and not steps_ok(f):
                return False
            if f.name == "breakdown" and not all(g.name != "steps" or steps_ok(g) for g in _fields(f.selections)):
                return False
    return True


@strawberry.type
class FunnelEntity:
    entity_id: str
    session_id: str


@strawberry.type
class FunnelStepResult:
    step: int
    name: str | None
    count: int
    conversion_from_first: float
    conversion_from_previous: float
    drop_off: int
    median_ms_from_previous: float | None
    mean_ms_from_previous: float | None
    median_ms_from_first: float | None
    mean_ms_from_first: float | None
    converted: list[FunnelEntity]
    dropped: list[FunnelEntity]


@strawberry.type
class FunnelBreakdownGroup:
    value: str
    steps: list[FunnelStepResult]


@strawberry.type
class Funnel:
    mode: str
    count_by: str
    steps: list[FunnelStepResult]
    breakdown: list[FunnelBreakdownGroup]
    breakdown_truncated: bool


def _step(s: StepResult) -> FunnelStepResult:
    return FunnelStepResult(
        step=s.step,
        name=s.name,
        count=s.count,
        conversion_from_first=s.conversion_from_first,
        conversion_from_previous=s.conversion_from_previous,
        drop_off=s.drop_off,
        median_ms_from_previous=s.median_ms_from_previous,
        mean_ms_from_previous=s.mean_ms_from_previous,
        median_ms_from_first=s.median_ms_from_first,
        mean_ms_from_first=s.mean_ms_from_first,
        converted=[FunnelEntity(entity_id=e.entity_id, session_id=e.session_id) for e in s.converted],
        dropped=[FunnelEntity(entity_id=e.entity_id, session_id=e.session_id) for e in s.dropped],
    )


def to_graphql(r: FunnelResult) -> Funnel:
    return Funnel(
        mode=r.mode,
        count_by=r.count_by,
        steps=[_step(s) for s in r.steps],
        breakdown=[FunnelBreakdownGroup(value=g.value, steps=[_step(s) for s in g.steps]) for g in r.breakdown],
        breakdown_truncated=r.breakdown_truncated,
    )


@strawberry.type
class FunnelQuery:
    @strawberry.field(
        description="An ad-hoc funnel (2-50 steps; ordered, strict or any_order; users, sessions or totals; "
        "windows, exclusions, breakdown, date range). `spec` is JSON: {steps: [matcher | {matcher, window_ms, "
        "name}], mode, count_by, window_ms, exclusions, breakdown, date_from, date_to (default: the last 30 days), "
        "entities_limit}. `cohortId`: only persons of that saved cohort (evaluated now)."
    )
    async def funnel(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        spec: JSON,
        cohort_id: strawberry.ID | None = None,
    ) -> Funnel:
        # here, not at the top: the cohorts code imports the funnel spec types (query_api.funnels)
        from query_api.cohorts.service import funnel_cohort_filter

        ctx = info.context
        tenant = await ctx.tenant(str(project_id))
        if not isinstance(spec, dict):
            raise ValueError("spec: must be an object")
        now = datetime.now(UTC)
        question = {"date_from": (now - DEFAULT_RANGE).isoformat(), "date_to": now.isoformat(), **spec}
        parsed = parse_funnel_spec(question)  # FunnelSpecError is a ValueError: shown to the caller as is
        if cohort_id is not None:
            if parsed.cohort is not None:
                raise ValueError("cohortId: give either cohortId or spec.cohort_user_ids")
            parsed = replace(parsed, cohort=await funnel_cohort_filter(ctx, tenant, str(cohort_id), now))
        return to_graphql(await run_funnel(ctx.clickhouse, tenant, parsed, counts_only=counts_only(info)))
