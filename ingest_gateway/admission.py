"""Per-project admission: token-bucket rate limit and event-id dedup, in one Redis round trip per request.

Keys (hash-tagged by project, so a request's keys share one Redis Cluster slot):
``pg:{<project>}:rl`` the bucket (tokens, last refill ms); ``pg:{<project>}:e:<event_id>`` one event id,
whose value is the token of the request that last published it; ``pg:{<project>}:t:<token>`` exists once
that request's records were acknowledged by Kafka.

Lifecycle of a request (``token`` unique per request):

1. **admit** (before publishing; one ``EVALSHA``): take ``cost`` tokens from the project's bucket, or
   answer "not granted" with the wait until they are there (429; nothing touched).  When granted, per
   event id: no key → NEW (the key is set to this token, TTL the dedup window); key whose token is
   confirmed → SEEN (a duplicate: reported, not republished); key whose token is not confirmed → PENDING
   (another request is publishing it, or failed or crashed doing so: it is published again and the key
   now names this request).
2. **confirm** (after Kafka acknowledged; off the response path): one ``SET`` of this request's token key,
   TTL the dedup window.  O(1) per request, whatever the batch size; the gateway sends the confirmations
   of the requests answered meanwhile together (``confirm_many``: one pipelined round trip).

Why: an event id counts as seen only once Kafka acknowledged the request that claimed it, so no failed
publish and no crash can turn the SDK's retry into a dropped "duplicate" (nothing to undo on failure: an
unconfirmed claim simply does not count).  A concurrent copy of an event still in flight is published
again rather than reported as a duplicate, because the first attempt may still fail; the price is a
possible second copy in Kafka, which the sinks absorb (ReplacingMergeTree on the event key, session
counts once per event id).  The same happens when a later copy takes over a claim and then fails.

If Redis fails or is slow, :class:`AdmissionUnavailable` is raised and the gateway fails open (no rate
limit, no dedup; the warehouse still dedups); after a failure Redis is skipped for ``cooldown_s`` so that
an outage costs no timeout per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import hiredis
import orjson
import redis.asyncio as aioredis

from ingest_gateway.redis_pipe import RedisPipe

__all__ = [
    "Admission",
    "AdmissionStore",
    "AdmissionUnavailable",
    "MemoryAdmission",
    "RedisAdmission",
    "Verdict",
    "bucket_key",
    "event_key",
    "token_key",
]


class Verdict(IntEnum):
    NEW = 0
    SEEN = 1
    PENDING = 2


class AdmissionUnavailable(Exception):
    """Redis did not answer: admit without rate limit and dedup."""


@dataclass(frozen=True, slots=True)
class Admission:
    granted: bool
    retry_after_s: float  # when not granted: wait until the bucket holds ``cost`` tokens
    verdicts: Sequence[int]  # per event id, in order (empty when not granted)


class AdmissionStore(Protocol):
    async def admit(
        self,
        project_id: str,
        *,
        rate_per_s: float,
        burst: int,
        cost: int,
        event_ids: Sequence[str],
        token: str,
        window_s: int,
        now_ms: int,
    ) -> Admission: ...

    async def confirm(self, project_id: str, token: str, window_s: int) -> None: ...

    async def confirm_many(self, confirmations: Sequence[tuple[str, str, int]]) -> None:
        """``confirm`` of every ``(project_id, token, window_s)``, in one round trip where possible."""
        ...


def bucket_key(project_id: str) -> str:
    return f"pg:{{{project_id}}}:rl"


def event_key(project_id: str, event_id: str) -> str:
    return f"pg:{{{project_id}}}:e:{event_id}"


def token_key(project_id: str, token: str) -> str:
    return f"pg:{{{project_id}}}:t:{token}"


# KEYS[1] bucket; ARGV rate, burst, now_ms, cost, token, window_s, token-key prefix, event-key prefix,
# event ids as a JSON array.  Returns {granted, retry_after_ms, verdicts}: one byte (0, 1 or 2) per id.
# The ids travel as one argument rather than one key each: packing a hundred arguments cost the gateway
# more CPU than the rest of the round trip.
_ADMIT = """
local rate = tonumber(ARGV[1])
if rate > 0 then
  local burst = tonumber(ARGV[2])
  local now = tonumber(ARGV[3])
  local cost = tonumber(ARGV[4])
  local b = redis.call('HMGET', KEYS[1], 't', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
    ts = now
  end
  if tokens < cost then
    return {0, math.ceil((cost - tokens) * 1000 / rate)}
  end
  redis.call('HSET', KEYS[1], 't', tostring(tokens - cost), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
end
local ids = cjson.decode(ARGV[9])
local verdicts = {}
for i = 1, #ids do
  local key = ARGV[8] .. ids[i]
  if redis.call('SET', key, ARGV[5], 'NX', 'EX', ARGV[6]) then  -- a new id: one call
    verdicts[i] = '\\0'
  elseif redis.call('EXISTS', ARGV[7] .. redis.call('GET', key)) == 1 then
    verdicts[i] = '\\1'
  else
    redis.call('SET', key, ARGV[5], 'EX', ARGV[6])
    verdicts[i] = '\\2'
  end
end
return {1, 0, table.concat(verdicts)}
"""


class RedisAdmission:
    """:class:`AdmissionStore` on Redis (≥ 6.2): one Lua script to admit, one ``SET`` to confirm.

    The event and token keys are named inside the script rather than declared in ``KEYS``; they share
    the project's hash tag, so they live in the same cluster slot as the declared bucket key.

    Commands go through a :class:`~ingest_gateway.redis_pipe.RedisPipe` to the client's server (a tenth of
    redis-py's CPU per call), or through the redis-py client itself when the pipe cannot speak its
    connection (TLS, unix socket).  :meth:`aclose` closes the pipe; the caller closes its client.
    """

    def __init__(self, client: aioredis.Redis, timeout_s: float = 0.5, cooldown_s: float = 1.0) -> None:
        self._redis = client
        self._admit = client.register_script(_ADMIT)
        self._pipe = RedisPipe.for_client(client)
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._skip_until = 0.0

    async def aclose(self) -> None:
        if self._pipe is not None:
            await self._pipe.aclose()

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if time.monotonic() < self._skip_until:
            raise AdmissionUnavailable("redis skipped after a recent failure")
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call()
        except Exception as exc:
            self._skip_until = time.monotonic() + self._cooldown_s
            if self._pipe is not None and not isinstance(exc, hiredis.ReplyError):
                self._pipe.reset()  # a timed-out or broken connection is not reused
            raise AdmissionUnavailable(str(exc) or type(exc).__name__) from exc

    async def _run_admit(self, keys: list[str], args: list[str | int | float | bytes]) -> Any:
        if self._pipe is None:
            return await self._admit(keys=keys, args=args)
        try:
            return await self._pipe.call("EVALSHA", self._admit.sha, len(keys), *keys, *args)
        except hiredis.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._pipe.call("EVAL", _ADMIT, len(keys), *keys, *args)  # loads the script too

    async def admit(
        self,
        project_id: str,
        *,
        rate_per_s: float,
        burst: int,
        cost: int,
        event_ids: Sequence[str],
        token: str,
        window_s: int,
        now_ms: int,
    ) -> Admission:
        keys = [bucket_key(project_id)]
        args: list[str | int | float | bytes] = [
            rate_per_s,
            burst,
            now_ms,
            cost,
            token,
            max(window_s, 1),
            token_key(project_id, ""),
            event_key(project_id, ""),
            orjson.dumps(event_ids if isinstance(event_ids, list) else list(event_ids)),
        ]
        out = await self._call(lambda: self._run_admit(keys, args))
        if not out[0]:
            return Admission(False, int(out[1]) / 1000, ())
        verdicts = out[2]  # one byte per id (a str on a client that decodes responses)
        return Admission(True, 0.0, verdicts.encode("latin-1") if isinstance(verdicts, str) else verdicts)

    async def confirm(self, project_id: str, token: str, window_s: int) -> None:
        await self.confirm_many([(project_id, token, window_s)])

    async def confirm_many(self, confirmations: Sequence[tuple[str, str, int]]) -> None:
        pipe = self._pipe
        if pipe is not None:
            sets = [("SET", token_key(p, t), b"1", "EX", max(w, 1)) for p, t, w in confirmations]
            await self._call(lambda: pipe.call_many(sets))
            return
        batch = self._redis.pipeline(transaction=False)  # token keys of many projects: not one slot
        for project_id, token, window_s in confirmations:
            batch.set(token_key(project_id, token), b"1", ex=max(window_s, 1))
        await self._call(batch.execute)


class MemoryAdmission:
    """In-process :class:`AdmissionStore` with the same semantics (tests, single-process development)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, float]] = {}  # key -> (value, expires at ms)
        self.buckets: dict[str, tuple[float, float]] = {}  # project -> (tokens, last ms)
        self.now_ms: float = 0.0
        self.fail = False  # simulate an outage

    def _get(self, key: str) -> str | None:
        hit = self.values.get(key)
        return hit[0] if hit is not None and hit[1] > self.now_ms else None

    def _check(self) -> None:
        if self.fail:
            raise AdmissionUnavailable("memory admission told to fail")

    async def admit(
        self,
        project_id: str,
        *,
        rate_per_s: float,
        burst: int,
        cost: int,
        event_ids: Sequence[str],
        token: str,
        window_s: int,
        now_ms: int,
    ) -> Admission:
        self._check()
        self.now_ms = max(self.now_ms, now_ms)
        if rate_per_s > 0:
            tokens, ts = self.buckets.get(project_id, (float(burst), float(now_ms)))
            if now_ms > ts:
                tokens, ts = min(burst, tokens + (now_ms - ts) * rate_per_s / 1000), now_ms
            if tokens < cost:
                return Admission(False, math.ceil((cost - tokens) * 1000 / rate_per_s) / 1000, ())
            self.buckets[project_id] = (tokens - cost, ts)
        verdicts: list[int] = []
        expires = now_ms + max(window_s, 1) * 1000
        for e in event_ids:
            key = event_key(project_id, e)
            owner = self._get(key)
            if owner is not None and self._get(token_key(project_id, owner)) is not None:
                verdicts.append(Verdict.SEEN)
                continue
            verdicts.append(Verdict.NEW if owner is None else Verdict.PENDING)
            self.values[key] = (token, expires)
        return Admission(True, 0.0, verdicts)

    async def confirm(self, project_id: str, token: str, window_s: int) -> None:
        self._check()
        self.values[token_key(project_id, token)] = ("1", self.now_ms + max(window_s, 1) * 1000)

    async def confirm_many(self, confirmations: Sequence[tuple[str, str, int]]) -> None:
        for confirmation in confirmations:
            await self.confirm(*confirmation)
