"""Row-level security on real PostgreSQL 18: the app role sees one org, or nothing."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from productgraph.admin import bootstrap_org
from productgraph.db import tenant_transaction_sync
from tests.integration.test_admin_support import World, org_column, snapshot, tenant_tables

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.test_admin_support",)  # the world fixture: two orgs with every kind of row


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
        assert token is not None and token.org_id == a.org_id and token.role == "owner" and token.user_id is None
        assert await resolve_api_key(pool, a.api_key + "x") is None
        assert await resolve_access_token(pool, a.api_key) is None


# ---- every table, found from the catalog: a table added later is covered without editing this file -----


def test_every_table_has_forced_rls_and_the_tenant_policy(migrated_postgres: tuple[str, str]) -> None:
    admin, _ = migrated_postgres
    tables = tenant_tables(admin)
    assert {
        "organizations",
        "projects",
        "api_keys",
        "access_tokens",
        "users",
        "memberships",
        "capabilities",
        "features",
        "journeys",
        "journey_steps",
        "saved_funnels",
        "cohorts",
        "audit_log",
    } <= set(tables)
    with psycopg.connect(admin) as conn:
        for table in tables:
            flags = conn.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", (table,)
            ).fetchone()
            assert flags == (True, True), table
            policies = conn.execute(
                "SELECT policyname, permissive, roles::text[], cmd, qual, with_check FROM pg_policies "
                "WHERE schemaname = 'public' AND tablename = %s",
                (table,),
            ).fetchall()
            col = org_column(table)
            tenant = [p for p in policies if p[0] == "tenant_isolation"]
            assert tenant == [("tenant_isolation", "PERMISSIVE", ["public"], "ALL", f"({col} = app_current_org())",
                               f"({col} = app_current_org())")], (table, policies)  # fmt: skip
            # Any other policy (the credential resolvers' narrow lookups) never applies to the app role.
            for p in policies:
                if p[0] != "tenant_isolation":
                    assert "public" not in p[2] and "productgraph_app" not in p[2], (table, p)


def test_app_role_owns_nothing_and_can_change_no_rule(migrated_postgres: tuple[str, str]) -> None:
    admin, app = migrated_postgres
    with psycopg.connect(admin) as conn:
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = 'productgraph_app' "
            "UNION ALL SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
            "WHERE r.rolname = 'productgraph_app' "
            "UNION ALL SELECT count(*) FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
            "WHERE r.rolname = 'productgraph_app'"
        ).fetchall()
        assert owned == [(0,), (0,), (0,)]
        member_of = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
            ("productgraph_app",),
        ).fetchone()
        assert member_of == (0,)
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit FROM pg_roles "
            "WHERE rolname = 'productgraph_app'"
        ).fetchone()
        assert role == (False, False, False, False, False)
    with psycopg.connect(app, autocommit=True) as conn:
        for table in tenant_tables(admin):
            for statement in (
                f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
                f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
                f"DROP POLICY tenant_isolation ON {table}",
                f"CREATE POLICY open ON {table} USING (true)",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        for statement in (
            "CREATE TABLE mine (id int)",
            "SELECT app_tenant_table('projects')",
            "SET ROLE postgres",
            "CREATE OR REPLACE FUNCTION app_current_org() RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_no_tenant_means_zero_rows_in_every_table(migrated_postgres: tuple[str, str], world: World) -> None:
    admin, app = migrated_postgres
    with psycopg.connect(admin) as conn:
        for table in tenant_tables(admin):  # the world has rows everywhere, so zero below means hidden
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() != (0,), table
    with psycopg.connect(app, autocommit=True) as conn:
        for table in tenant_tables(admin):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
            if table != "audit_log":  # append-only for the app, see below
                assert conn.execute(f"UPDATE {table} SET {org_column(table)} = {org_column(table)}").rowcount == 0
                assert conn.execute(f"DELETE FROM {table}").rowcount == 0


def test_one_org_cannot_write_or_remove_another_orgs_rows(migrated_postgres: tuple[str, str], world: World) -> None:
    admin, app = migrated_postgres
    a, b = world.a.org_id, world.b.org_id
    before = snapshot(admin, b)
    with psycopg.connect(app, autocommit=True) as conn:
        for table in tenant_tables(admin):
            col = org_column(table)
            with tenant_transaction_sync(conn, a):
                assert conn.execute(f"SELECT count(*) FROM {table} WHERE {col} = %s", (b,)).fetchone() == (0,)
                assert conn.execute(f"SELECT count(*) FROM {table} WHERE {col} <> %s", (a,)).fetchone() == (0,)
                if table != "audit_log":
                    assert conn.execute(f"DELETE FROM {table} WHERE {col} = %s", (b,)).rowcount == 0
            # A copy of one of A's rows, moved to B: refused on insert (WITH CHECK), on update, and as upsert.
            with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a):
                conn.execute(
                    f"INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, to_jsonb(t) || "
                    f"jsonb_build_object('id', gen_random_uuid(), '{col}', %s::uuid))).* FROM {table} t LIMIT 1",
                    (b,),
                )
            if table != "audit_log":
                with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a):
                    conn.execute(f"UPDATE {table} SET {col} = %s", (b,))
            else:
                with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a):
                    conn.execute("UPDATE audit_log SET action = 'x.y'")  # the app may only append
                with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction_sync(conn, a):
                    conn.execute("DELETE FROM audit_log")
    assert snapshot(admin, b) == before


def test_cross_tenant_functions_are_the_known_narrow_ones(migrated_postgres: tuple[str, str]) -> None:
    """Every SECURITY DEFINER function the app role may call, with exactly what it returns: a new cross-tenant
    path has to be added here on purpose."""
    admin, _ = migrated_postgres
    with psycopg.connect(admin) as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.prosecdef "
            "AND has_function_privilege('productgraph_app', p.oid, 'EXECUTE') ORDER BY p.proname"
        ).fetchall()
    assert rows == [
        ("resolve_access_token", "p_hash bytea", "TABLE(org_id uuid, token_id uuid, role text, user_id uuid)"),
        ("resolve_api_key", "p_hash bytea", "TABLE(project_id uuid, org_id uuid, project_slug text, settings jsonb)"),
        ("retention_policies", "", "TABLE(org_id uuid, project_id uuid, retention_days integer)"),
    ]
