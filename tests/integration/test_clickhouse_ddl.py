"""The ClickHouse migrations on a real engine: single-node DDL executed, cluster-mode DDL parsed.

Both come from the same files (``deploy/clickhouse``) through :mod:`productgraph.clickhouse_ddl`.  The
cluster rendering cannot run here (``ON CLUSTER`` needs a cluster and Keeper), so each rendered statement
goes through the server's own SQL parser with ``formatQuery``; a broken statement is shown to fail there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from productgraph.clickhouse_ddl import create_database, ledger_table, render_migration
from productgraph.connections import clickhouse_client
from productgraph.migrate import DEPLOY_DIR, load_migrations, migrate_clickhouse, split_statements

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
