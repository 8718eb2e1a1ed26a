"""Who may do what, and the two transaction shapes every admin resolver uses.

Roles, weakest first: viewer (reads), analyst (reads, saves funnels and cohorts), admin (manages projects,
keys, members, journeys), owner (also owners and the org itself).

* :func:`reading` checks the token's role (as resolved at authentication, cached for the token TTL) and
  opens the org's tenant transaction.
* :func:`writing` does the same, then re-reads the token's effective role inside the transaction, so a
  revoked token or a demoted/removed member cannot write even while the token cache still trusts it;
  the block must call :meth:`AdminWrite.audit` (a mutation that does not is rolled back), and the audit
  row commits or rolls back with the change.

Both check the role before looking anything up, so a forbidden call reveals nothing about ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from productgraph.admin import AUDIT_INSERT, role_at_least
from productgraph.db import tenant_transaction
from query_api.context import QueryContext
from query_api.errors import Forbidden

__all__ = ["Actor", "AdminWrite", "reading", "require_role", "writing"]

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Actor:
    token_id: str
    user_id: str | None
    role: str
    label: str


def require_role(role: str, minimum: str) -> None:
    if not role_at_least(role, minimum):
        raise Forbidden(f"forbidden: needs role {minimum} or above (token has {role})")


class AdminWrite:
    """A mutation's transaction: the connection, the acting token, and the audit it owes."""

    def __init__(self, conn: Conn, actor: Actor) -> None:
        self.conn = conn
        self.actor = actor
        self.audited = False

    async def audit(
        self, action: str, target_type: str, target_id: str | None, project_id: str | None = None, **details: Any
    ) -> None:
        a = self.actor
        await self.conn.execute(
            AUDIT_INSERT,
            (a.token_id, a.user_id, a.label, action, target_type, target_id, project_id, Jsonb(details)),
        )
        self.audited = True


_ACTOR_SQL = (
    "SELECT t.id::text, t.user_id::text, "
    "CASE WHEN m.role IS NOT NULL AND app_role_rank(m.role) < app_role_rank(t.role) THEN m.role ELSE t.role END, "
    "coalesce(u.email, 'token ' || t.prefix || '…') "
    "FROM access_tokens t "
    "LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.user_id "
    "LEFT JOIN users u ON u.org_id = t.org_id AND u.id = t.user_id "
    "WHERE t.id = %s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) "
    "AND (t.user_id IS NULL OR m.id IS NOT NULL)"
)


@asynccontextmanager
async def reading(ctx: QueryContext, minimum: str = "viewer") -> AsyncIterator[Conn]:
    require_role(ctx.token.role, minimum)
    async with tenant_transaction(ctx.pool, ctx.token.org_id) as conn:
        yield conn


@asynccontextmanager
async def writing(ctx: QueryContext, minimum: str) -> AsyncIterator[AdminWrite]:
    require_role(ctx.token.role, minimum)
    async with tenant_transaction(ctx.pool, ctx.token.org_id) as conn:
        cur = await conn.execute(_ACTOR_SQL, (ctx.token.token_id,))
        row = await cur.fetchone()
        if row is None:
            raise Forbidden("forbidden: the access token is no longer valid")
        actor = Actor(row[0], row[1], row[2], row[3])
        require_role(actor.role, minimum)
        write = AdminWrite(conn, actor)
        yield write
        if not write.audited:
            raise RuntimeError("admin mutation without an audit record")
