"""Admin reads: the org, its projects, keys, members, tokens, catalog, journeys, saved analyses, audit log.

Every resolver opens the org's tenant transaction through :func:`query_api.admin.access.reading` with the
role it needs (viewer unless noted) and hands the connection to a repository function.
"""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from query_api.admin.access import reading
from query_api.admin.repo import audit as audit_repo
from query_api.admin.repo import journeys as journey_repo
from query_api.admin.repo import members as member_repo
from query_api.admin.repo import projects as project_repo
from query_api.admin.repo import saved as saved_repo
from query_api.admin.types import (
    AccessToken,
    ApiKey,
    AuditEntry,
    Capability,
    Cohort,
    Feature,
    Journey,
    Me,
    Member,
    Organization,
    Project,
    SavedFunnel,
)
from query_api.admin.validation import parse_id
from query_api.context import QueryContext
from query_api.errors import InvalidInput

__all__ = ["AdminQuery"]

Ctx = Info[QueryContext, None]
MAX_AUDIT_PAGE = 200


async def _projects(info: Ctx) -> list[Project]:
    async with reading(info.context) as conn:
        return await project_repo.list_projects(conn)


async def _project(info: Ctx, ref: strawberry.ID) -> Project:
    async with reading(info.context) as conn:
        return await project_repo.get_project(conn, str(ref))


@strawberry.type
class AdminQuery:
    @strawberry.field(description="The caller's organisation.")
    async def organization(self, info: Ctx) -> Organization:
        async with reading(info.context) as conn:
            return await project_repo.organization(conn)

    @strawberry.field(description="Who the access token is: org, effective role, member.")
    async def me(self, info: Ctx) -> Me:
        t = info.context.token
        async with reading(info.context) as conn:
            org = await project_repo.organization(conn)
            user = await member_repo.member_by_user(conn, t.user_id) if t.user_id else None
        return Me(organization=org, token_id=strawberry.ID(t.token_id), role=t.role, user=user)

    @strawberry.field(description="Projects of the caller's organisation.")
    async def projects(self, info: Ctx) -> list[Project]:
        return await _projects(info)

    @strawberry.field(description="One project by id or slug.")
    async def project(self, info: Ctx, id: strawberry.ID) -> Project:
        return await _project(info, id)

    @strawberry.field(description="Alias of `projects` (the seed calls them products).")
    async def products(self, info: Ctx) -> list[Project]:
        return await _projects(info)

    @strawberry.field(description="Alias of `project`.")
    async def product(self, info: Ctx, id: strawberry.ID) -> Project:
        return await _project(info, id)

    @strawberry.field(description="API keys of a project (admin); secrets are never shown again.")
    async def api_keys(self, info: Ctx, project_id: strawberry.ID) -> list[ApiKey]:
        async with reading(info.context, "admin") as conn:
            return await project_repo.list_api_keys(conn, await project_repo.project_id(conn, str(project_id)))

    @strawberry.field(description="Members of the organisation.")
    async def members(self, info: Ctx) -> list[Member]:
        async with reading(info.context) as conn:
            return await member_repo.list_members(conn)

    @strawberry.field(description="Query-API access tokens of the organisation (admin).")
    async def access_tokens(self, info: Ctx) -> list[AccessToken]:
        async with reading(info.context, "admin") as conn:
            return await member_repo.list_tokens(conn)

    @strawberry.field(description="Capabilities of a project (the seed's catalog).")
    async def capabilities(self, info: Ctx, project_id: strawberry.ID) -> list[Capability]:
        async with reading(info.context) as conn:
            return await journey_repo.list_capabilities(conn, await project_repo.project_id(conn, str(project_id)))

    @strawberry.field(description="Features of a project.")
    async def features(self, info: Ctx, project_id: strawberry.ID) -> list[Feature]:
        async with reading(info.context) as conn:
            return await journey_repo.list_features(conn, await project_repo.project_id(conn, str(project_id)))

    @strawberry.field(description="Journeys of a project with their ordered steps.")
    async def journeys(self, info: Ctx, project_id: strawberry.ID, include_inactive: bool = False) -> list[Journey]:
        async with reading(info.context) as conn:
            pid = await project_repo.project_id(conn, str(project_id))
            return await journey_repo.list_journeys(conn, pid, include_inactive)

    @strawberry.field(description="One journey by id.")
    async def journey(self, info: Ctx, id: strawberry.ID) -> Journey:
        journey_id = parse_id(id, "journey")
        async with reading(info.context) as conn:
            return await journey_repo.get_journey(conn, journey_id)

    @strawberry.field(description="Saved funnels of a project.")
    async def saved_funnels(self, info: Ctx, project_id: strawberry.ID) -> list[SavedFunnel]:
        async with reading(info.context) as conn:
            pid = await project_repo.project_id(conn, str(project_id))
            return await saved_repo.list_saved(conn, "funnel", SavedFunnel, pid)

    @strawberry.field(description="One saved funnel by id.")
    async def saved_funnel(self, info: Ctx, id: strawberry.ID) -> SavedFunnel:
        item_id = parse_id(id, "saved funnel")
        async with reading(info.context) as conn:
            return await saved_repo.get_saved(conn, "funnel", SavedFunnel, item_id)

    @strawberry.field(description="Saved cohorts of a project.")
    async def cohorts(self, info: Ctx, project_id: strawberry.ID) -> list[Cohort]:
        async with reading(info.context) as conn:
            pid = await project_repo.project_id(conn, str(project_id))
            return await saved_repo.list_saved(conn, "cohort", Cohort, pid)

    @strawberry.field(description="One saved cohort by id.")
    async def cohort(self, info: Ctx, id: strawberry.ID) -> Cohort:
        item_id = parse_id(id, "cohort")
        async with reading(info.context) as conn:
            return await saved_repo.get_saved(conn, "cohort", Cohort, item_id)

    @strawberry.field(description="Admin mutations, newest first (admin); page with `before` = last createdAt.")
    async def audit_log(self, info: Ctx, limit: int = 50, before: datetime | None = None) -> list[AuditEntry]:
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput(f"limit: between 1 and {MAX_AUDIT_PAGE}")
        async with reading(info.context, "admin") as conn:
            return await audit_repo.list_audit(conn, limit, before)
