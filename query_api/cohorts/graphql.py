"""GraphQL fields of cohorts: ``cohortSize`` and ``cohortMembers``, for a saved cohort or an inline definition.
Thin: tenant from the token, cohort resolved and parsed, :mod:`.service` answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api.cohorts import service
from query_api.context import QueryContext

__all__ = ["CohortQuery"]

_DEFINITION = (
    "Inline cohort definition (JSON), instead of cohortId: {did_event: matcher, min, max, days} | "
    "{property: path, op, value | values, days} | {all: [...]} | {any: [...]}."
)


@strawberry.type
class CohortMemberPage:
    persons: list[str] = strawberry.field(description="Person keys (rule 4): user:<id>, anonymous:<id>, session:<id>.")
    next_cursor: str | None


@strawberry.type
class CohortQuery:
    @strawberry.field(description="How many persons are in a cohort now (saved cohortId or inline definition).")
    async def cohort_size(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        cohort_id: strawberry.ID | None = None,
        definition: Annotated[JSON | None, strawberry.argument(description=_DEFINITION)] = None,
    ) -> int:
        tenant = await info.context.tenant(str(project_id))
        cohort = await service.resolve_cohort(
            info.context, tenant, None if cohort_id is None else str(cohort_id), definition
        )
        return await service.cohort_size(info.context, tenant, cohort, datetime.now(UTC))

    @strawberry.field(description="A cohort's members in person-key order, `first` (1-1000) after the cursor.")
    async def cohort_members(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        cohort_id: strawberry.ID | None = None,
        definition: Annotated[JSON | None, strawberry.argument(description=_DEFINITION)] = None,
        first: int = 100,
        after: str | None = None,
    ) -> CohortMemberPage:
        tenant = await info.context.tenant(str(project_id))
        cohort = await service.resolve_cohort(
            info.context, tenant, None if cohort_id is None else str(cohort_id), definition
        )
        page = await service.cohort_members(info.context, tenant, cohort, datetime.now(UTC), first, after)
        return CohortMemberPage(persons=page.persons, next_cursor=page.next_cursor)
