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
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar

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
    "PackedEvents",
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

_T = TypeVar("_T")


class SessionKey(NamedTuple):
    """A session id of a project.  A named tuple, not a dataclass: it keys every per-session dict of a
    flush, and a tuple is built and hashed in C."""

    org_id: str
    project_id: str
    session_id: str


@dataclass(slots=True)  # immutable by convention, see sessionize.Ledger
class StoredSession:
    ledger: Ledger | None  # None: no live state (new, expired, or never saved)
    events: Mapping[str, LiveEvent]
    journey_entries: frozenset[str] = frozenset()  # step entries already counted (schemas.sessions LEDGER_FIELDS)
    # What the sink derived from exactly these events when it saved them (SessionWrite.memo), when the store
    # still has it for the stored ledger version; opaque to the store.
    memo: object | None = None


class PackedEvents(Mapping[str, LiveEvent]):
    """Stored live events as packed in Redis, unpacked only when read: an update that extends the session's
    tail (:func:`stream_processors.sessionize.extend_tail`) only asks which event ids exist."""

    __slots__ = ("_packed",)

    def __init__(self, packed: Mapping[str, bytes | str]) -> None:
        self._packed = packed

    def __getitem__(self, event_id: str) -> LiveEvent:
        return LiveEvent.unpack(event_id, self._packed[event_id])

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    @property
    def ids(self) -> Container[str]:
        """The event ids, for membership tests without a Python-level call per test."""
        return self._packed.keys()


@dataclass(slots=True)  # immutable by convention, see sessionize.Ledger
class RealtimeUpdate:
    """A session's contribution to its project's real-time keys (schemas.sessions ``rt:``), applied with
    its state: ``counters`` (key, delta, expire at in Unix seconds), ``active`` (sorted-set key, member,
    score in ms) added with ``ZADD GT``."""

    counters: tuple[tuple[str, int, int], ...] = ()
    active: tuple[tuple[str, str, int], ...] = ()


@dataclass(slots=True)  # immutable by convention, see sessionize.Ledger
class SessionWrite:
    key: SessionKey
    update: SessionUpdate
    ttl_s: int
    timeout_ms: int
    reset_events: bool = False  # the stored events belong to no ledger: replace them, do not add to them
    journey_entries: frozenset[str] = frozenset()
    realtime: RealtimeUpdate = field(default_factory=RealtimeUpdate)
    memo: object | None = None  # returned by the next load while the stored version is this write's


ACTIVE_SET_TTL_S = 3600  # an active set of a project without events disappears after this


def parse_journey_entries(h: Mapping[str, str]) -> frozenset[str]:
    raw = h.get("journey_entries")
    return _journey_entries(raw) if raw else frozenset()


def _journey_entries(raw: bytes | str) -> frozenset[str]:
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


def _bytes(v: bytes | str) -> bytes:
    return v if isinstance(v, bytes) else v.encode()


# Saves the sessions of a flush atomically (a script runs alone; its effects reach the AOF and replicas as
# one transaction).  KEYS: live, events per session.  ARGV: trim cutoff of the active sets (ms, 0: none),
# their TTL, then the chunk's sessions as one JSON array (in KEYS order) of [ttl, reset ("0"/"1"),
# [event id, packed event, ...], [dropped event id, ...], [live hash field, value, ...]], all strings, and
# last the chunk's real-time updates summed (the chunk is one atomic unit, so summing changes nothing but
# the number of commands) as JSON [[[key, delta, expireat], ...], [[key, member, score], ...]] (numbers as
# strings: Lua would print large ones in exponent form).  Two JSON documents instead of a few arguments per
# session and two per event: packing arguments one by one was most of the client's cost of a save.
# The rt: keys travel in ARGV: like the sessions of one chunk they are not in one cluster slot anyway.  A
# counter that a later save brings back to 0 (a step entry moved to another minute) is deleted: whether a
# count moves within one save or across two depends on batch boundaries, and the keys must not.
# ARGV[5] is the new ledger version of the chunk's first session: a chunk whose script already ran (a save
# retried after a later chunk failed, or after a reply lost with the connection) finds it and changes
# nothing, so its counter increments are never applied twice.  One session tells for the whole chunk:
# scripts are atomic, versions are unique per write, and a retry cuts the same chunks.
_SAVE = """
if redis.call('HGET', KEYS[1], 'version') == ARGV[5] then return 0 end
local cutoff, zttl = ARGV[1], ARGV[2]
local sessions = cjson.decode(ARGV[3])
local zsets = {}
for s = 1, #sessions do
  local live, events = KEYS[2 * s - 1], KEYS[2 * s]
  local ttl, reset, added, dropped, view = unpack(sessions[s])
  if reset == '1' then redis.call('DEL', events) end
  for j = 1, #added, 1000 do
    redis.call('HSET', events, unpack(added, j, math.min(j + 999, #added)))
  end
  for j = 1, #dropped, 500 do
    redis.call('HDEL', events, unpack(dropped, j, math.min(j + 499, #dropped)))
  end
  redis.call('DEL', live)
  redis.call('HSET', live, unpack(view))
  redis.call('EXPIRE', live, ttl)
  redis.call('EXPIRE', events, ttl)
end
local rt = cjson.decode(ARGV[4])
for _, c in ipairs(rt[1]) do
  if redis.call('INCRBY', c[1], c[2]) == 0 then
    redis.call('DEL', c[1])
  else
    redis.call('EXPIREAT', c[1], c[3])
  end
end
for _, z in ipairs(rt[2]) do
  redis.call('ZADD', z[1], 'GT', z[3], z[2])
  zsets[z[1]] = true
end
for key in pairs(zsets) do
  if cutoff ~= '0' then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff) end
  redis.call('EXPIRE', key, zttl)
end
return #sessions
"""


