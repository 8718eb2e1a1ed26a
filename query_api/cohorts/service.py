"""Cohorts for callers: resolve a saved or inline definition, count and list members, filter other questions.

Lifecycle of one use: the definition is read from Postgres inside the caller's tenant transaction (RLS;
and it must belong to the question's project, else the same "not found" as a random id), parsed
(:mod:`.definition`), turned into SQL (:mod:`.sql`) with ``now`` fixed once per question, and read from
ClickHouse through :meth:`QueryContext.query` (tenant-scoped, bound parameters).  Other areas filter with
:func:`cohort_filter` (person keys, for ``person IN (...)``) or :func:`funnel_cohort_filter` (the
funnels' ``CohortFilter``: user ids of the identified members).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from productgraph.db import tenant_transaction
from query_api.admin.repo.saved import get_saved
from query_api.admin.types import Cohort
from query_api.admin.validation import parse_id
from query_api.cohorts.bounds import check_int
from query_api.cohorts.definition import CohortDefinition, parse_definition
from query_api.cohorts.sql import CohortSql, cohort_sql
from query_api.context import QueryContext
from query_api.errors import InvalidInput, NotFound
from query_api.funnels.spec import CohortFilter, CohortSubquery
from query_api.tenant_scope import Tenant

__all__ = [
    "MemberPage",
    "cohort_filter",
    "cohort_members",
    "cohort_size",
    "funnel_cohort_filter",
    "load_cohort",
    "resolve_cohort",
]

MAX_MEMBERS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class MemberPage:
    persons: list[str]
    next_cursor: str | None


async def load_cohort(ctx: QueryContext, tenant: Tenant, cohort_id: str) -> CohortDefinition:
    """A saved cohort of the tenant's project (not found otherwise, whichever org or project has it)."""
    item_id = parse_id(cohort_id, "cohort")
    async with tenant_transaction(ctx.pool, tenant.org_id) as conn:
        item = await get_saved(conn, "cohort", Cohort, item_id)
    if str(item.project_id) != tenant.project_id:
        raise NotFound(f"cohort {cohort_id!r} not found")
    if not isinstance(item.definition, dict):
        raise InvalidInput("cohort: its saved definition is not an object")
    return parse_definition(item.definition)


async def resolve_cohort(
    ctx: QueryContext, tenant: Tenant, cohort_id: str | None, definition: object | None
) -> CohortDefinition:
    if (cohort_id is None) == (definition is None):
        raise InvalidInput("cohortId: give either cohortId or definition")
    if cohort_id is not None:
        return await load_cohort(ctx, tenant, cohort_id)
    return parse_definition(definition)


async def cohort_filter(ctx: QueryContext, tenant: Tenant, cohort_id: str, now: datetime) -> CohortSql:
    """The saved cohort as a subquery of person keys, for ``person IN ({sql})`` in another tenant query."""
    return cohort_sql(await load_cohort(ctx, tenant, cohort_id), now)


async def funnel_cohort_filter(ctx: QueryContext, tenant: Tenant, cohort_id: str, now: datetime) -> CohortFilter:
    """The saved cohort for :class:`query_api.funnels.FunnelSpec` (which filters on user ids)."""
    sub = (await cohort_filter(ctx, tenant, cohort_id, now)).user_ids()
    return CohortFilter(subquery=CohortSubquery(sub.sql, tuple(sorted(sub.params.items()))))


async def cohort_size(ctx: QueryContext, tenant: Tenant, definition: CohortDefinition, now: datetime) -> int:
    q = cohort_sql(definition, now)
    result = await ctx.query(tenant, f"SELECT count() FROM ({q.sql})", q.params)
    return int(result.result_rows[0][0])


def _cursor(person: str) -> str:
    return base64.urlsafe_b64encode(person.encode()).decode()


def _after(cursor: str | None) -> str:
    if cursor is None:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError:
        raise InvalidInput("after: not a cursor of this list") from None


async def cohort_members(
    ctx: QueryContext, tenant: Tenant, definition: CohortDefinition, now: datetime, first: int, after: str | None
) -> MemberPage:
    """Members in person-key order, ``first`` at a time after the cursor ``after``."""
    check_int("first", first, 1, MAX_MEMBERS_PAGE)
    q = cohort_sql(definition, now)
    sql = (
        f"SELECT person FROM ({q.sql}) WHERE person > {{members_after:String}} "
        "ORDER BY person LIMIT {members_limit:UInt32}"
    )
    params = {**q.params, "members_after": _after(after), "members_limit": first + 1}
    rows = [str(r[0]) for r in (await ctx.query(tenant, sql, params)).result_rows]
    page = rows[:first]
    return MemberPage(page, _cursor(page[-1]) if len(rows) > first else None)
