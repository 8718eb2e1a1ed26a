"""Trends as one ClickHouse query (text and bound parameters; pure, no I/O).

``base``: the tenant's events in the range that pass the filters (and, with a cohort, whose person is in
the cohort's subquery), each with its bucket start and breakdown value; ``top``: the ``limit`` values with
most events (ties by value); final: counts per (bucket, value or ``(other)``).  Empty buckets are filled
in Python (:func:`~.result.build_result`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from query_api.cohorts.persons import person_source
from query_api.cohorts.sql import CohortSql
from query_api.trends.spec import ALL, NONE, OTHER, TrendsSpec, bucket_sql
from schemas.matchers import to_clickhouse

__all__ = ["TrendsQuery", "trends_query"]


@dataclass(frozen=True, slots=True)
class TrendsQuery:
    sql: str
    params: dict[str, Any]


def trends_query(spec: TrendsSpec, cohort: CohortSql | None = None) -> TrendsQuery:
    """Rows ``(group, bucket start ms, events)``."""
    cond, params = to_clickhouse(spec.matcher, "tf")
    params |= {"t_from": spec.from_ms, "t_to": spec.to_ms, "t_limit": spec.limit, "t_none": NONE, "t_other": OTHER}
    if cohort is None:
        source = (
            "events AS e FINAL WHERE e.org_id = {org:UUID} AND e.project_id = {project:UUID} "
            "AND e.timestamp >= fromUnixTimestamp64Milli({t_from:Int64}, 'UTC') "
            "AND e.timestamp < fromUnixTimestamp64Milli({t_to:Int64}, 'UTC')"
        )
        person = ""
    else:
        src = person_source("e", "a", "t_from", "t_to")
        source = f"{src.from_sql} WHERE {src.where} AND person IN ({cohort.sql})"
        person = f", {src.person} AS person"
        params |= cohort.params
    if spec.breakdown is None:
        params["t_all"] = ALL
        value = "{t_all:String}"
    else:
        raw, p = spec.breakdown.sql("e.", "t_key")
        params |= p
        value = f"if({raw} = '', {{t_none:String}}, {raw})"
    base = (
        f"base AS (SELECT {bucket_sql(spec.interval, 'toUnixTimestamp64Milli(e.timestamp)')} AS b, {value} AS v"
        f"{person} FROM {source} AND ({cond}))"
    )
    if spec.breakdown is None:
        return TrendsQuery(f"WITH {base}\nSELECT v, b, count() FROM base GROUP BY v, b", params)
    sql = f"""WITH {base},
top AS (SELECT v FROM base GROUP BY v ORDER BY count() DESC, v ASC LIMIT {{t_limit:UInt32}})
SELECT if(v IN (SELECT v FROM top), v, {{t_other:String}}) AS g, b, count() FROM base GROUP BY g, b"""
    return TrendsQuery(sql, params)
