"""Journey metrics of one journey, from ``journey_sessions FINAL`` (rows the sessions processor keeps current;
see stream_processors/journeys.py for what a row says).

One tenant-scoped query (:meth:`query_api.context.QueryContext.query`, or any function with its signature)
groups the visible rows by (status as of ``now``, steps reached); :func:`metrics_from_counts` (pure) turns
those counts into the numbers.  A stored ``pending`` row whose segment has closed since (``closes_at <
now``) counts as ``bounced`` (one step) or ``dropped``, as :func:`stream_processors.journeys.resolved_status`
says, so the numbers never wait for a recomputation.

Definitions (../shared/design/analytics-semantics.md "Journeys", rule 6 and funnel rule 11):

* a row is a (session segment, journey) that entered the journey; ``total_sessions`` counts them;
* ``converted_sessions``: status converted; ``conversion_rate`` = converted / total (6 decimals, 0 without rows);
* ``avg_duration_ms``: mean of (last step - step 1) over converted rows (None without any);
* per step k (position order): ``reached`` = rows whose reported attempt reached at least k steps,
  ``drop_off`` = reached(k-1) - reached(k) (0 at step 1), ``conversion_from_first`` = reached(k) / reached(1).
  The reported attempt is the last one (or the converted one), as the status is;
* ``by_status``: rows per status, every status present (0 when none).

``since_ms``/``until_ms`` restrict to rows whose attempt entered step 1 in ``[since, until)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clickhouse_connect.driver.query import QueryResult

from query_api.tenant_scope import Tenant

__all__ = ["STATUSES", "JourneyMetrics", "QueryRunner", "StepMetrics", "journey_metrics", "metrics_from_counts"]

STATUSES = ("pending", "converted", "bounced", "dropped", "abandoned")


class QueryRunner(Protocol):
    """:meth:`query_api.context.QueryContext.query`: tenant-scoped, bound parameters."""

    def __call__(self, tenant: Tenant, sql: str, params: Mapping[str, Any] | None, /) -> Awaitable[QueryResult]: ...


@dataclass(frozen=True, slots=True)
class StepMetrics:
    position: int
    reached: int
    drop_off: int
    conversion_from_first: float


@dataclass(frozen=True, slots=True)
class JourneyMetrics:
    journey_id: str
    total_sessions: int
    converted_sessions: int
    conversion_rate: float
    avg_duration_ms: float | None
    by_status: dict[str, int]
    steps: tuple[StepMetrics, ...]


# Grouped by the stored status; the pending rows that closed since are counted apart (countIf/sumIf) and
# resolved in :func:`_resolve`: a status string computed per row cost about a sixth of the query.  The range
# stays in WHERE (not PREWHERE): it must apply to the latest version of a row, after FINAL.
_SQL = """
SELECT status, steps_reached, count() AS sessions, countIf(closes_at < {now:DateTime64(3, 'UTC')}) AS closed,
       sum(duration_ms) AS duration, sumIf(duration_ms, closes_at < {now:DateTime64(3, 'UTC')}) AS closed_duration
FROM journey_sessions FINAL
WHERE org_id = {org:UUID} AND project_id = {project:UUID} AND journey_id = {journey:String}
  AND entered_at >= {since:DateTime64(3, 'UTC')} AND entered_at < {until:DateTime64(3, 'UTC')}
GROUP BY status, steps_reached
"""


def _resolve(rows: Sequence[Sequence[Any]]) -> list[tuple[str, int, int, int]]:
    """(status as of now, steps reached, sessions, duration) from rows of :data:`_SQL`: a pending row whose
    segment closed counts as bounced (one step) or dropped."""
    out: list[tuple[str, int, int, int]] = []
    for status, steps, n, closed, duration, closed_duration in rows:
        steps, n, closed, duration, closed_duration = (
            int(steps),
            int(n),
            int(closed),
            int(duration),
            int(closed_duration),
        )
        if status == "pending" and closed:
            out.append(("bounced" if steps == 1 else "dropped", steps, closed, closed_duration))
            n, duration = n - closed, duration - closed_duration
        if n:
            out.append((str(status), steps, n, duration))
    return out


_MIN_MS, _MAX_MS = 0, 4_102_444_800_000  # 2100-01-01


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def journey_metrics(
    query: QueryRunner,
    tenant: Tenant,
    journey_id: str,
    positions: Sequence[int],
    now_ms: int,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> JourneyMetrics:
    """Metrics of ``journey_id`` (steps at ``positions``, in order) as of ``now_ms``."""
    params = {
        "journey": journey_id,
        "now": _dt(now_ms),
        "since": _dt(_MIN_MS if since_ms is None else since_ms),
        "until": _dt(_MAX_MS if until_ms is None else until_ms),
    }
    result = await query(tenant, _SQL, params)
    return metrics_from_counts(journey_id, positions, _resolve(result.result_rows))


def metrics_from_counts(
    journey_id: str, positions: Sequence[int], counts: Sequence[tuple[str, int, int, int]]
) -> JourneyMetrics:
    """``counts``: (status, steps reached, rows, sum of duration_ms) groups."""
    by_status = dict.fromkeys(STATUSES, 0)
    reached_exactly: dict[int, int] = {}
    converted = converted_duration = 0
    for status, steps, rows, duration in counts:
        by_status[status] = by_status.get(status, 0) + rows
        reached_exactly[steps] = reached_exactly.get(steps, 0) + rows
        if status == "converted":
            converted += rows
            converted_duration += duration
    total = sum(by_status.values())
    steps_out: list[StepMetrics] = []
    previous = 0
    for k, position in enumerate(positions, start=1):
        reached = sum(n for s, n in reached_exactly.items() if s >= k)
        first = steps_out[0].reached if steps_out else reached
        drop = previous - reached if k > 1 else 0
        steps_out.append(StepMetrics(position, reached, drop, round(reached / first, 6) if first else 0.0))
        previous = reached
    return JourneyMetrics(
        journey_id=journey_id,
        total_sessions=total,
        converted_sessions=converted,
        conversion_rate=round(converted / total, 6) if total else 0.0,
        avg_duration_ms=converted_duration / converted if converted else None,
        by_status=by_status,
        steps=tuple(steps_out),
    )
