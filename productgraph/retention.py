"""Data retention: each project's ``retention_days`` enforced on ClickHouse, and the purge of a deleted project.

Why a job and not only TTL: a ClickHouse TTL is one expression per table, so it cannot differ by project.
The tables' TTL is the global upper bound (3650 days, the largest ``retention_days`` allowed; migration
``deploy/clickhouse/0004_retention_ttl.sql``) and this job removes, per project, what is older than the
project's own retention.

Lifecycle of one pass (:func:`run_pass`; ``productgraph retention`` runs one with ``--once``, else one
every ``--interval`` seconds):

1. list (org, project, retention_days) of every project through the SECURITY DEFINER function
   ``retention_policies()`` (``deploy/postgres/0006_retention.sql``): the app role reads nothing else
   across tenants;
2. per project and table (:data:`RETENTION_COLUMNS`): count the rows older than ``now - retention_days``
   (cheap: the tables are ordered by org, project, time) and, when there are any and it is not a dry run,
   queue ``ALTER TABLE ... DELETE WHERE org_id = .. AND project_id = .. AND <time> < cutoff`` with bound
   parameters.  ClickHouse runs the mutation in the background and durably (it survives a restart), so a
   pass does not wait for the rewrite; the next pass finds nothing left and queues nothing.

A project with no old rows costs one count per table, never a mutation.  The cutoff is computed from the
``now`` passed in (pure planning in :func:`plan`), so tests and dry runs are exact.

:func:`purge_project` removes everything of one (org, project) from every tenant table (MergeTree tables
with ``org_id`` and ``project_id`` columns, found in ``system.columns``, so tables other areas add are
included); the GraphQL ``deleteProject`` mutation uses it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client
from pydantic import Field

from productgraph.clickhouse_ddl import local_name
from productgraph.connections import clickhouse_client
from productgraph.settings import ServerSettings

__all__ = [
    "RETENTION_COLUMNS",
    "Purge",
    "PurgeResult",
    "RetentionPolicy",
    "RetentionSettings",
    "list_policies",
    "plan",
    "purge_project",
    "run_pass",
    "run_retention",
    "tenant_tables",
]

# Tables under per-project retention and the time that ages a row out (the same as in their TTL).
RETENTION_COLUMNS: dict[str, str] = {"events": "timestamp", "sessions": "ended_at", "journey_sessions": "closes_at"}
TENANT_CONDITION = "org_id = {org:UUID} AND project_id = {project:UUID}"
_CLUSTER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RetentionSettings(ServerSettings):
    """``productgraph retention``."""

    retention_interval_s: float = Field(3600.0, description="seconds between two retention passes")
    clickhouse_cluster: str | None = Field(
        None, description="ClickHouse cluster name (deletes go to the shard-local tables ON CLUSTER)"
    )


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    org_id: str
    project_id: str
    retention_days: int


@dataclass(frozen=True, slots=True)
class Purge:
    """Rows of one project in one table older than ``cutoff`` (``None``: all of them)."""

    table: str
    org_id: str
    project_id: str
    cutoff: datetime | None = None

    def condition(self) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"org": self.org_id, "project": self.project_id}
        if self.cutoff is None:
            return TENANT_CONDITION, params
        column = RETENTION_COLUMNS[self.table.removesuffix("_local")]
        cutoff = self.cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"{TENANT_CONDITION} AND {column} < {{cutoff:DateTime64(3, 'UTC')}}", {**params, "cutoff": cutoff}


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purge: Purge
    rows: int
    queued: bool


def plan(policies: Sequence[RetentionPolicy], now: datetime) -> list[Purge]:
    """Every (project, table) purge that ``policies`` ask for at ``now``."""
    return [
        Purge(table, p.org_id, p.project_id, now - timedelta(days=p.retention_days))
        for p in policies
        for table in RETENTION_COLUMNS
    ]


def list_policies(postgres_dsn: str) -> list[RetentionPolicy]:
    """(org, project, retention_days) of every project, through the one narrow cross-tenant function."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT org_id::text, project_id::text, retention_days FROM retention_policies() "
            "ORDER BY org_id, project_id"
        ).fetchall()
    return [RetentionPolicy(r[0], r[1], int(r[2])) for r in rows]


