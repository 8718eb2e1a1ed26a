"""Top paths as one ClickHouse query (text and bound parameters; pure, no I/O).

The inner query is the funnels' own per-segment event arrays (:func:`query_api.funnels.sql.entity_events_query`
over :meth:`PathsSpec.funnel_spec`: dedup, total order, segments by rule 2, anchor/node bits and the node label
as the breakdown value), so paths and funnels agree on what a segment is.  Per segment: the first anchor that
may start (``x.7``), the labelled node events after (or before) it, the first (last) ``depth`` labels; then
counts per path, most frequent first, and the number of anchored segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from query_api.funnels.sql import entity_events_query
from query_api.paths.spec import NO_LABEL, PathsSpec
from query_api.tenant_scope import Tenant

__all__ = ["PathsQuery", "paths_query"]


@dataclass(frozen=True, slots=True)
class PathsQuery:
    sql: str
    params: dict[str, Any]  # without org/project: scoped_query binds those from the tenant


def paths_query(spec: PathsSpec, tenant: Tenant) -> PathsQuery:
    """Rows ``(path, segments, anchored segments in total)``, at most ``limit``."""
    inner = entity_events_query(spec.funnel_spec(), tenant.org_id, tenant.project_id)
    params = {k: v for k, v in inner.params.items() if k not in ("org", "project")}
    params |= {"p_depth": spec.depth, "p_limit": spec.limit, "p_none": NO_LABEL}
    side = "arraySlice(evs, i + 1)" if spec.direction == "AFTER" else "arraySlice(evs, 1, i - 1)"
    take = (
        "arraySlice(labels, 1, {p_depth:UInt32})"
        if spec.direction == "AFTER"
        else "arraySlice(labels, greatest(1, toInt64(length(labels)) - {p_depth:UInt32} + 1))"
    )
    sql = f"""SELECT path, count() AS segments, sum(count()) OVER () AS anchored FROM (
    SELECT arrayFirstIndex(x -> bitTest(x.5, 0) AND x.7 = 1, evs) AS i,
           arrayMap(x -> x.9, arrayFilter(x -> bitTest(x.5, 1) AND x.9 != {{p_none:String}}, {side})) AS labels,
           {take} AS path
    FROM ({inner.sql})
    WHERE i > 0
)
GROUP BY path
ORDER BY segments DESC, path ASC
LIMIT {{p_limit:UInt32}}"""
    return PathsQuery(sql, params)
