"""SQL for the organisation, its projects (and their settings) and project API keys.

Every function runs on a connection inside the org's tenant transaction: RLS limits each statement to
the caller's org, so an id of another org behaves exactly like an id that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

import strawberry
from psycopg.types.json import Jsonb

from productgraph.db import hash_secret, new_secret
from query_api.admin.repo._rows import Conn, fetch_all, fetch_one, unique_as_conflict
from query_api.admin.types import ApiKey, Organization, Project, ProjectSettings
from query_api.admin.validation import storable
from query_api.errors import InvalidInput, NotFound

__all__ = [
    "create_api_key",
    "create_project",
    "delete_project",
    "get_project",
    "list_api_keys",
    "list_projects",
    "organization",
    "project_id",
    "rename_organization",
    "rename_project",
    "revoke_api_key",
    "rotate_api_key",
    "set_settings",
    "stored_settings",
]

_PROJECT = "SELECT id::text, name, slug, project_settings_defaults() || settings, created_at, updated_at FROM projects "
_KEY = (
    "SELECT id::text AS id, project_id::text AS project_id, name, prefix, created_at, last_used_at, expires_at, "
    "revoked_at, rotated_from::text AS rotated_from, "
    "(revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS active FROM api_keys "
)
MAX_OVERLAP_S = 30 * 86400


def _project(row: tuple[Any, ...]) -> Project:
    return Project(
        id=strawberry.ID(row[0]),
        name=row[1],
        slug=row[2],
        settings=ProjectSettings(**row[3]),
        created_at=row[4],
        updated_at=row[5],
    )


async def organization(conn: Conn) -> Organization:
    org = await fetch_one(conn, Organization, "SELECT id::text AS id, name, slug, created_at FROM organizations")
    if org is None:
        raise NotFound("organization not found")
    return org


async def rename_organization(conn: Conn, name: str) -> Organization:
    await conn.execute("UPDATE organizations SET name = %s, updated_at = now() WHERE id = app_current_org()", (name,))
    return await organization(conn)


async def list_projects(conn: Conn) -> list[Project]:
    cur = await conn.execute(_PROJECT + "ORDER BY created_at, id")
    return [_project(r) for r in await cur.fetchall()]


async def project_id(conn: Conn, ref: str) -> str:
    """A project id or slug of the caller's org → its id, else :class:`NotFound`."""
    if storable(ref):
        cur = await conn.execute("SELECT id::text FROM projects WHERE id::text = %s OR slug = %s LIMIT 1", (ref, ref))
        row = await cur.fetchone()
        if row is not None:
            return str(row[0])
    raise NotFound(f"project {ref!r} not found")


async def get_project(conn: Conn, ref: str) -> Project:
    pid = await project_id(conn, ref)
    cur = await conn.execute(_PROJECT + "WHERE id = %s", (pid,))
    row = await cur.fetchone()
    assert row is not None
    return _project(row)


async def create_project(conn: Conn, name: str, slug: str, overrides: dict[str, Any]) -> Project:
    async with unique_as_conflict(f"a project with slug {slug!r} already exists"):
        cur = await conn.execute(
            "INSERT INTO projects (org_id, name, slug, settings) VALUES (app_current_org(), %s, %s, %s) "
            "RETURNING id::text",
            (name, slug, Jsonb(overrides)),
        )
    row = await cur.fetchone()
    assert row is not None
    return await get_project(conn, row[0])


async def rename_project(conn: Conn, ref: str, name: str) -> Project:
    pid = await project_id(conn, ref)
    await conn.execute("UPDATE projects SET name = %s, updated_at = now() WHERE id = %s", (name, pid))
    return await get_project(conn, pid)


async def delete_project(conn: Conn, ref: str) -> Project:
    """Delete a project of the caller's org and, by cascade, its keys, catalog, journeys and saved analyses
    (the audit log keeps its history).  Returns the project as it was."""
    pid = await project_id(conn, ref)
    cur = await conn.execute(_PROJECT + "WHERE id = %s FOR UPDATE", (pid,))
    row = await cur.fetchone()
    assert row is not None
    await conn.execute("DELETE FROM projects WHERE id = %s", (pid,))
    return _project(row)


async def stored_settings(conn: Conn, ref: str) -> tuple[str, dict[str, Any]]:
    """(project id, its stored overrides), the row locked until the transaction ends."""
    pid = await project_id(conn, ref)
    cur = await conn.execute("SELECT settings FROM projects WHERE id = %s FOR UPDATE", (pid,))
    row = await cur.fetchone()
    assert row is not None
    return pid, dict(row[0])


async def set_settings(conn: Conn, pid: str, overrides: dict[str, Any]) -> Project:
    await conn.execute("UPDATE projects SET settings = %s, updated_at = now() WHERE id = %s", (Jsonb(overrides), pid))
    return await get_project(conn, pid)


async def list_api_keys(conn: Conn, pid: str) -> list[ApiKey]:
    return await fetch_all(conn, ApiKey, _KEY + "WHERE project_id = %s ORDER BY created_at, id", (pid,))


async def _key(conn: Conn, key_id: uuid.UUID, *, lock: bool = False) -> ApiKey:
    key = await fetch_one(conn, ApiKey, _KEY + "WHERE id = %s" + (" FOR UPDATE" if lock else ""), (key_id,))
    if key is None:
        raise NotFound(f"API key {str(key_id)!r} not found")
    return key


async def create_api_key(conn: Conn, pid: str, name: str, rotated_from: str | None = None) -> tuple[ApiKey, str]:
    secret = new_secret("pgk")
    cur = await conn.execute(
        "INSERT INTO api_keys (org_id, project_id, name, key_hash, prefix, rotated_from) "
        "VALUES (app_current_org(), %s, %s, %s, %s, %s) RETURNING id",
        (pid, name, hash_secret(secret), secret[:10], rotated_from),
    )
    row = await cur.fetchone()
    assert row is not None
    return await _key(conn, row[0]), secret


async def rotate_api_key(conn: Conn, key_id: uuid.UUID, overlap_s: int) -> tuple[ApiKey, str, ApiKey]:
    """A new key for the same project; the old one keeps working for ``overlap_s`` seconds, then expires."""
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise InvalidInput(f"overlapSeconds: between 0 and {MAX_OVERLAP_S}")
    old = await _key(conn, key_id, lock=True)
    if not old.active:
        raise InvalidInput("id: only an active key can be rotated")
    await conn.execute(
        "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => %s)) "
        "WHERE id = %s",
        (overlap_s, key_id),
    )
    new, secret = await create_api_key(conn, str(old.project_id), old.name, rotated_from=str(old.id))
    return new, secret, await _key(conn, key_id)


async def revoke_api_key(conn: Conn, key_id: uuid.UUID) -> ApiKey:
    await _key(conn, key_id, lock=True)
    await conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (key_id,))
    return await _key(conn, key_id)