# Loads the sessions of a flush in one reply (a pipeline of one command per session cost the client more
# than everything else of a load).  KEYS: live, events per session.  ARGV: per session, the ledger version
# whose events this process has cached ("": none).  Returns the Redis clock (seconds, microseconds), then per
# session the ledger fields of the live hash (HMGET order of _LEDGER_READ, nil when absent) and either its
# events hash as [event id, packed event, ...] or 0 when the stored version is the cached one (its events
# are the cached ones: every writer of a session raises its version).
_LEDGER_READ = ("version", "segments", "sealed", "sealed_end_ms", "frontier_ms", "journey_entries")
_LOAD = """
local t = redis.call('TIME')
local out = {t[1], t[2]}
for s = 1, #ARGV do
  local h = redis.call('HMGET', KEYS[2 * s - 1], FIELDS)
  out[#out + 1] = h
  if h[1] and h[1] == ARGV[s] then
    out[#out + 1] = 0
  else
    out[#out + 1] = redis.call('HGETALL', KEYS[2 * s])
  end
end
return out
""".replace("FIELDS", ", ".join(f"'{f}'" for f in _LEDGER_READ))


class RedisSessionStore:
    """Redis, with a bounded cache of the live events this process loaded or saved.  A cached session is
    used only while its ledger version in Redis is the one cached (the load script compares them); any other
    writer (a previous owner of the partition, an expiry) changes or removes the version and the events are
    read again.  ``load`` and ``save`` run one script per ``chunk`` sessions, up to ``window`` in flight.

    The cache keeps events packed (``{event id: packed bytes}``, as stored in Redis), not as
    :class:`LiveEvent` objects: a dict of strings and bytes is invisible to the cyclic garbage collector,
    while hundreds of thousands of cached objects made its full collections a quarter of the process's CPU.
    A cached session's events are unpacked when it is loaded again."""

    def __init__(self, redis: aioredis.Redis, cache_events: int = 500_000, chunk: int = 500, window: int = 4) -> None:
        self._redis = redis
        self._save = redis.register_script(_SAVE)
        self._load = redis.register_script(_LOAD)
        # Packed events by id: bytes as read from Redis, str as saved (LiveEvent.pack_text).
        self._cache: OrderedDict[SessionKey, tuple[int, dict[str, bytes | str], object | None]] = OrderedDict()
        self._cached = 0
        self._cache_events = cache_events
        self._chunk = chunk
        self._window = window
        self._loaded: dict[SessionKey, dict[str, bytes | str]] = {}  # packed events of the last load

    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        stored: dict[SessionKey, StoredSession] = {}
        self._loaded = {}
        chunks = [keys[i : i + self._chunk] for i in range(0, len(keys), self._chunk)]
        clocks = await self._windowed([functools.partial(self._load_chunk, c, stored) for c in chunks])
        if not keys:
            seconds, micros = await self._redis.time()
            return stored, int(seconds) * 1_000_000 + int(micros)
        return stored, max(clocks)

    async def _windowed(self, calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
        """Run the chunk scripts of one load or save with up to ``window`` in flight (each on its own pooled
        connection): Redis runs one script while this process packs the next chunk or unpacks the previous
        reply, instead of each side waiting for the other chunk by chunk.  The chunks of one call touch
        distinct sessions, so their order does not matter; a failure cancels the rest (and the caller's
        retry runs them all again: a save chunk that already ran changes nothing, see :data:`_SAVE`), and the
        first error is raised as itself, as a call made chunk by chunk would."""
        gate = asyncio.Semaphore(self._window)

        async def gated(call: Callable[[], Awaitable[_T]]) -> _T:
            async with gate:
                return await call()

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(gated(c)) for c in calls]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [t.result() for t in tasks]

    async def _load_chunk(self, keys: Sequence[SessionKey], stored: dict[SessionKey, StoredSession]) -> int:
        redis_keys: list[str] = []
        cached_versions: list[str] = []
        cache = self._cache
        for k in keys:
            redis_keys += [live_key(k.project_id, k.session_id), events_key(k.project_id, k.session_id)]
            cached = cache.get(k)
            cached_versions.append(str(cached[0]) if cached is not None else "")
        reply: list[Any] = await self._load(keys=redis_keys, args=cached_versions)
        for i, k in enumerate(keys):
            version, segments, sealed, sealed_end, frontier, entries = reply[2 + 2 * i]
            raw = reply[3 + 2 * i]
            ledger = None
            if version is not None:
                ledger = Ledger(
                    int(segments or 0),
                    int(sealed or 0),
                    int(sealed_end) if sealed_end else None,
                    int(frontier) if frontier else None,
                    int(version),
                )
            packed: dict[str, bytes | str]
            memo = None
            if raw == 0:  # the stored version is the cached one
                _, packed, memo = cache[k]
                cache.move_to_end(k)
            else:
                it = iter(raw)
                packed = {_text(name): _bytes(value) for name, value in zip(it, it, strict=True)}
            self._loaded[k] = packed
            journey_entries = _journey_entries(entries) if entries else frozenset()
            stored[k] = StoredSession(ledger, PackedEvents(packed), journey_entries, memo)
        return int(reply[0]) * 1_000_000 + int(reply[1])

    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        cutoff = max(0, now_ms - RT_ACTIVE_KEEP_MS) if now_ms else 0
        chunks = [writes[i : i + self._chunk] for i in range(0, len(writes), self._chunk)]
        await self._windowed([functools.partial(self._save_chunk, c, cutoff) for c in chunks])

    async def _save_chunk(self, chunk: Sequence[SessionWrite], cutoff: int) -> None:
        keys: list[str] = []
        sessions: list[list[Any]] = []
        packs: list[list[str]] = []
        for w in chunk:
            project_id, session_id = w.key.project_id, w.key.session_id
            keys += [live_key(project_id, session_id), events_key(project_id, session_id)]
            u = w.update
            added: list[str] = []  # [event id, packed event, ...]: no object per event beyond its text
            for e in u.added:
                added += (e.event_id, e.pack_text())
            packs.append(added)
            dropped = sorted(u.dropped) if u.dropped else []
            sessions.append([str(w.ttl_s), "1" if w.reset_events else "0", added, dropped, _live_hash(w)])
        args: list[bytes | int | str] = [
            cutoff,
            ACTIVE_SET_TTL_S,
            orjson.dumps(sessions),
            _realtime_arg([w.realtime for w in chunk]),
            str(chunk[0].update.ledger.version),
        ]
        await self._save(keys=keys, args=args)
        for w, packed in zip(chunk, packs, strict=True):
            self._remember(w, packed)

    def _remember(self, w: SessionWrite, added: list[str]) -> None:
        """Cache what the save left in Redis: the loaded events (none after a reset), less the dropped,
        plus the added, with the write's memo.  A session saved without being loaded first is not cached
        (its other events are unknown here).  The loaded dict is changed in place (no copy per session):
        nothing reads it after the save, and doing this twice (a save retried) leaves the same dict."""
        old = self._cache.pop(w.key, None)
        self._cached -= len(old[1]) if old else 0
        events = {} if w.reset_events else self._loaded.get(w.key)
        if events is None:
            return
        for event_id in w.update.dropped:
            events.pop(event_id, None)
        it = iter(added)
        events.update(zip(it, it, strict=True))
        self._cache[w.key] = (w.update.ledger.version, events, w.memo)
        self._cached += len(events)
        while self._cached > self._cache_events and self._cache:
            _, (_, evicted, _) = self._cache.popitem(last=False)
            self._cached -= len(evicted)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False


