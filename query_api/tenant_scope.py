"""The tenant boundary for ClickHouse and Redis, which have no row-level security of their own.

A :class:`Tenant` is what ``QueryContext.tenant()`` returns for a project of the caller's org (from the
access token, never from arguments).  Every ClickHouse read goes through :func:`scoped_query`, which

* binds ``org`` and ``project`` from the tenant itself (a caller cannot pass or override them),
* refuses SQL in which any table read (``FROM``/``JOIN`` of a table, not of a subquery or a ``WITH``
  name) lacks its own ``org_id = {org:UUID} AND project_id = {project:UUID}`` condition,

and every Redis key is built by :func:`redis_key` under the tenant's project.  Values always travel as
bound parameters (``{name:Type}``); nothing from input is pasted into SQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

__all__ = ["TENANT_FILTER", "Tenant", "UnscopedQuery", "check_scoped", "redis_key", "scoped_query"]

TENANT_FILTER = "org_id = {org:UUID} AND project_id = {project:UUID}"

_FILTER = re.compile(r"(?:\b\w+\.)?org_id\s*=\s*\{org:UUID\}\s+AND\s+(?:\b\w+\.)?project_id\s*=\s*\{project:UUID\}")
_TABLE_READ = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\b(?!\s*\()", re.IGNORECASE)
_CTE_NAME = re.compile(r"(?:\bWITH|,)\s*([A-Za-z_]\w*)\s+AS\s*\(", re.IGNORECASE)
_KIND = re.compile(r"^[a-z][a-z_]{0,39}$")
_RESERVED = {"org", "project"}


@dataclass(frozen=True, slots=True)
class Tenant:
    org_id: str
    project_id: str


class UnscopedQuery(RuntimeError):
    """A programming error: SQL that could read outside the tenant.  Never shown to callers."""


def check_scoped(sql: str) -> None:
    """Raise :class:`UnscopedQuery` unless every table read in ``sql`` carries the tenant condition."""
    ctes = {m.group(1).lower() for m in _CTE_NAME.finditer(sql)}
    tables = [m.group(1) for m in _TABLE_READ.finditer(sql) if m.group(1).lower() not in ctes]
    if not tables:
        raise UnscopedQuery("no table read found; tenant-scoped queries read tenant tables")
    filters = len(_FILTER.findall(sql))
    if filters < len(tables):
        raise UnscopedQuery(
            f"{len(tables)} table read(s) ({', '.join(tables)}) but {filters} tenant condition(s) '{TENANT_FILTER}'"
        )


def tenant_parameters(tenant: Tenant, params: Mapping[str, Any] | None) -> dict[str, Any]:
    clash = _RESERVED & set(params or {})
    if clash:
        raise UnscopedQuery(f"parameter(s) {sorted(clash)} are set from the tenant, not by the caller")
    return {**(params or {}), "org": tenant.org_id, "project": tenant.project_id}


async def scoped_query(
    ch: Client,
    tenant: Tenant,
    sql: str,
    params: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> QueryResult:
    """Run a read in a worker thread, scoped to ``tenant``: the one way the query API reads ClickHouse."""
    check_scoped(sql)
    bound = tenant_parameters(tenant, params)
    return await asyncio.to_thread(ch.query, sql, parameters=bound, settings=dict(settings or {}))


def redis_key(tenant: Tenant, kind: str, *parts: str) -> str:
    """``{kind}:{project_id}:{part}:...``; the project id comes from the tenant (ids are unique across orgs).

    The layout matches what the processors write (``session:{project_id}:{session_id}``).
    """
    if not _KIND.match(kind):
        raise ValueError(f"redis key kind {kind!r} must be lower-case letters and underscores")
    return ":".join((kind, tenant.project_id, *parts))
