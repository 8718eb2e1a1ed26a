"""Where the sessionizer keeps state: live sessions in Redis, and the segment index of the warehouse.

:class:`SessionStore` (Redis; :class:`MemorySessionStore` is its fake) loads and saves, per session id, the
ledger and live events of :mod:`stream_processors.sessionize` in the layout of :mod:`schemas.sessions`.
``save`` writes the sessions of a batch with one Lua script per chunk of sessions: a session's ledger,
events, live view, journey entries and its contribution to the project's real-time counters
(:class:`RealtimeUpdate`) change together or not at all, so a crash never leaves a ledger that disagrees
with its events, and counters move exactly when the events that moved them become stored: a replayed batch
finds them stored (duplicates, nothing applied, nothing counted), a batch that died before its save
counted nothing.  Session writes are absolute values; the counter increments are fenced that way.

:class:`SegmentIndex` (ClickHouse ``sessions``; :class:`MemorySessionsTable` is the fake of the table)
answers, for session ids Redis knows nothing about, which segments the warehouse already has, so that a
session id that comes back after its live state expired continues its numbering instead of overwriting
segment 1 (see :func:`stream_processors.sessionize.ledger_from_archive`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client

from schemas.rows import SESSION_COLUMNS
from schemas.sessions import RT_ACTIVE_KEEP_MS, LiveEvent, SessionSummary, events_key, live_key
from stream_processors.sessionize import ArchivedSegment, Ledger, SessionUpdate

__all__ = [
    "ClickHouseSegmentIndex",
    "MemorySessionStore",
    "MemorySessionsTable",
    "RealtimeUpdate",
    "RedisSessionStore",
    "SegmentIndex",
    "SessionKey",
    "SessionStore",
    "SessionWrite",
    "StoredSession",
    "ledger_fields",
    "live_view_fields",
    "parse_journey_entries",
    "parse_ledger",
]


@dataclass(frozen=True, slots=True, order=True)
class SessionKey:
    org_id: str
    project_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class StoredSession:
    ledger: Ledger | None  # None: no live state (new, expired, or never saved)
    events: Mapping[str, LiveEvent]
    journey_entries: frozenset[str] = frozenset()  # step entries already counted (schemas.sessions LEDGER_FIELDS)


@dataclass(frozen=True, slots=True)
class RealtimeUpdate:
    """A session's contribution to its project's real-time keys (schemas.sessions ``rt:``), applied with
    its state: ``counters`` (key, delta, expire at in Unix seconds), ``active`` (sorted-set key, member,
    score in ms) added with ``ZADD GT``."""

    counters: tuple[tuple[str, int, int], ...] = ()
    active: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SessionWrite:
    key: SessionKey
    update: SessionUpdate
    ttl_s: int
    timeout_ms: int
    reset_events: bool = False  # the stored events belong to no ledger: replace them, do not add to them
    journey_entries: frozenset[str] = frozenset()
    realtime: RealtimeUpdate = field(default_factory=RealtimeUpdate)


ACTIVE_SET_TTL_S = 3600  # an active set of a project without events disappears after this


def parse_journey_entries(h: Mapping[str, str]) -> frozenset[str]:
    raw = h.get("journey_entries")
    if not raw:
        return frozenset()
    value = orjson.loads(raw)
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


def ledger_fields(ledger: Ledger) -> dict[str, int]:
    out = {"segments": ledger.segments, "sealed": ledger.sealed, "version": ledger.version}
    if ledger.sealed_end_ms is not None:
        out["sealed_end_ms"] = ledger.sealed_end_ms
    if ledger.frontier_ms is not None:
        out["frontier_ms"] = ledger.frontier_ms
    return out


def parse_ledger(h: Mapping[str, str]) -> Ledger | None:
    if "version" not in h:
        return None

    def opt(name: str) -> int | None:
        return int(h[name]) if h.get(name) else None

    return Ledger(
        segments=int(h.get("segments", 0)),
        sealed=int(h.get("sealed", 0)),
        sealed_end_ms=opt("sealed_end_ms"),
        frontier_ms=opt("frontier_ms"),
        version=int(h["version"]),
    )


def live_view_fields(live: SessionSummary, last_event_type: str, timeout_ms: int) -> dict[str, str | int]:
    out: dict[str, str | int] = {
        "event_count": live.event_count,
        "started_ms": live.started_ms,
        "last_ms": live.ended_ms,
        "last_event_type": last_event_type,
        "page_views": live.page_views,
        "error_count": live.error_count,
        "segment": live.segment,
        "closes_at_ms": live.ended_ms + timeout_ms,
    }
    if live.user_id:
        out["user_id"] = live.user_id
    if live.exit_page:
        out["current_page"] = live.exit_page
    return out


class SessionStore(Protocol):
    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        """The stored state of each key, and the store's clock in microseconds (a version floor)."""
        ...

    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        """Save atomically per session; active sets touched are trimmed of members older than
        ``now_ms - RT_ACTIVE_KEEP_MS`` (``now_ms`` 0: no trim)."""
        ...

    async def ping(self) -> bool: ...


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


