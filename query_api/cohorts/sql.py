"""A cohort as a ClickHouse subquery of person keys (text and bound parameters; pure, no I/O).

Shape (one scan of the cohort's range, one row per person)::

    SELECT person FROM (
        SELECT <person> AS person, countIf(<condition 1> AND timestamp >= <from 1>) AS n1, ...
        FROM events AS <e> FINAL LEFT JOIN <anonymous-id merge> AS <a> ...
        WHERE <tenant> AND <range>
        GROUP BY person)
    WHERE <the definition's AND/OR over n1, n2, ...>

It is meant to sit inside another tenant-scoped query (``person IN (<sql>)``): it binds ``org``/``project``
like every query of :func:`query_api.tenant_scope.scoped_query`, and every other parameter name starts
with the caller's prefix (``cohort_`` by default), so it never clashes with the host query's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from query_api.cohorts.bounds import ms
from query_api.cohorts.definition import CohortDefinition, EventCondition, Group, Node, PropertyCondition
from query_api.cohorts.persons import person_source
from schemas.matchers import to_clickhouse

__all__ = ["FUTURE_SLACK", "CohortSql", "cohort_sql"]

# Events may carry times up to 23 h ahead (clock skew): a cohort "of the last n days" includes them.
FUTURE_SLACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CohortSql:
    """``SELECT person FROM ...``: one String column of person keys, with its bound parameters."""

    sql: str
    params: dict[str, Any]

    def user_ids(self) -> CohortSql:
        """The identified members only, as bare user ids (the funnels' ``CohortSubquery`` contract)."""
        return CohortSql(
            f"SELECT substring(person, 6) FROM ({self.sql}) WHERE startsWith(person, 'user:')", self.params
        )


def cohort_sql(definition: CohortDefinition, now: datetime, prefix: str = "cohort_") -> CohortSql:
    e, a = f"{prefix}e", f"{prefix}a"
    params: dict[str, Any] = {
        f"{prefix}from": ms(now - timedelta(days=definition.days)),
        f"{prefix}to": ms(now + FUTURE_SLACK),
    }
    src = person_source(e, a, f"{prefix}from", f"{prefix}to")
    counts: list[str] = []

    def leaf(node: EventCondition | PropertyCondition) -> str:
        i = len(counts) + 1
        name = f"{prefix}{i}"
        params[f"{name}_from"] = ms(now - timedelta(days=node.days))
        since = f"{e}.timestamp >= fromUnixTimestamp64Milli({{{name}_from:Int64}}, 'UTC')"
        if isinstance(node, EventCondition):
            cond, p = to_clickhouse(node.matcher, f"{name}_m")
            params.update(p)
            counts.append(f"countIf(({cond}) AND {since}) AS {name}_n")
            params[f"{name}_min"] = node.min
            test = f"{name}_n >= {{{name}_min:UInt64}}"
            if node.max is not None:
                params[f"{name}_max"] = node.max
                test += f" AND {name}_n <= {{{name}_max:UInt64}}"
            return f"({test})"
        value, p = node.property.sql(f"{e}.", f"{name}_key")
        params.update(p)
        counts.append(f"countIf(({_property_test(node, value, name, params)}) AND {since}) AS {name}_n")
        return f"({name}_n > 0)"

    def walk(node: Node) -> str:
        if isinstance(node, Group):
            joiner = " AND " if node.op == "all" else " OR "
            return "(" + joiner.join(walk(c) for c in node.children) + ")"
        return leaf(node)

    test = walk(definition.root)
    sql = (
        f"SELECT person FROM (SELECT {src.person} AS person, {', '.join(counts)} "
        f"FROM {src.from_sql} WHERE {src.where} GROUP BY person) WHERE {test}"
    )
    return CohortSql(sql, params)


def _property_test(node: PropertyCondition, value: str, name: str, params: dict[str, Any]) -> str:
    if node.op in ("set", "not_set"):
        return f"{value} {'!=' if node.op == 'set' else '='} ''"
    if node.op in ("in", "not_in"):
        params[f"{name}_vals"] = list(node.values)
        test = f"has({{{name}_vals:Array(String)}}, {value})"
        return test if node.op == "in" else f"NOT {test}"
    params[f"{name}_val"] = node.values[0]
    p = f"{{{name}_val:String}}"
    return {
        "eq": f"{value} = {p}",
        "neq": f"{value} != {p}",
        "prefix": f"startsWith({value}, {p})",
        "contains": f"position({value}, {p}) > 0",
    }[node.op]
