"""SQL for saved funnels and cohorts: named definitions per project (tenant transaction).

The analytics code that runs a saved funnel or filters by a cohort reads it with :func:`get_saved`.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, TypeVar

from psycopg import sql
from psycopg.types.json import Jsonb

from query_api.admin.repo._rows import Conn, fetch_all, fetch_one, unique_as_conflict
from query_api.admin.types import Cohort, SavedFunnel
from query_api.errors import NotFound

__all__ = ["Kind", "create_saved", "delete_saved", "get_saved", "list_saved", "update_saved"]

Kind = Literal["funnel", "cohort"]
T = TypeVar("T", SavedFunnel, Cohort)

_TABLES: dict[str, tuple[str, str]] = {"funnel": ("saved_funnels", "saved funnel"), "cohort": ("cohorts", "cohort")}
_COLUMNS = {"name", "description", "definition"}


def _select(kind: Kind) -> str:
    table = _TABLES[kind][0]
    return (
        "SELECT id::text AS id, project_id::text AS project_id, name, description, definition, "
        f"created_by::text AS created_by, created_at, updated_at FROM {table} "
    )


async def list_saved(conn: Conn, kind: Kind, cls: type[T], pid: str) -> list[T]:
    return await fetch_all(conn, cls, _select(kind) + "WHERE project_id = %s ORDER BY name", (pid,))


async def get_saved(conn: Conn, kind: Kind, cls: type[T], item_id: uuid.UUID) -> T:
    item = await fetch_one(conn, cls, _select(kind) + "WHERE id = %s", (item_id,))
    if item is None:
        raise NotFound(f"{_TABLES[kind][1]} {str(item_id)!r} not found")
    return item


async def create_saved(
    conn: Conn,
    kind: Kind,
    cls: type[T],
    pid: str,
    name: str,
    description: str,
    definition: dict[str, Any],
    created_by: str | None,
) -> T:
    table, label = _TABLES[kind]
    query = sql.SQL(
        "INSERT INTO {} (org_id, project_id, name, description, definition, created_by) "
        "VALUES (app_current_org(), %s, %s, %s, %s, %s) RETURNING id"
    ).format(sql.Identifier(table))
    async with unique_as_conflict(f"a {label} named {name!r} already exists in this project"):
        cur = await conn.execute(query, (pid, name, description, Jsonb(definition), created_by))
    row = await cur.fetchone()
    assert row is not None
    return await get_saved(conn, kind, cls, row[0])


async def update_saved(conn: Conn, kind: Kind, cls: type[T], item_id: uuid.UUID, changes: dict[str, Any]) -> T:
    table, label = _TABLES[kind]
    await get_saved(conn, kind, cls, item_id)
    if set(changes) - _COLUMNS:
        raise ValueError(f"not updatable: {sorted(set(changes) - _COLUMNS)}")
    cols = sorted(changes)
    sets = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols] + [sql.SQL("updated_at = now()")]
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), sql.SQL(", ").join(sets))
    params: list[Any] = [Jsonb(changes[c]) if c == "definition" else changes[c] for c in cols]
    async with unique_as_conflict(f"a {label} with this name already exists in this project"):
        await conn.execute(query, (*params, item_id))
    return await get_saved(conn, kind, cls, item_id)


async def delete_saved(conn: Conn, kind: Kind, cls: type[T], item_id: uuid.UUID) -> T:
    item = await get_saved(conn, kind, cls, item_id)
    query = sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(_TABLES[kind][0]))
    await conn.execute(query, (item_id,))
    return item
