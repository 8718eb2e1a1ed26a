"""Admin mutations on the organisation: projects and their settings, API keys, members, access tokens.

Each resolver opens :func:`query_api.admin.access.writing` with the role it needs (so a caller without it
learns nothing, not even about its arguments), validates the arguments (pure checks), calls the
repository and writes the audit row.  Role rules beyond the minimum: nobody grants a role
above their own; only an owner creates, changes or removes an owner; the last owner stays.

Deleting a project is the one irreversible mutation (its events and sessions go too), so it needs an
owner and the project's slug typed again.  Order: the Postgres rows are deleted (not yet committed), the
ClickHouse deletes are queued (ClickHouse mutations, durable once accepted), then the transaction commits
with its audit row; if ClickHouse refuses, nothing is committed and the call can be repeated.  The
project's Redis keys (live sessions, gateway buckets and dedup ids) are removed after the commit; if that
fails the keys still expire by their TTLs (at most the dedup window, a day by default).  Events still in
Kafka for the project at that moment may land in ClickHouse afterwards; its API keys are gone, so
nothing new is accepted after the gateway's key cache TTL.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry
from strawberry.types import Info

from productgraph.admin import ROLES, role_at_least
from productgraph.retention import purge_project
from query_api.admin.access import writing
from query_api.admin.repo import members as member_repo
from query_api.admin.repo import projects as project_repo
from query_api.admin.types import (
    AccessToken,
    ApiKey,
    Member,
    MemberInvite,
    NewAccessToken,
    NewApiKey,
    Organization,
    Project,
    ProjectSettingsInput,
)
from query_api.admin.validation import parse_id, validate_email, validate_settings, validate_slug, validate_text
from query_api.context import QueryContext
from query_api.errors import Forbidden, InvalidInput, NotFound
from query_api.tenant_scope import delete_project_keys

__all__ = ["OrgMutation"]

log = logging.getLogger(__name__)
REDIS_CLEANUP_TIMEOUT_S = 30.0

Ctx = Info[QueryContext, None]
MAX_TOKEN_DAYS = 3650


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role: one of {', '.join(ROLES)}")
    return role


def _expiry(days: int | None) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(f"expiresInDays: between 1 and {MAX_TOKEN_DAYS}, or null for no expiry")
    return datetime.now(UTC) + timedelta(days=days)


def _settings_changes(settings: ProjectSettingsInput | None) -> dict[str, Any]:
    if settings is None:
        return {}
    return {k: v for k, v in vars(settings).items() if v is not strawberry.UNSET}


def _grantable(actor_role: str, role: str) -> None:
    if not role_at_least(actor_role, role):
        raise Forbidden(f"forbidden: role {role} is above your own ({actor_role})")


@strawberry.type
class OrgMutation:
    @strawberry.mutation(description="Rename the organisation (owner).")
    async def rename_organization(self, info: Ctx, name: str) -> Organization:
        async with writing(info.context, "owner") as w:
            name = validate_text(name, "name")
            org = await project_repo.rename_organization(w.conn, name)
            await w.audit("organization.rename", "organization", str(org.id), name=name)
        return org

    @strawberry.mutation(description="Create a project (admin).")
    async def create_project(
        self, info: Ctx, name: str, slug: str, settings: ProjectSettingsInput | None = None
    ) -> Project:
        async with writing(info.context, "admin") as w:
            name, slug = validate_text(name, "name"), validate_slug(slug)
            overrides = validate_settings({}, _settings_changes(settings))
            project = await project_repo.create_project(w.conn, name, slug, overrides)
            await w.audit("project.create", "project", str(project.id), str(project.id), name=name, slug=slug)
        return project

    @strawberry.mutation(description="Rename a project (admin); its slug and id stay.")
    async def rename_project(self, info: Ctx, id: strawberry.ID, name: str) -> Project:
        async with writing(info.context, "admin") as w:
            name = validate_text(name, "name")
            project = await project_repo.rename_project(w.conn, str(id), name)
            await w.audit("project.rename", "project", str(project.id), str(project.id), name=name)
        return project

    @strawberry.mutation(description="Change project settings (admin); null resets a field to its default.")
    async def update_project_settings(self, info: Ctx, id: strawberry.ID, settings: ProjectSettingsInput) -> Project:
        async with writing(info.context, "admin") as w:
            changes = _settings_changes(settings)
            pid, current = await project_repo.stored_settings(w.conn, str(id))
            overrides = validate_settings(current, changes)
            project = await project_repo.set_settings(w.conn, pid, overrides)
            await w.audit("project.update_settings", "project", pid, pid, changes=changes)
        return project

    @strawberry.mutation(
        description="Delete a project with everything it has: keys, catalog, journeys, saved analyses, and its "
        "events and sessions (owner; irreversible).  confirmSlug must repeat the project's slug."
    )
    async def delete_project(self, info: Ctx, id: strawberry.ID, confirm_slug: str) -> Project:
        ctx = info.context
        async with writing(ctx, "owner") as w:
            project = await project_repo.get_project(w.conn, str(id))
            if confirm_slug != project.slug:
                raise InvalidInput("confirmSlug: must be the slug of the project to delete")
            pid = str(project.id)
            await project_repo.delete_project(w.conn, pid)
            tables = await asyncio.to_thread(purge_project, ctx.clickhouse, ctx.token.org_id, pid)
            await w.audit("project.delete", "project", pid, pid, name=project.name, slug=project.slug, tables=tables)
        ctx.projects.forget_org(ctx.token.org_id)
        ctx.journeys.forget_org(ctx.token.org_id)
        try:
            async with asyncio.timeout(REDIS_CLEANUP_TIMEOUT_S):
                await delete_project_keys(ctx.redis, pid)
        except Exception as exc:  # the keys expire by their TTLs; see the module docstring
            log.warning("project %s deleted, its Redis keys were not: %s", pid, exc)
        return project

    @strawberry.mutation(description="Create a project API key (admin); the secret is in the answer only.")
    async def create_api_key(self, info: Ctx, project_id: strawberry.ID, name: str = "default") -> NewApiKey:
        async with writing(info.context, "admin") as w:
            name = validate_text(name, "name")
            pid = await project_repo.project_id(w.conn, str(project_id))
            key, secret = await project_repo.create_api_key(w.conn, pid, name)
            await w.audit("api_key.create", "api_key", str(key.id), pid, name=name, prefix=key.prefix)
        return NewApiKey(api_key=key, secret=secret)

    @strawberry.mutation(
        description="Replace a key (admin): a new key now, the old one expires after overlapSeconds "
        "(plus at most the gateway's key cache TTL)."
    )
    async def rotate_api_key(self, info: Ctx, id: strawberry.ID, overlap_seconds: int = 86400) -> NewApiKey:
        async with writing(info.context, "admin") as w:
            key_id = parse_id(id, "API key")
            new, secret, old = await project_repo.rotate_api_key(w.conn, key_id, overlap_seconds)
            await w.audit(
                "api_key.rotate",
                "api_key",
                str(old.id),
                str(old.project_id),
                new_key_id=str(new.id),
                overlap_s=overlap_seconds,
                old_expires_at=str(old.expires_at),
            )
        return NewApiKey(api_key=new, secret=secret)

    @strawberry.mutation(description="Revoke a key now (admin); the gateway refuses it within its cache TTL.")
    async def revoke_api_key(self, info: Ctx, id: strawberry.ID) -> ApiKey:
        async with writing(info.context, "admin") as w:
            key_id = parse_id(id, "API key")
            key = await project_repo.revoke_api_key(w.conn, key_id)
            await w.audit("api_key.revoke", "api_key", str(key.id), str(key.project_id))
        return key

    @strawberry.mutation(description="Add a member (admin; an owner only by an owner), with a first token.")
    async def invite_member(
        self,
        info: Ctx,
        email: str,
        role: str,
        name: str = "",
        create_token: bool = True,
        token_expires_in_days: int | None = 90,
    ) -> MemberInvite:
        async with writing(info.context, "admin") as w:
            email, role, name = validate_email(email), _role(role), validate_text(name, "name", required=False)
            expires = _expiry(token_expires_in_days)
            _grantable(w.actor.role, role)
            member = await member_repo.invite_member(w.conn, email, name, role, w.actor.user_id)
            token = None
            if create_token:
                t, secret = await member_repo.create_token(w.conn, "invite", role, str(member.user_id), expires)
                token = NewAccessToken(access_token=t, secret=secret)
            await w.audit(
                "member.invite",
                "member",
                str(member.id),
                email=email,
                role=role,
                user_id=str(member.user_id),
                token_id=str(token.access_token.id) if token else None,
            )
        return MemberInvite(member=member, access_token=token)

    @strawberry.mutation(description="Change a member's role (admin; owners only by an owner).")
    async def update_member_role(self, info: Ctx, id: strawberry.ID, role: str) -> Member:
        async with writing(info.context, "admin") as w:
            membership_id, role = parse_id(id, "member"), _role(role)
            member = await member_repo.get_member(w.conn, membership_id, lock=True)
            _grantable(w.actor.role, role)
            _grantable(w.actor.role, member.role)
            if member.role == "owner" and role != "owner" and await member_repo.owner_count(w.conn) <= 1:
                raise InvalidInput("role: the organisation's last owner cannot be demoted")
            updated = await member_repo.set_member_role(w.conn, membership_id, role)
            await w.audit("member.update_role", "member", str(member.id), old_role=member.role, role=role)
        return updated

    @strawberry.mutation(description="Remove a member and their tokens (admin; an owner only by an owner).")
    async def remove_member(self, info: Ctx, id: strawberry.ID) -> Member:
        async with writing(info.context, "admin") as w:
            membership_id = parse_id(id, "member")
            member = await member_repo.get_member(w.conn, membership_id, lock=True)
            _grantable(w.actor.role, member.role)
            if member.role == "owner" and await member_repo.owner_count(w.conn) <= 1:
                raise InvalidInput("id: the organisation's last owner cannot be removed")
            await member_repo.remove_member(w.conn, member)
            await w.audit(
                "member.remove",
                "member",
                str(member.id),
                email=member.email,
                role=member.role,
                user_id=str(member.user_id),
            )
        return member

    @strawberry.mutation(
        description="Create an access token (admin): for a member (userId) or a service token; "
        "never above your own role.  expiresInDays: null for no expiry."
    )
    async def create_access_token(
        self,
        info: Ctx,
        name: str,
        role: str,
        user_id: strawberry.ID | None = None,
        expires_in_days: int | None = 90,
    ) -> NewAccessToken:
        async with writing(info.context, "admin") as w:
            name, role, expires = validate_text(name, "name"), _role(role), _expiry(expires_in_days)
            user = str(parse_id(user_id, "user")) if user_id is not None else None
            _grantable(w.actor.role, role)
            if user is not None:
                member = await member_repo.member_by_user(w.conn, user)
                if member is None:
                    raise NotFound(f"user {user!r} not found")
                if not role_at_least(member.role, role):
                    raise InvalidInput(f"role: the member's role is {member.role}")
            token, secret = await member_repo.create_token(w.conn, name, role, user, expires)
            await w.audit(
                "access_token.create",
                "access_token",
                str(token.id),
                name=name,
                role=role,
                user_id=user,
                expires_at=str(token.expires_at) if token.expires_at else None,
            )
        return NewAccessToken(access_token=token, secret=secret)

    @strawberry.mutation(description="Revoke an access token: your own (any role), or others' (admin).")
    async def revoke_access_token(self, info: Ctx, id: strawberry.ID) -> AccessToken:
        async with writing(info.context, "viewer") as w:
            token_id = parse_id(id, "access token")
            token = await member_repo.get_token(w.conn, token_id, lock=True)
            own = str(token.id) == w.actor.token_id or (token.user_id is not None and token.user_id == w.actor.user_id)
            if not own:
                if not role_at_least(w.actor.role, "admin"):
                    raise Forbidden(f"forbidden: needs role admin or above (token has {w.actor.role})")
                _grantable(w.actor.role, token.role)
            revoked = await member_repo.revoke_token(w.conn, token_id)
            await w.audit("access_token.revoke", "access_token", str(token.id), name=token.name)
        return revoked