def _delete(ch: Client, purge: Purge, cluster: str | None) -> None:
    if cluster is not None and not _CLUSTER.match(cluster):
        raise ValueError(f"unusable ClickHouse cluster name {cluster!r}")
    where, params = purge.condition()
    table = local_name(purge.table) if cluster and not purge.table.endswith("_local") else purge.table
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    ch.command(f"ALTER TABLE {table}{on_cluster} DELETE WHERE {where}", parameters=params)


def _count(ch: Client, purge: Purge) -> int:
    where, params = purge.condition()
    return int(ch.query(f"SELECT count() FROM {purge.table} WHERE {where}", parameters=params).result_rows[0][0])


def apply(
    ch: Client, purges: Sequence[Purge], *, dry_run: bool = False, cluster: str | None = None
) -> list[PurgeResult]:
    """Count each purge's rows and queue the delete where there are any (nothing queued on a dry run)."""
    out = []
    for purge in purges:
        rows = _count(ch, purge)
        queued = rows > 0 and not dry_run
        if queued:
            _delete(ch, purge, cluster)
        out.append(PurgeResult(purge, rows, queued))
    return out


def tenant_tables(ch: Client) -> list[str]:
    """MergeTree tables of the current database with ``org_id`` and ``project_id`` (shard-local ones in
    cluster mode, where the distributed tables are not MergeTree)."""
    rows = ch.query(
        "SELECT c.table FROM system.columns AS c INNER JOIN system.tables AS t "
        "ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = currentDatabase() AND c.name IN ('org_id', 'project_id') AND t.engine LIKE '%MergeTree' "
        "GROUP BY c.table HAVING count() = 2 ORDER BY c.table"
    ).result_rows
    return [str(r[0]) for r in rows]


def purge_project(ch: Client, org_id: str, project_id: str, cluster: str | None = None) -> list[str]:
    """Queue the deletion of every row of (org, project) in every tenant table; returns the tables."""
    tables = tenant_tables(ch)
    for table in tables:
        _delete(ch, Purge(table, org_id, project_id), cluster)
    return tables


def run_pass(
    settings: RetentionSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], None] = print,
) -> list[PurgeResult]:
    """One retention pass over every project (see the module docstring)."""
    policies = list_policies(settings.postgres_dsn)
    moment = now or datetime.now(UTC)
    ch = clickhouse_client(settings.clickhouse_url, compress=settings.clickhouse_compress)
    try:
        results = apply(ch, plan(policies, moment), dry_run=dry_run, cluster=settings.clickhouse_cluster)
    finally:
        ch.close()
    verb = "would delete" if dry_run else "deleting"
    for r in results:
        if r.rows:
            cutoff = r.purge.cutoff.isoformat() if r.purge.cutoff else "-"
            progress(f"project {r.purge.project_id} {r.purge.table}: {verb} {r.rows} rows before {cutoff}")
    total = sum(r.rows for r in results)
    projects = len(policies)
    progress(f"retention pass: {projects} projects, {total} rows {'to delete' if dry_run else 'queued for deletion'}")
    return results


def run_retention(
    settings: RetentionSettings,
    *,
    once: bool,
    interval_s: float | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = print,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """``--once``: one pass.  Else a pass every ``interval_s``; a failed pass is reported and retried at the
    next interval (ClickHouse or Postgres down must not end the service)."""
    interval = settings.retention_interval_s if interval_s is None else interval_s
    while True:
        started = time.monotonic()
        try:
            run_pass(settings, dry_run=dry_run, progress=progress)
        except Exception as exc:
            if once:
                raise
            progress(f"retention pass failed, retrying in {interval:g} s: {exc}")
        if once:
            return
        while time.monotonic() - started < interval:
            if stop():
                return
            time.sleep(min(1.0, interval))
