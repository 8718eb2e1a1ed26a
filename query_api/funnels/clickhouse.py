"""The production funnel evaluator: :func:`run_funnel` answers a :class:`FunnelSpec` from ClickHouse.

Everything is tenant-scoped by bound parameters taken from ``tenant`` (never from the spec); duplicates
are dropped in the query itself (first delivery, see :mod:`query_api.funnels.sql`), not by ``FINAL``.  In
every mode ClickHouse does the heavy part: scan, dedup, identity (rule 4), segments (rule 2), step/exclusion
matching, the total order and the grouping per counted entity.

Pure SQL (:mod:`query_api.funnels.sql`): ordered and strict funnels counted by users or sessions, with
global and per-step windows, exclusions, breakdowns and cohorts; for a caller that reads counts only
(``counts_only``), ordered funnels without breakdown by the cheaper levels-only query.  One query; per
entity one array pass per step (no per-event state machine), so time grows linearly with steps; Python
only turns the per-step aggregate rows into the result (:func:`~query_api.funnels.result.build_result`,
the reference's code).

Finished in Python, from compact per-entity event arrays that ClickHouse prepares
(:func:`~query_api.funnels.sql.entity_events_query`), with the reference's own per-entity code:
- any order (rule 10) needs a maximum matching between events and steps (an event may match several
  steps): a linear sliding window when every event of the entity matches at most one step
  (:func:`~query_api.funnels.kernel.any_order_path`), else the reference's matching
  (:func:`~query_api.funnels.reference.any_order_path`);
- totals (rule 9) is a sequential state machine over a person's events; ClickHouse's only sequential
  primitive (``arrayFold``) copies its growing state on every event, which is quadratic for people with
  long histories: :func:`~query_api.funnels.reference.totals_paths` (linear).

The answer equals :func:`query_api.funnels.reference.evaluate` on the same stored events
(tests/integration/test_funnel_clickhouse.py checks it on random data, with redeliveries in separate parts).
One difference is left to the storage: once ClickHouse merges the parts, ReplacingMergeTree keeps one copy
per event id (the last inserted), whereas the reference takes the first delivery.  Copies carry the same
content and at most the receive time differs, which only orders events tied on (timestamp, sequence): only
there, and only after a merge, can the kept copy's place differ from the first delivery's.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from query_api.analytics import Tenant
from query_api.funnels.events import FunnelEvent
from query_api.funnels.kernel import any_order_path as sliding_any_order_path
from query_api.funnels.reference import any_order_path, outcome, totals_paths
from query_api.funnels.result import (
    EntityRef,
    FunnelResult,
    PathOutcome,
    StepAggregate,
    TimeStats,
    build_result,
    counts_from_levels,
    summarize,
)
from query_api.funnels.spec import FunnelSpec
from query_api.funnels.sql import FunnelQuery, aggregate_query, counts_apply, counts_query, entity_events_query
from query_api.tenant_scope import scoped_query

__all__ = ["run_funnel"]


async def run_funnel(ch: Client, tenant: Tenant, spec: FunnelSpec, *, counts_only: bool = False) -> FunnelResult:
    """The answer to ``spec``.  ``counts_only``: the caller reads only counts, rates and drop-offs (a funnel
    chart), so where :func:`counts_query` applies (ordered, users or sessions, no breakdown) the chosen paths
    are not computed and the times and refs of the result are empty; elsewhere the full answer."""
    if counts_only and counts_apply(spec):
        levels = await _rows(ch, tenant, counts_query(spec, tenant.org_id, tenant.project_id))
        return _counts_result(spec, levels)
    if spec.mode == "any_order" or spec.count_by == "totals":
        rows = await _rows(ch, tenant, entity_events_query(spec, tenant.org_id, tenant.project_id))
        return await asyncio.to_thread(_finish_in_python, rows, spec)
    query = aggregate_query(spec, tenant.org_id, tenant.project_id)
    return _assemble(spec, await _rows(ch, tenant, query))


async def _rows(ch: Client, tenant: Tenant, query: FunnelQuery) -> Sequence[Sequence[Any]]:
    """Through :func:`scoped_query`: it checks that every table read carries the tenant condition and binds
    ``org``/``project`` from ``tenant`` itself."""
    params = {k: v for k, v in query.params.items() if k not in ("org", "project")}
    result = await scoped_query(ch, tenant, query.sql, params, query.settings)
    rows: Sequence[Sequence[Any]] = result.result_rows
    return rows


def _refs(raw: Sequence[Sequence[str]]) -> tuple[EntityRef, ...]:
    return tuple(EntityRef(str(e), str(s)) for e, s in raw)


def _step_aggregates(spec: FunnelSpec, rows: dict[int, Sequence[Any]]) -> list[StepAggregate]:
    out = []
    for k in range(1, len(spec.steps) + 1):
        row = rows.get(k)
        before = rows.get(k - 1)
        dropped = _refs(before[11]) if before is not None and k > 1 else ()
        if row is None:
            out.append(StepAggregate(0, None, None, (), dropped))
            continue
        n = int(row[3])
        prev = TimeStats(n, int(row[6]), int(row[4]), int(row[5])) if k > 1 else None
        first = TimeStats(n, int(row[9]), int(row[7]), int(row[8])) if k > 1 else None
        out.append(StepAggregate(n, prev, first, _refs(row[10]), dropped))
    return out


def _counts_result(spec: FunnelSpec, levels: Sequence[Sequence[Any]]) -> FunnelResult:
    """From :func:`counts_query` rows ``(level, units)``: counts only, no times and no refs."""
    counts = counts_from_levels(levels, len(spec.steps))
    return build_result(spec, [StepAggregate(c, None, None, (), ()) for c in counts], {})


def _assemble(spec: FunnelSpec, rows: Sequence[Sequence[Any]]) -> FunnelResult:
    overall: dict[int, Sequence[Any]] = {}
    groups: dict[str, dict[int, Sequence[Any]]] = {}
    for row in rows:
        k = int(row[2])
        if row[0]:
            overall[k] = row
        else:
            groups.setdefault(str(row[1]), {})[k] = row
    return build_result(
        spec, _step_aggregates(spec, overall), {v: _step_aggregates(spec, r) for v, r in groups.items()}
    )


@functools.lru_cache(maxsize=4096)
def _bits(mask: int) -> frozenset[int]:
    return frozenset(i + 1 for i in range(mask.bit_length()) if mask >> i & 1)


def _finish_in_python(rows: Sequence[Sequence[Any]], spec: FunnelSpec) -> FunnelResult:
    outcomes: list[PathOutcome] = []
    for entity, evs in rows:
        person = str(entity)
        events = [  # FunnelEvent(ts, sequence, received, event_id, session_id, person, segment, seg_pos,
            #              steps, exclusions, can_start, breakdown); the arrays come in the total order
            #              already, so the id (here its hash) is not needed any more
            FunnelEvent(ts, seq, rcv, "", sid, person, seg, spos, _bits(smask), _bits(xmask), can_start == 1, bd)
            for ts, seq, rcv, _, smask, xmask, can_start, sid, bd, seg, spos in evs
        ]
        if spec.count_by == "totals":
            paths = totals_paths(events, spec)
        else:
            fast = sliding_any_order_path(events, spec)
            paths = [any_order_path(events, spec) if fast is None else fast]
        outcomes.extend(outcome(person, events, p, spec) for p in paths if p)
    return summarize(outcomes, spec)