def _live_hash(w: SessionWrite) -> list[str]:
    """The live hash of a write as [field, value, ...]: :func:`ledger_fields`, :func:`live_view_fields` and
    the journey entries, built directly (one list per session instead of two dicts and a conversion)."""
    u, ledger, live = w.update, w.update.ledger, w.update.live
    out = ["segments", str(ledger.segments), "sealed", str(ledger.sealed), "version", str(ledger.version)]
    if ledger.sealed_end_ms is not None:
        out += ["sealed_end_ms", str(ledger.sealed_end_ms)]
    if ledger.frontier_ms is not None:
        out += ["frontier_ms", str(ledger.frontier_ms)]
    if live is not None:
        out += [
            "event_count", str(live.event_count),
            "started_ms", str(live.started_ms),
            "last_ms", str(live.ended_ms),
            "last_event_type", u.last_event_type,
            "page_views", str(live.page_views),
            "error_count", str(live.error_count),
            "segment", str(live.segment),
            "closes_at_ms", str(live.ended_ms + w.timeout_ms),
        ]  # fmt: skip
        if live.user_id:
            out += ["user_id", live.user_id]
        if live.exit_page:
            out += ["current_page", live.exit_page]
    if w.journey_entries:
        out += ["journey_entries", orjson.dumps(sorted(w.journey_entries)).decode()]
    return out


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
    memos: dict[SessionKey, tuple[int, object]] = field(default_factory=dict)  # by ledger version, as Redis's cache
    clock_us: int = 0
    fail: bool = False

    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        self._check()
        self.clock_us += 1
        out = {}
        for k in keys:
            ledger = self.ledgers.get(k)
            memo = self.memos.get(k)
            kept = memo[1] if memo is not None and ledger is not None and memo[0] == ledger.version else None
            out[k] = StoredSession(ledger, dict(self.events.get(k, {})), self.entries.get(k, frozenset()), kept)
        return out, self.clock_us

    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        self._check()
        touched: set[str] = set()
        for w in writes:
            self.entries[w.key] = w.journey_entries
            for key, delta, at in w.realtime.counters:
                value = self.counters.get(key, 0) + delta
                if value == 0:  # as the save script: a count moved away leaves no key
                    self.counters.pop(key, None)
                    self.expire_at.pop(key, None)
                else:
                    self.counters[key] = value
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
            if w.memo is not None:
                self.memos[w.key] = (w.update.ledger.version, w.memo)
            else:
                self.memos.pop(w.key, None)
            if w.update.live is not None:
                self.views[w.key] = live_view_fields(w.update.live, w.update.last_event_type, w.timeout_ms)

    def expire(self, key: SessionKey) -> None:
        """What the TTL does: forget everything about ``key``."""
        self.ledgers.pop(key, None)
        self.events.pop(key, None)
        self.views.pop(key, None)
        self.entries.pop(key, None)
        self.memos.pop(key, None)

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

    async def insert_lines(self, table: str, lines: Sequence[bytes], columns: Sequence[str], token: str) -> None:
        """``JSONEachRow`` lines (what the sessions sink sends), stored as the rows ClickHouse would read
        back: times as UTC datetimes, like the values of schemas.rows.session_row."""
        rows = []
        for line in lines:
            values = orjson.loads(line)
            if list(values) != list(columns):
                raise ValueError(f"{table}: line keys {list(values)} are not the columns {list(columns)}")
            rows.append([_from_json(c, values[c]) for c in columns])
        await self.insert(table, rows, columns, token)

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


_TIME_COLUMNS = frozenset({"started_at", "ended_at", "entered_at", "step_times", "converted_at", "closes_at"})


def _from_json(column: str, value: Any) -> Any:
    if column not in _TIME_COLUMNS or value is None:
        return value
    if isinstance(value, list):
        return [_from_json(column, v) for v in value]
    return datetime.fromtimestamp(value, tz=UTC)  # value = ms / 1000, as schemas.rows makes its datetimes


_ENDED_AT = SESSION_COLUMNS.index("ended_at")
_VERSION = SESSION_COLUMNS.index("version")


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)
