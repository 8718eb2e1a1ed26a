"""The tenant boundary for ClickHouse and Redis, which have no row-level security of their own.

A :class:`Tenant` is what ``QueryContext.tenant()`` returns for a project of the caller's org (from the
access token, never from arguments).  Every ClickHouse read goes through :func:`scoped_query`, which

* binds ``org`` and ``project`` from the tenant itself (a caller cannot pass or override them),
* refuses SQL in which any table read (``FROM``/``JOIN`` of a table, not of a subquery or a ``WITH``
  name) lacks its own ``org_id = {org:UUID} AND project_id = {project:UUID}`` condition,

and every Redis key is built by :func:`redis_key` under the tenant's project.  Values always travel as
bound parameters (``{name:Type}``); nothing from input is pasted into SQL.

Time budget: each read gets ``max_execution_time`` (the server stops it by itself) and its own query id.
When the caller stops waiting first (the request's timeout, a cancelled task, a client that went away),
the query is killed on the server (``KILL QUERY``) instead of running on for nobody.  The id is also sent
as the ``log_comment`` setting, because the dev chDB endpoint does not forward ``query_id`` (and SQL
comments do not survive into ``system.processes`` once parameters are bound); ``KILL`` matches either.
A timeout reaches the caller as :class:`QueryTimeout`, a user error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.query import QueryResult

from query_api.errors import UserError

__all__ = [
    "EVENTS_FINAL_SETTINGS",
    "READ_SETTINGS",
    "TENANT_FILTER",
    "QueryTimeout",
    "Tenant",
    "UnscopedQuery",
    "check_scoped",
    "delete_project_keys",
    "kill_query",
    "read_settings",
    "redis_key",
    "scoped_query",
]

log = logging.getLogger(__name__)

TENANT_FILTER = "org_id = {org:UUID} AND project_id = {project:UUID}"

# Settings of a read whose only ``FINAL`` table is ``events``: ``FINAL`` then merges each month partition on
# its own (in parallel, and a partition that is one merged part is read as it is) instead of across all of
# them.  Exact for ``events``: its partition key (``toYYYYMM(timestamp)``) is a function of its sorting key
# (which holds ``toDate(timestamp)``), so the rows that ``FINAL`` collapses always share a partition
# (tests/integration/test_clickhouse_ddl.py checks both keys).  Not for the tables with ``is_deleted``.
# Event counts by type over 90 days of 10M events: p50 255 -> 216 ms.
EVENTS_FINAL_SETTINGS: Mapping[str, Any] = {"do_not_merge_across_partitions_select_final": 1}

_FILTER = re.compile(r"(?:\b\w+\.)?org_id\s*=\s*\{org:UUID\}\s+AND\s+(?:\b\w+\.)?project_id\s*=\s*\{project:UUID\}")
_TABLE_READ = re.compile(r"\b(?:FROM|(?<!ARRAY\s)JOIN)\s+([A-Za-z_][\w.]*)\b(?!\s*\()", re.IGNORECASE)
_CTE_NAME = re.compile(r"(?:\bWITH|,)\s*([A-Za-z_]\w*)\s+AS\s*\(", re.IGNORECASE)
_KIND = re.compile(r"^[a-z][a-z_]{0,39}$")
_RESERVED = {"org", "project"}


@dataclass(frozen=True, slots=True)
class Tenant:
    org_id: str
    project_id: str


class UnscopedQuery(RuntimeError):
    """A programming error: SQL that could read outside the tenant.  Never shown to callers."""


class QueryTimeout(UserError):
    """The analytics query did not finish within its time budget; it no longer runs on the server."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"query timed out after {timeout_s:g} s and was cancelled; narrow the date range or the filters"
        )


# Seconds the client waits beyond max_execution_time: the server's own timeout error normally comes first.
_GRACE_S = 1.0
_KILL_TIMEOUT_S = 5.0
_KILL = "KILL QUERY WHERE query_id = {qid:String} OR Settings['log_comment'] = {qid:String} SYNC"
_pending_kills: set[asyncio.Future[None]] = set()


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