# Saves the sessions of a flush atomically (a script runs alone; its effects reach the AOF and replicas as
# one transaction).  KEYS: live, events per session.  ARGV: trim cutoff of the active sets (ms, 0: none),
# their TTL; then per session: ttl, reset (0/1), n_added, then n_added (event id, packed event) pairs, then
# a JSON array of dropped event ids and a JSON array of the live hash as [field, value, ...] strings (one
# argument each instead of dozens); last, the chunk's real-time updates summed (the chunk is one atomic
# unit, so summing changes nothing but the number of commands) as JSON [[[key, delta, expireat], ...],
# [[key, member, score], ...]] (numbers as strings: Lua would print large ones in exponent form).
# The rt: keys travel in ARGV: like the sessions of one chunk they are not in one cluster slot anyway.
_SAVE = """
local cutoff, zttl = ARGV[1], ARGV[2]
local zsets = {}
local a = 3
for k = 1, #KEYS, 2 do
  local live, events = KEYS[k], KEYS[k + 1]
  local ttl, reset, added = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if reset == '1' then redis.call('DEL', events) end
  local i = 0
  while i < added do
    local n = math.min(added - i, 500)
    redis.call('HSET', events, unpack(ARGV, a + 2 * i, a + 2 * (i + n) - 1))
    i = i + n
  end
  a = a + 2 * added
  local dropped = cjson.decode(ARGV[a])
  for j = 1, #dropped, 500 do
    redis.call('HDEL', events, unpack(dropped, j, math.min(j + 499, #dropped)))
  end
  redis.call('DEL', live)
  redis.call('HSET', live, unpack(cjson.decode(ARGV[a + 1])))
  a = a + 2
  redis.call('EXPIRE', live, ttl)
  if redis.call('EXISTS', events) == 1 then redis.call('EXPIRE', events, ttl) end
end
local rt = cjson.decode(ARGV[a])
for _, c in ipairs(rt[1]) do
  redis.call('INCRBY', c[1], c[2])
  redis.call('EXPIREAT', c[1], c[3])
end
for _, z in ipairs(rt[2]) do
  redis.call('ZADD', z[1], 'GT', z[3], z[2])
  zsets[z[1]] = true
end
for key in pairs(zsets) do
  if cutoff ~= '0' then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff) end
  redis.call('EXPIRE', key, zttl)
end
return #KEYS / 2
"""


