"""Retention as one ClickHouse query (text and bound parameters; pure, no I/O).

Inner: the scanned events that match the start or the return matcher, each with its person (rule 4, from
:func:`query_api.cohorts.persons.person_source`) and, with a cohort filter, only persons of the cohort's
subquery.  Middle: per person, the cohort (period of the first start event) and the distinct offsets of
return periods from it (0..periods).  Outer: per (cohort, offset) the number of persons, with offset -1
carrying the cohort size.  Python turns the rows into the triangle (:func:`~.result.build_result`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from query_api.cohorts.persons import person_source
from query_api.cohorts.sql import CohortSql
from query_api.retention.spec import RetentionSpec, index_sql
from schemas.matchers import to_clickhouse

__all__ = ["RetentionQuery", "retention_query"]


@dataclass(frozen=True, slots=True)
class RetentionQuery:
    sql: str
    params: dict[str, Any]


def retention_query(spec: RetentionSpec, cohort: CohortSql | None = None) -> RetentionQuery:
    """Rows ``(cohort index, offset, persons)``; offset -1 is the cohort's size."""
    src = person_source("e", "a", "r_from", "r_to")
    start, p1 = to_clickhouse(spec.start, "rs")
    ret, p2 = to_clickhouse(spec.returning, "rr")
    params: dict[str, Any] = {
        "r_from": spec.scan_from_ms,
        "r_to": spec.scan_to_ms,
        "r_periods": spec.periods,
        "r_first": spec.first_cohort,
        "r_last": spec.last_cohort,
        **p1,
        **p2,
    }
    keep = ""
    if cohort is not None:
        keep = f" AND person IN ({cohort.sql})"
        params.update(cohort.params)
    period_of_ts = index_sql(spec.period, "ts")
    sql = f"""SELECT c, n, count() FROM (
    SELECT person,
           {index_sql(spec.period, "minIf(ts, is_start = 1)")} AS c,
           arrayFilter(k -> k >= 0 AND k <= {{r_periods:Int64}},
                       arrayMap(p -> toInt64(p) - c, groupUniqArrayIf({period_of_ts}, is_ret = 1))) AS ns
    FROM (
        SELECT {src.person} AS person, toUnixTimestamp64Milli(e.timestamp) AS ts,
               toUInt8({start}) AS is_start, toUInt8({ret}) AS is_ret
        FROM {src.from_sql}
        WHERE {src.where} AND (is_start = 1 OR is_ret = 1){keep}
    )
    GROUP BY person
    HAVING countIf(is_start = 1) > 0 AND c >= {{r_first:Int64}} AND c <= {{r_last:Int64}}
)
ARRAY JOIN arrayPushFront(ns, -1) AS n
GROUP BY c, n"""
    return RetentionQuery(sql, params)
