"""The ClickHouse migrations on a real engine: single-node DDL executed, cluster-mode DDL parsed.

Both come from the same files (``deploy/clickhouse``) through :mod:`productgraph.clickhouse_ddl`.  The
cluster rendering cannot run here (``ON CLUSTER`` needs a cluster and Keeper), so each rendered statement
goes through the server's own SQL parser with ``formatQuery``; a broken statement is shown to fail there.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from productgraph.clickhouse_ddl import create_database, ledger_table, render_migration
from productgraph.connections import clickhouse_client
from productgraph.migrate import DEPLOY_DIR, load_migrations, migrate_clickhouse, split_statements
from query_api.analytics import count_events
from query_api.tenant_scope import EVENTS_FINAL_SETTINGS, Tenant

pytestmark = pytest.mark.integration

CLUSTER = "pg_cluster"


@pytest.fixture
def database_url(clickhouse_server: str) -> Iterator[str]:
    url = f"{clickhouse_server}/ddltest_{secrets.token_hex(4)}"
    yield url
    admin = clickhouse_client(url, database=None)
    admin.command(f"DROP DATABASE IF EXISTS `{url.rsplit('/', 1)[1]}`")
    admin.close()


@pytest.fixture
def client(clickhouse_server: str) -> Iterator[Client]:
    c = clickhouse_client(clickhouse_server + "/default", database=None)
    yield c
    c.close()


def _format(client: Client, statement: str) -> str:
    return str(client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0])


def test_single_node_migrations_create_the_events_table(database_url: str) -> None:
    applied = migrate_clickhouse(database_url)
    assert applied == [f"clickhouse {m.version:04d}_{m.name}" for m in load_migrations(DEPLOY_DIR / "clickhouse")]
    database = database_url.rsplit("/", 1)[1]
    c = clickhouse_client(database_url)
    try:
        rows = c.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
            parameters={"db": database},
        ).result_rows
        assert ("events", "ReplacingMergeTree") in rows
        columns = c.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'events'",
            parameters={"db": database},
        ).result_rows
        assert {"org_id", "project_id", "event_id"} <= {r[0] for r in columns}
    finally:
        c.close()
    assert migrate_clickhouse(database_url) == [], "a second run applies nothing"


def test_cluster_rendered_ddl_parses_on_the_engine(client: Client) -> None:
    statements = [create_database("productgraph", CLUSTER), ledger_table(CLUSTER)]
    for mig in load_migrations(DEPLOY_DIR / "clickhouse"):
        statements += split_statements(render_migration(mig.sql, CLUSTER))
    assert any("Distributed(" in s for s in statements)
    for statement in statements:
        formatted = _format(client, statement)
        assert f"ON CLUSTER {CLUSTER}" in formatted, formatted
    events_local = _format(client, next(s for s in statements if "events_local ON CLUSTER" in s))
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local'" in events_local
    distributed = _format(client, next(s for s in statements if "Distributed(" in s))
    assert f"Distributed({CLUSTER}, currentDatabase(), events_local, cityHash64(project_id))" in distributed


def test_the_parser_check_rejects_broken_ddl(client: Client) -> None:
    with pytest.raises(DatabaseError):
        _format(client, f"CREATE TABLE t ON CLUSTER {CLUSTER} (a UInt8 ENGINE = MergeTree ORDER BY a")


def test_final_per_partition_is_exact_for_events(database_url: str) -> None:
    """``EVENTS_FINAL_SETTINGS`` lets ``events FINAL`` merge each partition alone: exact only while the
    partition key is a function of the sorting key (copies of a row then share a partition), and only on
    the table without ``is_deleted``.  A copy stored by a second insert (another part) in the same month,
    beside events of another month, is counted once."""
    assert EVENTS_FINAL_SETTINGS == {"do_not_merge_across_partitions_select_final": 1}
    migrate_clickhouse(database_url)
    c = clickhouse_client(database_url)
    try:
        keys = {
            r[0]: (r[1], r[2])
            for r in c.query(
                "SELECT name, partition_key, sorting_key FROM system.tables WHERE database = currentDatabase()"
            ).result_rows
        }
        assert keys["events"][0] == "toYYYYMM(timestamp)" and "toDate(timestamp)" in keys["events"][1]
        assert keys["sessions"][0] == "" and keys["journey_sessions"][0] == ""  # is_deleted: never with it
        t = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
        insert = (
            "INSERT INTO events (org_id, project_id, event_id, session_id, event_type, timestamp, received_at) "
            "VALUES ({org:UUID}, {project:UUID}, {id:String}, 's', {type:String}, {ts:DateTime64(3, 'UTC')}, "
            "{ts:DateTime64(3, 'UTC')})"
        )
        this_month = datetime.now(UTC).replace(day=1, hour=10, minute=0, second=0, microsecond=0)
        last_month = (this_month - timedelta(days=1)).replace(day=1)  # recent: inside the 365-day TTL
        rows = [("a", "page.view", last_month), ("b", "ui.click", this_month)] * 2
        for event_id, kind, ts in rows:  # one part per insert: the copies sit in other parts of their month
            c.command(insert, parameters={"org": t.org_id, "project": t.project_id, "id": event_id, "type": kind,
                                          "ts": ts}, settings={"insert_deduplicate": 0})  # fmt: skip
        counts = asyncio.run(count_events(c, t, last_month, this_month + timedelta(days=1)))
        assert counts.total == 2 and counts.by_type == [("page.view", 1), ("ui.click", 1)]
    finally:
        c.close()