class RedisSessionStore:
    """Redis, with a bounded cache of the live events this process loaded or saved.  A cached session is
    used only while its ledger version in Redis is the one cached (one small ``HGETALL`` of the live hash
    per session and flush); any other writer (a previous owner of the partition, an expiry) changes or
    removes the version and the events are read again.  ``save`` runs one script per ``chunk`` sessions."""

    def __init__(self, redis: aioredis.Redis, cache_events: int = 500_000, chunk: int = 500) -> None:
        self._redis = redis
        self._save = redis.register_script(_SAVE)
        self._cache: OrderedDict[SessionKey, tuple[int, dict[str, LiveEvent]]] = OrderedDict()
        self._cached = 0
        self._cache_events = cache_events
        self._chunk = chunk
        self._loaded: dict[SessionKey, Mapping[str, LiveEvent]] = {}

    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for k in keys:
                pipe.hgetall(live_key(k.project_id, k.session_id))
            replies: list[Any] = await pipe.execute()
        seconds, micros = replies[0]
        hashes = {k: {_text(f): _text(v) for f, v in replies[1 + i].items()} for i, k in enumerate(keys)}
        ledgers = {k: parse_ledger(h) for k, h in hashes.items()}
        events: dict[SessionKey, Mapping[str, LiveEvent]] = {}
        missing: list[SessionKey] = []
        for k, ledger in ledgers.items():
            cached = self._cache.get(k)
            if ledger is not None and cached is not None and cached[0] == ledger.version:
                events[k] = cached[1]
                self._cache.move_to_end(k)
            else:
                missing.append(k)
        if missing:
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in missing:
                    pipe.hgetall(events_key(k.project_id, k.session_id))
                for k, raw in zip(missing, await pipe.execute(), strict=True):
                    events[k] = {_text(f): LiveEvent.unpack(_text(f), v) for f, v in raw.items()}
        self._loaded = events
        stored = {k: StoredSession(ledgers[k], events[k], parse_journey_entries(hashes[k])) for k in keys}
        return stored, int(seconds) * 1_000_000 + int(micros)

    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        cutoff = max(0, now_ms - RT_ACTIVE_KEEP_MS) if now_ms else 0
        for i in range(0, len(writes), self._chunk):
            chunk = writes[i : i + self._chunk]
            keys: list[str] = []
            args: list[Any] = [cutoff, ACTIVE_SET_TTL_S]
            for w in chunk:
                keys += [live_key(w.key.project_id, w.key.session_id), events_key(w.key.project_id, w.key.session_id)]
                u = w.update
                fields: dict[str, str | int] = dict(ledger_fields(u.ledger))
                if u.live is not None:
                    fields.update(live_view_fields(u.live, u.last_event_type, w.timeout_ms))
                if w.journey_entries:
                    fields["journey_entries"] = orjson.dumps(sorted(w.journey_entries)).decode()
                args += [w.ttl_s, 1 if w.reset_events else 0, len(u.added)]
                for e in u.added:
                    args += [e.event_id, e.pack()]
                args.append(orjson.dumps(sorted(u.dropped)))
                args.append(orjson.dumps([str(x) for pair in fields.items() for x in pair]))
            args.append(_realtime_arg([w.realtime for w in chunk]))
            await self._save(keys=keys, args=args)
            for w in chunk:
                self._remember(w)

    def _remember(self, w: SessionWrite) -> None:
        base = {} if w.reset_events else self._loaded.get(w.key, {})
        events = {k: v for k, v in base.items() if k not in w.update.dropped}
        events.update((e.event_id, e) for e in w.update.added)
        old = self._cache.pop(w.key, None)
        self._cached -= len(old[1]) if old else 0
        self._cache[w.key] = (w.update.ledger.version, events)
        self._cached += len(events)
        while self._cached > self._cache_events and self._cache:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._cached -= len(evicted)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False


