"""Per-project configuration of the sessions processor, from Postgres, cached: the session timeout
(``projects.settings`` over ``project_settings_defaults()``) and the active journeys with their steps.

Lifecycle.  :class:`ProjectConfigCache` holds one :class:`ProjectConfig` per project.  The sessions sink
calls :meth:`ProjectConfigCache.prefetch` at the start of every flush with the projects of the batch: a
project never loaded, or loaded more than ``refresh_s`` ago, is (re)loaded from its
:class:`ConfigSource`, so a change in Postgres is used within about ``refresh_s`` plus one batch.  Between
flushes, ``add`` reads the cache synchronously (:meth:`ProjectConfigCache.get`).

Failures.  When the source fails (Postgres down), a project that was loaded before keeps its cached
configuration (retried after another ``refresh_s``); one that was never loaded raises
:class:`ConfigUnavailable`, so the flush fails and the runner retries it with backoff (backpressure: the
batch is not sessionized with a guessed timeout).

:class:`PostgresConfigSource` reads through :func:`productgraph.db.tenant_transaction` with the record's
org id, like every tenant read (RLS); a project id that is not a project of that org reads as the
defaults with no journeys.  :class:`MemoryConfigSource` is the fake for unit tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from productgraph.admin import JourneyDefinition, load_journeys
from productgraph.db import open_pool, tenant_transaction
from schemas.matchers import MatcherError, parse_matcher
from stream_processors.journeys import JourneySpec, JourneyStep
from stream_processors.sessionize import MINUTE_MS, SessionPolicy

__all__ = [
    "ConfigSource",
    "ConfigUnavailable",
    "MemoryConfigSource",
    "PostgresConfigSource",
    "ProjectConfig",
    "ProjectConfigCache",
    "journey_specs",
]

log = logging.getLogger("productgraph.processor.config")

DEFAULT_TIMEOUT_MINUTES = 30


class ConfigUnavailable(RuntimeError):
    """No configuration was ever loaded for a project and its source fails: the flush must wait."""


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    session_timeout_minutes: int = DEFAULT_TIMEOUT_MINUTES
    journeys: tuple[JourneySpec, ...] = ()

    def policy(self, base: SessionPolicy) -> SessionPolicy:
        return replace(base, timeout_ms=self.session_timeout_minutes * MINUTE_MS)


def journey_specs(definitions: Collection[JourneyDefinition]) -> tuple[JourneySpec, ...]:
    """Active journeys with at least one step, steps by position.  A journey with a matcher that no longer
    parses is left out (logged): computing it with a step missing would report wrong progress."""
    out: list[JourneySpec] = []
    for d in definitions:
        if not d.is_active or not d.steps:
            continue
        try:
            steps = tuple(
                JourneyStep(s.id, s.position, parse_matcher(s.matcher))
                for s in sorted(d.steps, key=lambda s: s.position)
            )
        except MatcherError as exc:
            log.warning("journey %s left out: a step matcher does not parse (%s)", d.id, exc)
            continue
        out.append(JourneySpec(d.id, d.timeout_minutes * MINUTE_MS, steps))
    return tuple(out)


class ConfigSource(Protocol):
    async def load(self, org_id: str, project_id: str) -> ProjectConfig: ...

    async def close(self) -> None: ...


_SETTINGS_SQL = (
    "SELECT project_settings_defaults() || coalesce((SELECT settings FROM projects WHERE id::text = %s), '{}'::jsonb)"
)


def _timeout(settings: Any) -> int:
    value = settings.get("session_timeout_minutes") if isinstance(settings, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1440:
        return value
    return DEFAULT_TIMEOUT_MINUTES


class PostgresConfigSource:
    """Reads with the app role under RLS.  The pool opens lazily on the first load (inside the event loop)."""

    def __init__(self, dsn: str, max_size: int = 2) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None

    async def _open(self) -> AsyncConnectionPool:
        if self._pool is None:
            pool = open_pool(self._dsn, min_size=1, max_size=self._max_size)
            await pool.open(wait=False)
            self._pool = pool
        return self._pool

    async def load(self, org_id: str, project_id: str) -> ProjectConfig:
        pool = await self._open()
        async with tenant_transaction(pool, org_id) as conn:
            cur = await conn.execute(_SETTINGS_SQL, (project_id,))
            row = await cur.fetchone()
        definitions = await load_journeys(pool, org_id, project_id)
        return ProjectConfig(_timeout(row[0] if row else None), journey_specs(definitions))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


@dataclass
class MemoryConfigSource:
    """In-memory :class:`ConfigSource`: ``configs`` by project id (missing: defaults), ``loads`` counts
    calls, ``fail`` raises like a Postgres that is down."""

    configs: dict[str, ProjectConfig] = field(default_factory=dict)
    loads: int = 0
    fail: bool = False

    async def load(self, org_id: str, project_id: str) -> ProjectConfig:
        if self.fail:
            raise ConnectionError("postgres down")
        self.loads += 1
        return self.configs.get(project_id, ProjectConfig())

    async def close(self) -> None:
        return None


@dataclass
class _Entry:
    config: ProjectConfig
    checked_at: float


class ProjectConfigCache:
    """The configurations the sink uses; see the module docstring for when they are (re)loaded."""

    def __init__(
        self, source: ConfigSource, refresh_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._refresh_s = refresh_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, project_id: str) -> ProjectConfig | None:
        entry = self._entries.get(project_id)
        return entry.config if entry is not None else None

    async def prefetch(self, projects: Collection[tuple[str, str]]) -> None:
        """(Re)load the stale ones of ``projects`` ((org_id, project_id) pairs)."""
        now = self._clock()
        missing: list[str] = []
        failure: Exception | None = None  # after one failure the source counts as down for this round
        for org_id, project_id in sorted(set(projects)):
            entry = self._entries.get(project_id)
            if entry is not None and now - entry.checked_at < self._refresh_s:
                continue
            if failure is None:
                try:
                    self._entries[project_id] = _Entry(await self._source.load(org_id, project_id), now)
                    continue
                except Exception as exc:
                    failure = exc
                    log.warning("project configuration not loadable (%s); cached ones stay in use", exc)
            if entry is None:
                missing.append(project_id)
            else:
                entry.checked_at = now  # keep the cached one; try again after refresh_s
        if missing:
            raise ConfigUnavailable(f"no configuration loaded yet for project(s) {', '.join(missing)}")

    async def close(self) -> None:
        await self._source.close()
