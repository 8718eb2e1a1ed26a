"""The one Postgres tenant-transaction helper, and the two narrow cross-tenant lookups.

Every tenant query runs inside :func:`tenant_transaction`: an explicit transaction on an autocommit
connection that sets ``app.org_id`` with ``set_config(..., true)`` (transaction-local), so the tenant
never outlives the block or leaks to the next user of a pooled connection.  Row-level security in the
database does the filtering; the app role cannot bypass it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "KeyInfo",
    "TokenInfo",
    "hash_secret",
    "new_secret",
    "open_pool",
    "resolve_access_token",
    "resolve_api_key",
    "tenant_transaction",
    "tenant_transaction_sync",
]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What an API key resolves to.  ``settings`` always has every key, defaults merged in (deploy/postgres/
    0002): ``session_timeout_minutes``, ``dedup_window_s``, ``rate_limit_per_s`` (events per second),
    ``retention_days``, ``cors_origins`` (allowed browser origins; ``"*"`` = any)."""

    project_id: str
    org_id: str
    project_slug: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Who is calling the query API: one org, a role, and the member the token belongs to (if any)."""

    org_id: str
    token_id: str
    role: str
    user_id: str | None = None


def new_secret(kind: str) -> str:
    """A credential shown once: ``pgk_`` API keys, ``pgt_`` access tokens."""
    return f"{kind}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def open_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        dsn, min_size=min_size, max_size=max_size, kwargs={"autocommit": True}, open=False, timeout=5
    )


@asynccontextmanager
async def tenant_transaction(pool: AsyncConnectionPool, org_id: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.org_id', %s, true)", (org_id,))
        yield conn


@contextmanager
def tenant_transaction_sync(conn: psycopg.Connection[Any], org_id: str) -> Iterator[psycopg.Connection[Any]]:
    """Same as :func:`tenant_transaction` for the CLI; ``conn`` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("tenant transactions need an autocommit connection (savepoint trap)")
    with conn.transaction():
        conn.execute("SELECT set_config('app.org_id', %s, true)", (org_id,))
        yield conn


async def resolve_api_key(pool: AsyncConnectionPool, key: str) -> KeyInfo | None:
    """The key's project and org, with ``settings`` = the project's settings over their defaults; ``None``
    when the key is unknown, revoked, or past its ``expires_at`` (the old key after a rotation's overlap)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT project_id::text, org_id::text, project_slug, settings FROM resolve_api_key(%s)",
            (hash_secret(key),),
        )
        row = await cur.fetchone()
    return None if row is None else KeyInfo(row[0], row[1], row[2], row[3] or {})


async def resolve_access_token(pool: AsyncConnectionPool, token: str) -> TokenInfo | None:
    """The token's org and effective role (the weaker of the token's and its member's); ``None`` when the
    token is unknown, revoked, expired, or its member was removed."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT org_id::text, token_id::text, role, user_id::text FROM resolve_access_token(%s)",
            (hash_secret(token),),
        )
        row = await cur.fetchone()
    return None if row is None else TokenInfo(row[0], row[1], row[2], row[3])
