"""Per-project retention over real Postgres (the narrow cross-tenant function) and ClickHouse (the deletes).

Rows are placed relative to now: a project keeping 2 days loses its 5-day-old rows and keeps the 1-day-old
ones; a project keeping 3650 days keeps a row 400 days old, which the tables' old 365-day TTL would have
dropped on insert (the 3650-day TTL of deploy/clickhouse/0004 keeps it); another org's project on the
default 365 days is untouched.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from productgraph.admin import bootstrap_org, create_project
from productgraph.db import tenant_transaction_sync
from productgraph.retention import RetentionPolicy, RetentionSettings, list_policies, run_pass
from tests.conftest import Servers
from tests.integration.test_admin_support import count_rows, insert_aged_rows

pytestmark = pytest.mark.integration


def _set_retention(servers: Servers, org_id: str, project_id: str, days: int) -> None:
    with psycopg.connect(servers.postgres_dsn, autocommit=True) as conn, tenant_transaction_sync(conn, org_id):
        conn.execute("UPDATE projects SET settings = %s WHERE id = %s", (Jsonb({"retention_days": days}), project_id))


def _counts(servers: Servers, project_id: str) -> tuple[int, int]:
    return count_rows(servers, "events", project_id), count_rows(servers, "sessions", project_id)


async def test_each_project_keeps_its_own_retention(servers: Servers) -> None:
    slug = f"ret{secrets.token_hex(4)}"
    org = bootstrap_org(servers.postgres_dsn, "Ret", slug, "Short", slug)
    with psycopg.connect(servers.postgres_dsn, autocommit=True) as conn:
        long_project = create_project(conn, org.org_id, "Long", "long")
    other_slug = f"ret{secrets.token_hex(4)}"
    other = bootstrap_org(servers.postgres_dsn, "Other", other_slug, "Other", other_slug)
    short = org.project_id
    _set_retention(servers, org.org_id, short, 2)
    _set_retention(servers, org.org_id, long_project, 3650)
    insert_aged_rows(servers, org.org_id, short, [1, 5], "short")
    insert_aged_rows(servers, org.org_id, long_project, [1, 5, 400], "long")
    insert_aged_rows(servers, other.org_id, other.project_id, [1, 5], "other")
    assert _counts(servers, long_project) == (3, 3)  # 400 days old and still there: the TTL is 3650 days

    # The app role lists every project's retention, and only that, through retention_policies().
    policies = {p.project_id: p for p in list_policies(servers.postgres_dsn)}
    assert policies[short] == RetentionPolicy(org.org_id, short, 2)
    assert policies[long_project] == RetentionPolicy(org.org_id, long_project, 3650)
    assert policies[other.project_id] == RetentionPolicy(other.org_id, other.project_id, 365)

    settings = RetentionSettings(postgres_dsn=servers.postgres_dsn, clickhouse_url=servers.clickhouse_url)
    lines: list[str] = []
    dry = run_pass(settings, dry_run=True, progress=lines.append)
    assert {(r.purge.table, r.rows, r.queued) for r in dry if r.purge.project_id == short} == {
        ("events", 1, False),
        ("sessions", 1, False),
        ("journey_sessions", 0, False),  # no journey rows here: counted, nothing to queue
    }
    assert all(r.rows == 0 for r in dry if r.purge.project_id in (long_project, other.project_id))
    assert f"project {short} events: would delete 1 rows before" in "\n".join(lines)
    assert _counts(servers, short) == (2, 2)  # a dry run deletes nothing

    done = run_pass(settings, progress=lines.append)
    mine = [r for r in done if r.purge.project_id in (short, long_project, other.project_id)]
    assert {(r.purge.project_id, r.purge.table, r.queued) for r in mine if r.rows} == {
        (short, "events", True),
        (short, "sessions", True),
    }
    start = time.monotonic()
    while _counts(servers, short) != (1, 1):  # ClickHouse applies the DELETE in the background
        assert time.monotonic() - start < 15, _counts(servers, short)
        await asyncio.sleep(0.2)
    assert _counts(servers, long_project) == (3, 3)
    assert _counts(servers, other.project_id) == (2, 2)

    # Nothing old is left, so the next pass queues nothing.
    again = run_pass(settings, progress=lines.append)
    assert not [r for r in again if r.queued and r.purge.project_id == short]


def test_retention_command(servers: Servers) -> None:
    from productgraph.cli import main

    env = {**servers.env(), "PG_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(main, ["retention", "--once", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("retention pass: ")
    assert "rows to delete" in result.output
