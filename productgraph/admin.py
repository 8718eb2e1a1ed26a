"""Tenancy and metadata outside GraphQL, all under RLS: bootstrap (CLI, the local stack's demo org, tests)
and the journey definitions the stream processors read.

An organisation is created by entering its (new) tenant first: the app role needs no bypass even here.
Every write here is recorded in ``audit_log`` in the same transaction, like the GraphQL mutations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from productgraph.db import hash_secret, new_secret, tenant_transaction, tenant_transaction_sync

__all__ = [
    "AUDIT_INSERT",
    "ROLES",
    "Bootstrap",
    "JourneyDefinition",
    "JourneyStepDefinition",
    "bootstrap_org",
    "create_access_token",
    "create_api_key",
    "create_org",
    "create_project",
    "create_user",
    "load_journeys",
    "role_at_least",
]

ROLES = ("viewer", "analyst", "admin", "owner")  # weakest first
CLI_ACTOR = "cli"

AUDIT_INSERT = (
    "INSERT INTO audit_log (org_id, actor_token_id, actor_user_id, actor_label, action, target_type, target_id, "
    "project_id, details) VALUES (app_current_org(), %s, %s, %s, %s, %s, %s, %s, %s)"
)


def role_at_least(role: str, minimum: str) -> bool:
    """Whether ``role`` is ``minimum`` or stronger; an unknown role is never enough."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(minimum)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    org_id: str
    project_id: str
    project_slug: str
    api_key: str
    admin_token: str
    owner_user_id: str | None = None


def _audit(conn: psycopg.Connection[Any], action: str, target_type: str, target_id: str, **details: Any) -> None:
    conn.execute(AUDIT_INSERT, (None, None, CLI_ACTOR, action, target_type, target_id, None, Jsonb(details)))


def create_org(conn: psycopg.Connection[Any], name: str, slug: str) -> str:
    org_id = str(uuid.uuid4())
    with tenant_transaction_sync(conn, org_id):
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)", (org_id, name, slug))
        _audit(conn, "organization.create", "organization", org_id, name=name, slug=slug)
    return org_id


def create_project(conn: psycopg.Connection[Any], org_id: str, name: str, slug: str) -> str:
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO projects (org_id, name, slug) VALUES (%s, %s, %s) RETURNING id::text", (org_id, name, slug)
        ).fetchone()
        assert row is not None
        _audit(conn, "project.create", "project", row[0], name=name, slug=slug)
    return str(row[0])


def create_api_key(conn: psycopg.Connection[Any], org_id: str, project_id: str, name: str = "default") -> str:
    """A new project API key; the secret is returned once and only its hash is stored."""
    secret = new_secret("pgk")
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO api_keys (org_id, project_id, name, key_hash, prefix) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id::text",
            (org_id, project_id, name, hash_secret(secret), secret[:10]),
        ).fetchone()
        assert row is not None
        _audit(conn, "api_key.create", "api_key", row[0], project_id=project_id, name=name)
    return secret


def create_access_token(
    conn: psycopg.Connection[Any],
    org_id: str,
    name: str = "admin",
    role: str = "admin",
    *,
    user_id: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """A new query-API token scoped to one org (and to a member, if ``user_id``); the secret is returned once."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    secret = new_secret("pgt")
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO access_tokens (org_id, name, role, token_hash, prefix, user_id, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id::text",
            (org_id, name, role, hash_secret(secret), secret[:10], user_id, expires_at),
        ).fetchone()
        assert row is not None
        _audit(conn, "access_token.create", "access_token", row[0], name=name, role=role, user_id=user_id)
    return secret


def create_user(conn: psycopg.Connection[Any], org_id: str, email: str, name: str = "", role: str = "owner") -> str:
    """A user of one org with a membership of ``role``; returns the user id."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO users (org_id, email, name) VALUES (%s, %s, %s) RETURNING id::text",
            (org_id, email.strip().lower(), name),
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, %s)", (org_id, row[0], role))
        _audit(conn, "member.create", "user", row[0], email=email.strip().lower(), role=role)
    return str(row[0])


def create_journey(
    conn: psycopg.Connection[Any], org_id: str, project_id: str, name: str, steps: list[tuple[str, dict[str, Any]]]
) -> str:
    """A journey with ordered (name, matcher) steps; matchers are checked and stored normalised."""
    from schemas.matchers import parse_matcher

    normalised = [(step_name, parse_matcher(m).as_dict()) for step_name, m in steps]
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO journeys (org_id, project_id, name) VALUES (%s, %s, %s) RETURNING id::text",
            (org_id, project_id, name),
        ).fetchone()
        assert row is not None
        for position, (step_name, matcher) in enumerate(normalised, start=1):
            conn.execute(
                "INSERT INTO journey_steps (org_id, journey_id, position, name, matcher) VALUES (%s, %s, %s, %s, %s)",
                (org_id, row[0], position, step_name, Jsonb(matcher)),
            )
        _audit(conn, "journey.create", "journey", row[0], project_id=project_id, name=name)
    return str(row[0])


def bootstrap_org(
    dsn: str, org_name: str, org_slug: str, project_name: str, project_slug: str, owner_email: str | None = None
) -> Bootstrap:
    """Org + project + API key + owner token in one go (``productgraph org create``, ``up``, the tests).

    With ``owner_email`` the token belongs to a new owner member; without, it is an owner service token.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        org_id = create_org(conn, org_name, org_slug)
        project_id = create_project(conn, org_id, project_name, project_slug)
        key = create_api_key(conn, org_id, project_id)
        user_id = create_user(conn, org_id, owner_email, role="owner") if owner_email else None
        token = create_access_token(conn, org_id, "owner", "owner", user_id=user_id)
    return Bootstrap(org_id, project_id, project_slug, key, token, user_id)


@dataclass(frozen=True, slots=True)
class JourneyStepDefinition:
    id: str
    position: int
    name: str
    matcher: dict[str, Any]  # validated by schemas.matchers.parse_matcher before it was stored
    is_required: bool


@dataclass(frozen=True, slots=True)
class JourneyDefinition:
    id: str
    project_id: str
    name: str
    timeout_minutes: int
    is_active: bool
    version: int
    updated_at: datetime
    steps: tuple[JourneyStepDefinition, ...]


async def load_journeys(
    pool: AsyncConnectionPool, org_id: str, project_id: str, *, include_inactive: bool = False
) -> list[JourneyDefinition]:
    """A project's journeys with their ordered steps, read inside the org's tenant transaction.

    For the processors: cache by ``(id, version)``; ``max(updated_at)`` tells when to reload.
    """
    async with tenant_transaction(pool, org_id) as conn:
        cur = await conn.execute(
            "SELECT j.id::text, j.project_id::text, j.name, j.timeout_minutes, j.is_active, j.version, j.updated_at, "
            "s.id::text, s.position, s.name, s.matcher, s.is_required "
            "FROM journeys j LEFT JOIN journey_steps s ON s.org_id = j.org_id AND s.journey_id = j.id "
            "WHERE j.project_id::text = %s AND (j.is_active OR %s) ORDER BY j.created_at, j.id, s.position",
            (project_id, include_inactive),
        )
        rows = await cur.fetchall()
    out: list[JourneyDefinition] = []
    steps: list[JourneyStepDefinition] = []
    for i, r in enumerate(rows):
        if r[7] is not None:
            steps.append(JourneyStepDefinition(r[7], r[8], r[9], r[10], r[11]))
        if i + 1 == len(rows) or rows[i + 1][0] != r[0]:
            out.append(JourneyDefinition(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(steps)))
            steps = []
    return out
