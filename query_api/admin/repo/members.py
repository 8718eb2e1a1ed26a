"""SQL for users, memberships and access tokens (inside the org's tenant transaction, like every repo)."""

from __future__ import annotations

import uuid
from datetime import datetime

from productgraph.db import hash_secret, new_secret
from query_api.admin.repo._rows import Conn, fetch_all, fetch_one, unique_as_conflict
from query_api.admin.types import AccessToken, Member
from query_api.errors import NotFound

__all__ = [
    "create_token",
    "get_member",
    "get_token",
    "invite_member",
    "list_members",
    "list_tokens",
    "member_by_user",
    "owner_count",
    "remove_member",
    "revoke_token",
    "set_member_role",
]

_MEMBER = (
    "SELECT m.id::text AS id, u.id::text AS user_id, u.email, u.name, m.role, m.created_at "
    "FROM memberships m JOIN users u ON u.org_id = m.org_id AND u.id = m.user_id "
)
_TOKEN = (
    "SELECT id::text AS id, name, prefix, role, user_id::text AS user_id, created_at, expires_at, revoked_at, "
    "last_used_at FROM access_tokens "
)


async def list_members(conn: Conn) -> list[Member]:
    return await fetch_all(conn, Member, _MEMBER + "ORDER BY m.created_at, m.id")


async def get_member(conn: Conn, membership_id: uuid.UUID, *, lock: bool = False) -> Member:
    sql = _MEMBER + "WHERE m.id = %s" + (" FOR UPDATE OF m" if lock else "")
    member = await fetch_one(conn, Member, sql, (membership_id,))
    if member is None:
        raise NotFound(f"member {str(membership_id)!r} not found")
    return member


async def member_by_user(conn: Conn, user_id: str) -> Member | None:
    return await fetch_one(conn, Member, _MEMBER + "WHERE u.id = %s", (user_id,))


async def owner_count(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) FROM memberships WHERE role = 'owner'")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def invite_member(conn: Conn, email: str, name: str, role: str, invited_by: str | None) -> Member:
    async with unique_as_conflict(f"{email!r} is already a member"):
        cur = await conn.execute(
            "INSERT INTO users (org_id, email, name) VALUES (app_current_org(), %s, %s) RETURNING id", (email, name)
        )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "INSERT INTO memberships (org_id, user_id, role, invited_by) VALUES (app_current_org(), %s, %s, %s) "
        "RETURNING id",
        (row[0], role, invited_by),
    )
    mrow = await cur.fetchone()
    assert mrow is not None
    return await get_member(conn, mrow[0])


async def set_member_role(conn: Conn, membership_id: uuid.UUID, role: str) -> Member:
    await conn.execute("UPDATE memberships SET role = %s, updated_at = now() WHERE id = %s", (role, membership_id))
    return await get_member(conn, membership_id)


async def remove_member(conn: Conn, member: Member) -> None:
    """Deletes the user (their membership and tokens go with it); audit rows keep who they were."""
    await conn.execute("DELETE FROM users WHERE id = %s", (member.user_id,))


async def list_tokens(conn: Conn) -> list[AccessToken]:
    return await fetch_all(conn, AccessToken, _TOKEN + "ORDER BY created_at, id")


async def get_token(conn: Conn, token_id: uuid.UUID, *, lock: bool = False) -> AccessToken:
    token = await fetch_one(conn, AccessToken, _TOKEN + "WHERE id = %s" + (" FOR UPDATE" if lock else ""), (token_id,))
    if token is None:
        raise NotFound(f"access token {str(token_id)!r} not found")
    return token


async def create_token(
    conn: Conn, name: str, role: str, user_id: str | None, expires_at: datetime | None
) -> tuple[AccessToken, str]:
    secret = new_secret("pgt")
    cur = await conn.execute(
        "INSERT INTO access_tokens (org_id, name, role, token_hash, prefix, user_id, expires_at) "
        "VALUES (app_current_org(), %s, %s, %s, %s, %s, %s) RETURNING id",
        (name, role, hash_secret(secret), secret[:10], user_id, expires_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return await get_token(conn, row[0]), secret


async def revoke_token(conn: Conn, token_id: uuid.UUID) -> AccessToken:
    await conn.execute("UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (token_id,))
    return await get_token(conn, token_id)
