"""SQL for the capability/feature catalog and journeys with their ordered steps (tenant transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import strawberry
from psycopg import sql
from psycopg.types.json import Jsonb

from query_api.admin.repo._rows import Conn, fetch_all, fetch_one, unique_as_conflict
from query_api.admin.types import Capability, Feature, Journey, JourneyStep
from query_api.admin.validation import JourneyStepValue
from query_api.errors import NotFound

__all__ = [
    "create_capability",
    "create_feature",
    "create_journey",
    "delete_journey",
    "get_capability",
    "get_feature",
    "get_journey",
    "list_capabilities",
    "list_features",
    "list_journeys",
    "update_capability",
    "update_feature",
    "update_journey",
]

_CAPABILITY = (
    "SELECT id::text AS id, project_id::text AS project_id, name, description, display_order, created_at "
    "FROM capabilities "
)
_FEATURE = (
    "SELECT id::text AS id, project_id::text AS project_id, capability_id::text AS capability_id, name, "
    "description, admin_path, documentation, display_order, created_at FROM features "
)
_JOURNEY = (
    "SELECT id::text AS id, project_id::text AS project_id, feature_id::text AS feature_id, name, description, "
    "timeout_minutes, is_active, version, created_at, updated_at FROM journeys "
)
# Columns the update functions may set; anything else is a programming error.
_CAPABILITY_COLUMNS = {"name", "description", "display_order"}
_FEATURE_COLUMNS = {"name", "description", "admin_path", "documentation", "display_order"}
_JOURNEY_COLUMNS = {"name", "description", "timeout_minutes", "feature_id", "is_active"}


def _update(table: str, changes: dict[str, Any], allowed: set[str], extra: str) -> tuple[sql.Composed, list[Any]]:
    """``UPDATE table SET col = %s, ..., <extra> WHERE id = %s`` for the allowed columns in ``changes``."""
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    cols = sorted(changes)
    sets = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols] + [sql.SQL(extra)]
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), sql.SQL(", ").join(sets))
    return query, [Jsonb(changes[c]) if c == "documentation" else changes[c] for c in cols]


async def list_capabilities(conn: Conn, pid: str) -> list[Capability]:
    return await fetch_all(conn, Capability, _CAPABILITY + "WHERE project_id = %s ORDER BY display_order, name", (pid,))


async def get_capability(conn: Conn, cap_id: uuid.UUID) -> Capability:
    cap = await fetch_one(conn, Capability, _CAPABILITY + "WHERE id = %s", (cap_id,))
    if cap is None:
        raise NotFound(f"capability {str(cap_id)!r} not found")
    return cap


async def create_capability(conn: Conn, pid: str, name: str, description: str, display_order: int) -> Capability:
    async with unique_as_conflict(f"a capability named {name!r} already exists in this project"):
        cur = await conn.execute(
            "INSERT INTO capabilities (org_id, project_id, name, description, display_order) "
            "VALUES (app_current_org(), %s, %s, %s, %s) RETURNING id",
            (pid, name, description, display_order),
        )
    row = await cur.fetchone()
    assert row is not None
    return await get_capability(conn, row[0])


async def update_capability(conn: Conn, cap_id: uuid.UUID, changes: dict[str, Any]) -> Capability:
    await get_capability(conn, cap_id)
    query, values = _update("capabilities", changes, _CAPABILITY_COLUMNS, "updated_at = now()")
    async with unique_as_conflict("a capability with this name already exists in this project"):
        await conn.execute(query, (*values, cap_id))
    return await get_capability(conn, cap_id)


async def list_features(conn: Conn, pid: str) -> list[Feature]:
    return await fetch_all(conn, Feature, _FEATURE + "WHERE project_id = %s ORDER BY display_order, name", (pid,))


async def get_feature(conn: Conn, feature_id: uuid.UUID, pid: str | None = None) -> Feature:
    feature = await fetch_one(conn, Feature, _FEATURE + "WHERE id = %s", (feature_id,))
    if feature is None or (pid is not None and feature.project_id != pid):
        raise NotFound(f"feature {str(feature_id)!r} not found")
    return feature


async def create_feature(
    conn: Conn, cap: Capability, name: str, description: str, admin_path: str, documentation: Any, order: int
) -> Feature:
    async with unique_as_conflict(f"a feature named {name!r} already exists in this capability"):
        cur = await conn.execute(
            "INSERT INTO features (org_id, project_id, capability_id, name, description, admin_path, documentation, "
            "display_order) VALUES (app_current_org(), %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (cap.project_id, cap.id, name, description, admin_path, Jsonb(documentation), order),
        )
    row = await cur.fetchone()
    assert row is not None
    return await get_feature(conn, row[0])


async def update_feature(conn: Conn, feature_id: uuid.UUID, changes: dict[str, Any]) -> Feature:
    await get_feature(conn, feature_id)
    query, values = _update("features", changes, _FEATURE_COLUMNS, "updated_at = now()")
    async with unique_as_conflict("a feature with this name already exists in this capability"):
        await conn.execute(query, (*values, feature_id))
    return await get_feature(conn, feature_id)


async def _with_steps(conn: Conn, journeys: list[Journey]) -> list[Journey]:
    if not journeys:
        return journeys
    steps = await fetch_all(
        conn,
        _StepRow,
        "SELECT journey_id::text AS journey_id, id::text AS id, position, name, matcher, is_required "
        "FROM journey_steps WHERE journey_id = ANY(%s::uuid[]) ORDER BY journey_id, position",
        ([str(j.id) for j in journeys],),
    )
    by_journey: dict[str, list[JourneyStep]] = {}
    for s in steps:
        by_journey.setdefault(s.journey_id, []).append(
            JourneyStep(
                id=strawberry.ID(s.id), position=s.position, name=s.name, matcher=s.matcher, is_required=s.is_required
            )
        )
    for j in journeys:
        j.steps = by_journey.get(str(j.id), [])
    return journeys


@dataclass(frozen=True, slots=True)
class _StepRow:
    journey_id: str
    id: str
    position: int
    name: str
    matcher: Any
    is_required: bool


async def list_journeys(conn: Conn, pid: str, include_inactive: bool) -> list[Journey]:
    sql = _JOURNEY + "WHERE project_id = %s AND (is_active OR %s) ORDER BY created_at, id"
    return await _with_steps(conn, await fetch_all(conn, Journey, sql, (pid, include_inactive)))


async def get_journey(conn: Conn, journey_id: uuid.UUID, *, lock: bool = False) -> Journey:
    journey = await fetch_one(
        conn, Journey, _JOURNEY + "WHERE id = %s" + (" FOR UPDATE" if lock else ""), (journey_id,)
    )
    if journey is None:
        raise NotFound(f"journey {str(journey_id)!r} not found")
    return (await _with_steps(conn, [journey]))[0]


async def _insert_steps(conn: Conn, journey_id: str, steps: Sequence[JourneyStepValue]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO journey_steps (org_id, journey_id, position, name, matcher, is_required) "
            "VALUES (app_current_org(), %s, %s, %s, %s, %s)",
            [(journey_id, i, s.name, Jsonb(s.matcher), s.is_required) for i, s in enumerate(steps, start=1)],
        )


async def create_journey(
    conn: Conn,
    pid: str,
    name: str,
    description: str,
    timeout_minutes: int,
    feature_id: str | None,
    steps: Sequence[JourneyStepValue],
) -> Journey:
    async with unique_as_conflict(f"a journey named {name!r} already exists in this project"):
        cur = await conn.execute(
            "INSERT INTO journeys (org_id, project_id, feature_id, name, description, timeout_minutes) "
            "VALUES (app_current_org(), %s, %s, %s, %s, %s) RETURNING id",
            (pid, feature_id, name, description, timeout_minutes),
        )
    row = await cur.fetchone()
    assert row is not None
    await _insert_steps(conn, str(row[0]), steps)
    return await get_journey(conn, row[0])


async def update_journey(
    conn: Conn, journey_id: uuid.UUID, changes: dict[str, Any], steps: Sequence[JourneyStepValue] | None
) -> Journey:
    """Applies ``changes``; ``steps`` (when given) replace all steps.  Bumps the version either way."""
    query, values = _update("journeys", changes, _JOURNEY_COLUMNS, "version = version + 1, updated_at = now()")
    async with unique_as_conflict("a journey with this name already exists in this project"):
        await conn.execute(query, (*values, journey_id))
    if steps is not None:
        await conn.execute("DELETE FROM journey_steps WHERE journey_id = %s", (journey_id,))
        await _insert_steps(conn, str(journey_id), steps)
    return await get_journey(conn, journey_id)


async def delete_journey(conn: Conn, journey_id: uuid.UUID) -> Journey:
    """Delete a journey and its steps; returns it as it was.  Events that matched it keep their journey ids."""
    journey = await get_journey(conn, journey_id, lock=True)
    await conn.execute("DELETE FROM journeys WHERE id = %s", (journey_id,))
    return journey