def _realtime_arg(updates: Sequence[RealtimeUpdate]) -> bytes:
    """The sum of ``updates``: deltas added per key, the highest score per (set, member)."""
    counters: dict[str, tuple[int, int]] = {}
    active: dict[tuple[str, str], int] = {}
    for rt in updates:
        for key, delta, at in rt.counters:
            before = counters.get(key, (0, at))[0]
            counters[key] = (before + delta, at)
        for key, member, score in rt.active:
            active[(key, member)] = max(score, active.get((key, member), score))
    summed = [[k, str(d), str(at)] for k, (d, at) in sorted(counters.items()) if d]
    return orjson.dumps([summed, [[k, m, str(score)] for (k, m), score in sorted(active.items())]])


@dataclass
class MemorySessionStore:
    """In-memory :class:`SessionStore`: no TTL (``expire`` does it), a clock in microseconds that tests move,
    and ``fail`` to make calls raise like a server that is down.  ``counters`` and ``active`` are the
    real-time keys (``expire_at``: when each counter would expire)."""

    ledgers: dict[SessionKey, Ledger] = field(default_factory=dict)
    events: dict[SessionKey, dict[str, LiveEvent]] = field(default_factory=dict)
    views: dict[SessionKey, dict[str, str | int]] = field(default_factory=dict)
    entries: dict[SessionKey, frozenset[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    expire_at: dict[str, int] = field(default_factory=dict)
    active: dict[str, dict[str, int]] = field(default_factory=dict)
    clock_us: int = 0
    fail: bool = False

    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        self._check()
        self.clock_us += 1
        out = {
            k: StoredSession(self.ledgers.get(k), dict(self.events.get(k, {})), self.entries.get(k, frozenset()))
            for k in keys
        }
        return out, self.clock_us

    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        self._check()
        touched: set[str] = set()
        for w in writes:
            self.entries[w.key] = w.journey_entries
            for key, delta, at in w.realtime.counters:
                self.counters[key] = self.counters.get(key, 0) + delta
                self.expire_at[key] = at
            for key, member, score in w.realtime.active:
                members = self.active.setdefault(key, {})
                members[member] = max(score, members.get(member, score))
                touched.add(key)
        if now_ms:
            for key in touched:
                members = self.active[key]
                for member in [m for m, score in members.items() if score < now_ms - RT_ACTIVE_KEEP_MS]:
                    del members[member]
        for w in writes:
            events = {} if w.reset_events else self.events.setdefault(w.key, {})
            for event_id in w.update.dropped:
                events.pop(event_id, None)
            events.update({e.event_id: e for e in w.update.added})
            self.events[w.key] = events
            self.ledgers[w.key] = w.update.ledger
            if w.update.live is not None:
                self.views[w.key] = live_view_fields(w.update.live, w.update.last_event_type, w.timeout_ms)

    def expire(self, key: SessionKey) -> None:
        """What the TTL does: forget everything about ``key``."""
        self.ledgers.pop(key, None)
        self.events.pop(key, None)
        self.views.pop(key, None)
        self.entries.pop(key, None)

    async def ping(self) -> bool:
        return not self.fail

    def _check(self) -> None:
        if self.fail:
            raise ConnectionError("session store down")


class SegmentIndex(Protocol):
    async def segments(self, keys: Sequence[SessionKey]) -> dict[SessionKey, list[ArchivedSegment]]:
        """The visible (``FINAL``, not deleted) segments the warehouse has of each key, if any."""
        ...


_INDEX_SQL = """
SELECT toString(project_id), session_id, segment, toUnixTimestamp64Milli(ended_at), version
FROM sessions FINAL
WHERE project_id IN {projects:Array(UUID)} AND session_id IN {sessions:Array(String)}
"""


class ClickHouseSegmentIndex:
    def __init__(self, client: Client, chunk: int = 5000) -> None:
        self._client = client
        self._chunk = chunk

    async def segments(self, keys: Sequence[SessionKey]) -> dict[SessionKey, list[ArchivedSegment]]:
        out: dict[SessionKey, list[ArchivedSegment]] = {}
        for i in range(0, len(keys), self._chunk):
            out.update(await asyncio.to_thread(self._query, keys[i : i + self._chunk]))
        return out

    def _query(self, keys: Sequence[SessionKey]) -> dict[SessionKey, list[ArchivedSegment]]:
        wanted = {(k.project_id, k.session_id): k for k in keys}
        params = {
            "projects": sorted({k.project_id for k in keys}),
            "sessions": sorted({k.session_id for k in keys}),
        }
        out: dict[SessionKey, list[ArchivedSegment]] = {}
        result = self._client.query(_INDEX_SQL, parameters=params)
        for project, session, segment, ended_ms, version in result.result_rows:
            key = wanted.get((project, session))  # the IN lists also match other pairs of the two sets
            if key is not None:
                out.setdefault(key, []).append(ArchivedSegment(int(segment), int(ended_ms), int(version)))
        return out


@dataclass
class MemorySessionsTable:
    """In-memory ``sessions`` table, both :class:`SegmentIndex` and the ``RowWriter`` that fills it, with
    ReplacingMergeTree(version, is_deleted) semantics and insert dedup tokens.  ``rows`` maps (project,
    session, segment) to the latest (version, is_deleted, row), ``journey_rows`` the same for
    ``journey_sessions`` by (project, journey, session, segment); ``fail`` raises like a server that is down."""

    rows: dict[tuple[str, str, int], tuple[int, int, list[Any]]] = field(default_factory=dict)
    journey_rows: dict[tuple[str, str, str, int], tuple[int, int, list[Any]]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    inserts: int = 0
    fail: bool = False
    fail_inserts: bool = False
    fail_journey_inserts: bool = False

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None:
        if self.fail or self.fail_inserts or (self.fail_journey_inserts and table == "journey_sessions"):
            raise ConnectionError("clickhouse down")
        if token in self.tokens:
            return
        self.tokens.add(token)
        self.inserts += 1
        at = {c: i for i, c in enumerate(columns)}
        for row in rows:
            version, deleted = int(row[at["version"]]), int(row[at["is_deleted"]])
            project, session, segment = str(row[at["project_id"]]), str(row[at["session_id"]]), int(row[at["segment"]])
            if table == "journey_sessions":
                jkey = (project, str(row[at["journey_id"]]), session, segment)
                if jkey not in self.journey_rows or self.journey_rows[jkey][0] <= version:
                    self.journey_rows[jkey] = (version, deleted, row)
                continue
            key = (project, session, segment)
            if key not in self.rows or self.rows[key][0] <= version:
                self.rows[key] = (version, deleted, row)

    def journey_final(self, project_id: str) -> dict[tuple[str, str, int], list[Any]]:
        """``journey_sessions FINAL`` of a project by (journey, session, segment)."""
        return {
            (j, s, seg): row
            for (p, j, s, seg), (_, deleted, row) in sorted(self.journey_rows.items())
            if p == project_id and not deleted
        }

    async def ping(self) -> bool:
        return not (self.fail or self.fail_inserts)

    def final(self, project_id: str, session_id: str) -> dict[int, list[Any]]:
        """``SELECT ... FINAL``: the visible rows of one session by segment."""
        return {
            seg: row
            for (p, s, seg), (_, deleted, row) in sorted(self.rows.items())
            if p == project_id and s == session_id and not deleted
        }

    async def segments(self, keys: Sequence[SessionKey]) -> dict[SessionKey, list[ArchivedSegment]]:
        if self.fail:
            raise ConnectionError("clickhouse down")
        out: dict[SessionKey, list[ArchivedSegment]] = {}
        for k in keys:
            for seg, row in self.final(k.project_id, k.session_id).items():
                archived = ArchivedSegment(seg, _ms(row[_ENDED_AT]), int(row[_VERSION]))
                out.setdefault(k, []).append(archived)
        return out


_ENDED_AT = SESSION_COLUMNS.index("ended_at")
_VERSION = SESSION_COLUMNS.index("version")


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)
