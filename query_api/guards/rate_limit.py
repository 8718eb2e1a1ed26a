"""Per-token rate limit of the GraphQL API: a token bucket in Redis, one round trip per operation.

The bucket of an access token lives at ``pg:qrl:{token_id}`` (tokens left, last refill in ms) and is
shared by every query-API process and the MCP server, so the limit holds however many replicas answer.
It is checked when an operation is about to execute (after parsing and validation, which the document
limits already bound): a refused operation runs no resolver, answers the GraphQL error ``RATE_LIMITED``
with ``retryAfter`` seconds, and over HTTP the status 429 with a ``Retry-After`` header.

Redis down or slow: the check fails open (logged), like the gateway's admission: the limit protects
ClickHouse from one noisy caller, it must not turn a Redis outage into a query API outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension

from productgraph.db import TokenInfo
from query_api.guards.limits import QueryLimits

__all__ = ["RateLimitExtension", "RateVerdict", "bucket_key", "take"]

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV rate/s, burst, now_ms.  Returns {granted, retry_after_ms}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
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
if tokens < 1 then
  return {0, math.ceil((1 - tokens) * 1000 / rate)}
end
redis.call('HSET', KEYS[1], 't', tostring(tokens - 1), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class RateVerdict:
    granted: bool
    retry_after_s: float = 0.0


def bucket_key(token_id: str) -> str:
    return f"pg:qrl:{token_id}"


async def take(redis: aioredis.Redis, token_id: str, limits: QueryLimits, now_ms: int | None = None) -> RateVerdict:
    """Take one request from the token's bucket (no limit when ``limits.rate_per_s`` is 0)."""
    if limits.rate_per_s <= 0:
        return RateVerdict(True)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    granted, wait_ms = await redis.eval(_TAKE, 1, bucket_key(token_id), limits.rate_per_s, limits.burst, now)
    return RateVerdict(bool(granted), int(wait_ms) / 1000)


@runtime_checkable
class _Caller(Protocol):
    """What the extension needs from the request context (:class:`query_api.context.QueryContext`)."""

    token: TokenInfo
    redis: aioredis.Redis
    limits: QueryLimits
    response: Any


class RateLimitExtension(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        if isinstance(ctx, _Caller):
            try:
                verdict = await take(ctx.redis, ctx.token.token_id, ctx.limits)
            except Exception as exc:  # fail open, see the module docstring
                log.warning("rate limit check failed, request admitted: %s", exc)
                verdict = RateVerdict(True)
            if not verdict.granted:
                retry = max(1, math.ceil(verdict.retry_after_s))
                message = (
                    f"rate limit exceeded: at most {ctx.limits.rate_per_s:g} requests/s (burst {ctx.limits.burst}) "
                    f"per access token; retry after {retry} s"
                )
                error = GraphQLError(message, extensions={"code": "RATE_LIMITED", "retryAfter": retry})
                self.execution_context.result = ExecutionResult(data=None, errors=[error])
                if ctx.response is not None:  # over HTTP: 429 with Retry-After (the MCP server has no response)
                    ctx.response.status_code = 429
                    ctx.response.headers["Retry-After"] = str(retry)
        yield
