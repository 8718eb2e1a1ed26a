"""Row-level security on real PostgreSQL 18: the app role sees one org, or nothing."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from productgraph.admin import bootstrap_org
from productgraph.db import tenant_transaction_sync

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent(migrated_postgres: tuple[str, str]) -> None:
    from productgraph.migrate import migrate_postgres

    admin, app = migrated_postgres
    password = unquote(urlsplit(app).password or "")
    assert migrate_postgres(admin, password) == []  # nothing left to apply; the app role keeps working
    with psycopg.connect(admin) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions and versions == sorted(set(versions))


def test_tenant_sees_only_its_rows_and_nothing_without_tenant(migrated_postgres: tuple[str, str]) -> None:
    _, app = migrated_postgres
    a = bootstrap_org(app, "A", "rls-a", "A app", "a-app")
    b = bootstrap_org(app, "B", "rls-b", "B app", "b-app")
    with psycopg.connect(app, autocommit=True) as conn:
        for table in ("organizations", "projects", "api_keys", "access_tokens"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        with tenant_transaction_sync(conn, a.org_id):
            projects = conn.execute("SELECT id::text FROM projects").fetchall()
            assert projects == [(a.project_id,)]
            assert conn.execute("SELECT count(*) FROM projects WHERE id = %s", (b.project_id,)).fetchone() == (0,)
            updated = conn.execute("UPDATE projects SET name = 'x' WHERE id = %s", (b.project_id,)).rowcount
            assert updated == 0
        # the tenant does not outlive its transaction
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (0,)


def test_writing_another_orgs_id_fails(migrated_postgres: tuple[str, str]) -> None:
    _, app = migrated_postgres
    a = bootstrap_org(app, "A2", "rls-a2", "p", "p")
    b = bootstrap_org(app, "B2", "rls-b2", "p", "p")
    with psycopg.connect(app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a.org_id):
            conn.execute("INSERT INTO projects (org_id, name, slug) VALUES (%s, 'evil', 'evil')", (b.org_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a.org_id):
            conn.execute("UPDATE projects SET org_id = %s WHERE id = %s", (b.org_id, a.project_id))


def test_app_role_cannot_bypass_or_disable_rls(migrated_postgres: tuple[str, str]) -> None:
    _, app = migrated_postgres
    with psycopg.connect(app, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE projects DISABLE ROW LEVEL SECURITY")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET row_security = off; SELECT count(*) FROM projects")


async def test_key_and_token_resolve_across_tenants_only_by_hash(migrated_postgres: tuple[str, str]) -> None:
    from productgraph.db import open_pool, resolve_access_token, resolve_api_key

    _, app = migrated_postgres
    a = bootstrap_org(app, "K", "rls-k", "k", "k")
    async with open_pool(app) as pool:
        key = await resolve_api_key(pool, a.api_key)
        assert key is not None and (key.project_id, key.org_id, key.project_slug) == (a.project_id, a.org_id, "k")
        token = await resolve_access_token(pool, a.admin_token)
        assert token is not None and token.org_id == a.org_id and token.role == "admin"
        assert await resolve_api_key(pool, a.api_key + "x") is None
        assert await resolve_access_token(pool, a.api_key) is None
