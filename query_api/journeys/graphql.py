"""``journeyFunnel``: a defined journey's funnel from the processors' rollups (``journey_sessions``), also
the MCP tools ``pg.get_funnel`` and ``pg.get_drop_offs``.  The journey is read from Postgres (RLS: another
org's id is not found), its project becomes the tenant, and :func:`query_api.journeys.metrics.journey_metrics`
answers with one tenant-scoped query; ``dropped`` lists the segments whose reported attempt stopped at a
step (bounced or dropped, as of now), newest entry first, with their replay arguments."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.types import Info

from query_api.admin.access import reading
from query_api.admin.repo import journeys as journey_repo
from query_api.admin.validation import parse_id
from query_api.context import QueryContext
from query_api.errors import InvalidInput
from query_api.journeys.metrics import journey_metrics

__all__ = ["JourneyFunnel", "JourneyQuery"]

MAX_RANGE = timedelta(days=400)
_DROPPED_SQL = """
SELECT session_id, segment, steps_reached, entered_at
FROM journey_sessions FINAL
WHERE org_id = {org:UUID} AND project_id = {project:UUID} AND journey_id = {journey:String} AND is_deleted = 0
  AND steps_reached <= {steps:UInt32} AND status IN ('pending', 'bounced', 'dropped')
  AND (status != 'pending' OR closes_at < {now:DateTime64(3, 'UTC')})
  AND entered_at >= {since:DateTime64(3, 'UTC')} AND entered_at < {until:DateTime64(3, 'UTC')}
ORDER BY steps_reached, entered_at DESC, session_id, segment
LIMIT {limit:UInt32} BY steps_reached"""


@strawberry.type
class StatusCount:
    status: str
    sessions: int


@strawberry.type
class DroppedSession:
    session_id: str
    segment: int
    entered_at: datetime


@strawberry.type
class JourneyFunnelStep:
    position: int
    step_id: strawberry.ID
    name: str
    reached: int = strawberry.field(description="segments whose reported attempt reached this step")
    drop_off: int = strawberry.field(description="reached at the previous step - reached here (0 at step 1)")
    conversion_from_first: float
    conversion_from_previous: float
    dropped: list[DroppedSession] = strawberry.field(
        description="newest segments that stopped at this step (bounced or dropped), for replay"
    )


@strawberry.type
class JourneyFunnel:
    journey_id: strawberry.ID
    project_id: strawberry.ID
    name: str
    total_sessions: int
    converted_sessions: int
    conversion_rate: float
    avg_duration_ms: float | None
    by_status: list[StatusCount]
    steps: list[JourneyFunnelStep]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def journey_funnel(
    ctx: QueryContext,
    journey_id: str,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    dropped_per_step: int = 5,
) -> JourneyFunnel:
    if not 0 <= dropped_per_step <= 100:
        raise InvalidInput("droppedPerStep: must be between 0 and 100")
    journey = ctx.journeys.get(ctx.token.org_id, journey_id)
    if journey is None:
        async with reading(ctx) as conn:
            journey = await journey_repo.get_journey(conn, parse_id(journey_id, "journey"))
        ctx.journeys.put(ctx.token.org_id, journey_id, journey)
    now = datetime.now(UTC)
    until = _utc(date_to) if date_to else now + timedelta(days=1)
    since = _utc(date_from) if date_from else until - timedelta(days=30)
    if since >= until:
        raise InvalidInput("dateFrom: must be before dateTo")
    if until - since > MAX_RANGE:
        raise InvalidInput(f"dateFrom/dateTo: range longer than {MAX_RANGE.days} days")
    tenant = await ctx.tenant(str(journey.project_id))
    steps = sorted(journey.steps, key=lambda s: s.position)
    now_ms = int(time.time() * 1000)
    metrics = journey_metrics(
        ctx.query, tenant, str(journey.id), [s.position for s in steps], now_ms,
        int(since.timestamp() * 1000), int(until.timestamp() * 1000),
    )  # fmt: skip
    dropped_by_step: dict[int, list[DroppedSession]] = {}
    if dropped_per_step:  # every step's newest stopped segments in one read, next to the metrics' read
        params = {"journey": str(journey.id), "steps": len(steps), "now": now, "since": since, "until": until,
                  "limit": dropped_per_step}  # fmt: skip
        m, result = await asyncio.gather(metrics, ctx.query(tenant, _DROPPED_SQL, params))
        for r in result.result_rows:
            session = DroppedSession(session_id=r[0], segment=int(r[1]), entered_at=_utc(r[3]))
            dropped_by_step.setdefault(int(r[2]), []).append(session)
    else:
        m = await metrics
    out_steps: list[JourneyFunnelStep] = []
    for k, (step, sm) in enumerate(zip(steps, m.steps, strict=True), start=1):
        dropped = dropped_by_step.get(k, [])
        previous = out_steps[-1].reached if out_steps else sm.reached
        out_steps.append(
            JourneyFunnelStep(
                position=step.position, step_id=step.id, name=step.name, reached=sm.reached, drop_off=sm.drop_off,
                conversion_from_first=sm.conversion_from_first,
                conversion_from_previous=round(sm.reached / previous, 6) if previous else 0.0, dropped=dropped,
            )
        )  # fmt: skip
    return JourneyFunnel(
        journey_id=journey.id,
        project_id=journey.project_id,
        name=journey.name,
        total_sessions=m.total_sessions,
        converted_sessions=m.converted_sessions,
        conversion_rate=m.conversion_rate,
        avg_duration_ms=m.avg_duration_ms,
        by_status=[StatusCount(status=s, sessions=n) for s, n in m.by_status.items()],
        steps=out_steps,
    )


@strawberry.type
class JourneyQuery:
    @strawberry.field(
        description="A defined journey's funnel from the processors' rollups: sessions entering it, converted, "
        "rate, mean time to convert, sessions per status and per step reach / drop-off, with the newest "
        "segments that stopped at each step (for replay). Range: attempts entering step 1 in [dateFrom, "
        "dateTo), default the last 30 days."
    )
    async def journey_funnel(
        self,
        info: Info[QueryContext, None],
        journey_id: strawberry.ID,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        dropped_per_step: int = 5,
    ) -> JourneyFunnel:
        return await journey_funnel(info.context, str(journey_id), date_from, date_to, dropped_per_step)
