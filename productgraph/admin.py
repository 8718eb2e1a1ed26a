"""Bootstrap operations on the tenancy tables (CLI and the local stack's demo org), all under RLS.

An organisation is created by entering its (new) tenant first: the app role needs no bypass even here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from productgraph.db import hash_secret, new_secret, tenant_transaction_sync

__all__ = ["Bootstrap", "bootstrap_org", "create_access_token", "create_api_key", "create_org", "create_project"]


@dataclass(frozen=True, slots=True)
class Bootstrap:
    org_id: str
    project_id: str
    project_slug: str
    api_key: str
    admin_token: str


def create_org(conn: psycopg.Connection[Any], name: str, slug: str) -> str:
    org_id = str(uuid.uuid4())
    with tenant_transaction_sync(conn, org_id):
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)", (org_id, name, slug))
    return org_id


def create_project(conn: psycopg.Connection[Any], org_id: str, name: str, slug: str) -> str:
    with tenant_transaction_sync(conn, org_id):
        row = conn.execute(
            "INSERT INTO projects (org_id, name, slug) VALUES (%s, %s, %s) RETURNING id::text", (org_id, name, slug)
        ).fetchone()
    assert row is not None
    return str(row[0])


def create_api_key(conn: psycopg.Connection[Any], org_id: str, project_id: str, name: str = "default") -> str:
    """A new project API key; the secret is returned once and only its hash is stored."""
    secret = new_secret("pgk")
    with tenant_transaction_sync(conn, org_id):
        conn.execute(
            "INSERT INTO api_keys (org_id, project_id, name, key_hash, prefix) VALUES (%s, %s, %s, %s, %s)",
            (org_id, project_id, name, hash_secret(secret), secret[:10]),
        )
    return secret


def create_access_token(conn: psycopg.Connection[Any], org_id: str, name: str = "admin", role: str = "admin") -> str:
    """A new query-API token scoped to one org; the secret is returned once."""
    secret = new_secret("pgt")
    with tenant_transaction_sync(conn, org_id):
        conn.execute(
            "INSERT INTO access_tokens (org_id, name, role, token_hash, prefix) VALUES (%s, %s, %s, %s, %s)",
            (org_id, name, role, hash_secret(secret), secret[:10]),
        )
    return secret


def bootstrap_org(dsn: str, org_name: str, org_slug: str, project_name: str, project_slug: str) -> Bootstrap:
    """Org + project + API key + admin token in one go (used by ``productgraph up`` and the tests)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        org_id = create_org(conn, org_name, org_slug)
        project_id = create_project(conn, org_id, project_name, project_slug)
        key = create_api_key(conn, org_id, project_id)
        token = create_access_token(conn, org_id)
    return Bootstrap(org_id, project_id, project_slug, key, token)
