"""``productgraph migrate``: numbered SQL migrations for Postgres and ClickHouse, and the Kafka topics.

Idempotent: each applied file is recorded in a ``schema_migrations`` ledger (one per database) and
skipped afterwards; Postgres migrations run one transaction per file under an advisory lock so that two
migrators never interleave.  The Postgres app role is created here (password from settings) because
roles are cluster-wide and passwords do not belong in SQL files.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from productgraph.clickhouse_ddl import create_database, ledger_table, render_migration
from productgraph.connections import ClickHouseTarget, clickhouse_client
from productgraph.settings import MigrateSettings
from schemas.topics import TOPICS

__all__ = ["APP_ROLE", "Migration", "load_migrations", "migrate_all", "migrate_clickhouse", "migrate_postgres"]

log = logging.getLogger(__name__)
APP_ROLE = "productgraph_app"
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"migration file {path} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {folder}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a ClickHouse script on ``;`` at line ends (our files keep one statement per block)."""
    lines = [ln for ln in script.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", "\n".join(lines)) if s.strip()]


def migrate_postgres(admin_dsn: str, app_password: str, folder: Path | None = None) -> list[str]:
    """Apply pending Postgres migrations; returns the names applied."""
    applied: list[str] = []
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(727274)")
        try:
            _ensure_app_role(conn, app_password)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for mig in load_migrations((folder or DEPLOY_DIR) / "postgres"):
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())  # bytes: a script, no parameter parsing
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                    )
                applied.append(f"postgres {mig.version:04d}_{mig.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(727274)")
    return applied


def _ensure_app_role(conn: psycopg.Connection[tuple[object, ...]], password: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(APP_ROLE), sql.Literal(password)
        )
    )


def migrate_clickhouse(
    url: str, *, compress: bool = False, folder: Path | None = None, cluster: str | None = None
) -> list[str]:
    """Create the database and apply pending ClickHouse migrations; returns the names applied.

    With ``cluster``, every statement is rendered for that cluster (:mod:`productgraph.clickhouse_ddl`).
    """
    target = ClickHouseTarget(url)
    bootstrap = clickhouse_client(url, compress=compress, database=None)
    bootstrap.command(create_database(target.database, cluster))
    bootstrap.close()
    client = clickhouse_client(url, compress=compress)
    client.command(ledger_table(cluster))
    done = {int(r[0]) for r in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for mig in load_migrations((folder or DEPLOY_DIR) / "clickhouse"):
        if mig.version in done:
            continue
        for statement in split_statements(render_migration(mig.sql, cluster)):
            client.command(statement)
        client.insert("schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
        applied.append(f"clickhouse {mig.version:04d}_{mig.name}")
    client.close()
    return applied


async def ensure_all_topics(
    bootstrap: str, partitions_override: dict[str, int] | None = None, *, replication_factor: int = 1
) -> None:
    from productgraph.localstack.kafka import ensure_topics

    wanted = {t.name: t.partitions for t in TOPICS}
    wanted.update(partitions_override or {})
    await ensure_topics(bootstrap, wanted, replication_factor=replication_factor)


def migrate_all(settings: MigrateSettings, progress: Callable[[str], None] = print) -> None:
    """Postgres, ClickHouse, then Kafka topics, reporting each step."""
    from schemas.topics import EVENTS

    for name in migrate_postgres(settings.postgres_admin_dsn, settings.postgres_app_password):
        progress(f"applied {name}")
    for name in migrate_clickhouse(
        settings.clickhouse_url, compress=settings.clickhouse_compress, cluster=settings.clickhouse_cluster
    ):
        progress(f"applied {name}")
    asyncio.run(
        ensure_all_topics(
            settings.kafka_bootstrap,
            {EVENTS.name: settings.events_topic_partitions},
            replication_factor=settings.kafka_replication_factor,
        )
    )
    progress("kafka topics ready: " + ", ".join(t.name for t in TOPICS))