# Settings every query API read runs with (a caller's own settings win): skip indexes applied while
# planning, so that the identity pass of funnels, retention, cohorts and trends skips the granules without
# any anonymous id by the ``anon_ids`` index (deploy/clickhouse/0006); evaluated while reading (the default
# of recent versions) it read the column anyway.
READ_SETTINGS: Mapping[str, Any] = {"use_skip_indexes_on_data_read": 0}
# Tuning settings that older ClickHouse versions do not have: sent only to a server that lists them (the
# answer does not depend on them), so one query text serves every supported version.
VERSION_SETTINGS = frozenset({"use_skip_indexes_on_data_read"})


def read_settings(ch: Client, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings of a read through ``ch``: :data:`READ_SETTINGS`, then ``settings``, without the
    :data:`VERSION_SETTINGS` that the server does not have."""
    merged = {**READ_SETTINGS, **(settings or {})}
    return {k: v for k, v in merged.items() if k not in VERSION_SETTINGS or k in ch.server_settings}


async def scoped_query(
    ch: Client,
    tenant: Tenant,
    sql: str,
    params: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
) -> QueryResult:
    """Run a read in a worker thread, scoped to ``tenant``: the one way the query API reads ClickHouse.

    With ``timeout_s`` the read is bounded on the server (``max_execution_time``) and here; either way a
    read this coroutine stops waiting for is killed on the server.
    """
    check_scoped(sql)
    bound = tenant_parameters(tenant, params)
    query_id = f"pgq-{uuid.uuid4().hex}"
    options = {**read_settings(ch, settings), "query_id": query_id, "log_comment": query_id}
    if timeout_s is not None:
        options["max_execution_time"] = max(1, math.ceil(timeout_s))
    try:
        async with asyncio.timeout(None if timeout_s is None else timeout_s + _GRACE_S):
            return await asyncio.to_thread(ch.query, sql, parameters=bound, settings=options)
    except TimeoutError:
        await _kill_now(ch, query_id)
        raise QueryTimeout(timeout_s or 0) from None
    except asyncio.CancelledError:
        _kill_later(ch, query_id)
        raise
    except DatabaseError as exc:
        if timeout_s is not None and "TIMEOUT_EXCEEDED" in str(exc):
            raise QueryTimeout(timeout_s) from None
        raise


def kill_query(ch: Client, query_id: str) -> None:
    """Kill a query of ours on the server (blocking; a query that already ended is no error)."""
    ch.command(_KILL, parameters={"qid": query_id}, settings={"max_execution_time": math.ceil(_KILL_TIMEOUT_S)})


async def _kill_now(ch: Client, query_id: str) -> None:
    try:
        async with asyncio.timeout(_KILL_TIMEOUT_S):
            await asyncio.to_thread(kill_query, ch, query_id)
    except Exception as exc:  # max_execution_time still ends it on the server
        log.warning("could not kill ClickHouse query %s: %s", query_id, exc)


def _kill_later(ch: Client, query_id: str) -> None:
    """From a cancelled task, which must not wait: kill in a worker thread, keeping a reference to it."""
    future = asyncio.get_running_loop().run_in_executor(None, kill_query, ch, query_id)
    _pending_kills.add(future)

    def done(f: asyncio.Future[None]) -> None:
        _pending_kills.discard(f)
        if not f.cancelled() and f.exception() is not None:
            log.warning("could not kill ClickHouse query %s: %s", query_id, f.exception())

    future.add_done_callback(done)


def redis_key(tenant: Tenant, kind: str, *parts: str) -> str:
    """``{kind}:{project_id}:{part}:...``; the project id comes from the tenant (ids are unique across orgs).

    The layout matches what the processors write (``session:{project_id}:{session_id}``).
    """
    if not _KIND.match(kind):
        raise ValueError(f"redis key kind {kind!r} must be lower-case letters and underscores")
    return ":".join((kind, tenant.project_id, *parts))


async def delete_project_keys(redis: aioredis.Redis, project_id: str, batch: int = 1000) -> int:
    """Delete every Redis key of a project (``kind:{project_id}:...`` here, ``pg:{{project_id}}:...`` in the
    gateway): a SCAN over the keyspace, so it runs once, when a project is deleted.  Returns the count."""
    if not re.fullmatch(r"[0-9a-f-]{36}", project_id):
        raise ValueError(f"not a project id: {project_id!r}")
    deleted, keys = 0, []
    async for key in redis.scan_iter(match=f"*{project_id}*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += await redis.unlink(*keys)
            keys = []
    if keys:
        deleted += await redis.unlink(*keys)
    return int(deleted)
