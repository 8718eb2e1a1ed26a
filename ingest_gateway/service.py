"""One ``POST /v1/events`` request from headers and body chunks to a :class:`Reply` (no web framework).

Order; each step may end the request, and nothing is accepted unless the last one is reached:

1. in-flight bound: more than ``max_in_flight_requests`` at once → 503 + Retry-After (memory and latency
   stay bounded under overload; nothing has been read yet); step 6 adds a bound on the decompressed
   bodies held at once (``max_in_flight_body_bytes``), so a burst of large batches degrades to 503 too
2. API key present (``X-PG-API-Key`` or ``Authorization: Bearer``) → else 401
3. ``Content-Type`` JSON (or ``text/plain``, what ``navigator.sendBeacon`` sends) → else 415
4. key lookup through the TTL cache → 503 when the key store is down, 401 when unknown or revoked
5. the project's CORS allow-list, for browser requests (with ``Origin``) → else 401
6. body read within ``max_body_bytes`` while decompressing → 413 / 415 / 400
7. JSON object with an ``events`` list of at most 1000 → else 400
8. per-event validation (:mod:`schemas.ingest`) and encoding into Kafka records, in one synchronous
   pass (:mod:`ingest_gateway.batch`); repeated ids within the batch count as duplicates
9. admission (:mod:`ingest_gateway.admission`, one Redis round trip): rate limit → 429 + Retry-After;
   dedup claims (SEEN ids are duplicates, not republished)
10. publish and wait for acks=all (:mod:`ingest_gateway.publisher`) → 503 + Retry-After; the claims stay
    unconfirmed, so they do not count and the SDK's retry is published
11. 202 ``{"accepted", "rejected", "duplicates", "errors"}``; the request's token is confirmed in Redis
    after the answer (one ``SET``), which makes its event ids count as seen.  One background task sends
    the confirmations of all requests answered meanwhile in one pipelined write (rather than a task and
    a round trip per request).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ingest_gateway import metrics
from ingest_gateway.admission import AdmissionStore, AdmissionUnavailable, Verdict
from ingest_gateway.batch import EncodedBatch, KafkaRecord, encode_batch
from ingest_gateway.body import BodyTooLarge, UnsupportedEncoding, read_body
from ingest_gateway.cors import cors_headers
from ingest_gateway.keys import KeyCache
from ingest_gateway.policy import ProjectPolicy
from ingest_gateway.publisher import PublishFailed
from ingest_gateway.settings import GatewaySettings
from productgraph.db import KeyInfo
from schemas.ingest import BatchError

__all__ = ["IngestService", "Publisher", "Reply", "ResolvedKey"]

log = logging.getLogger("productgraph.gateway")

_JSON_TYPES = frozenset({"application/json", "text/plain", ""})


class Publisher(Protocol):
    async def publish(self, records: Sequence[KafkaRecord]) -> None: ...


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    info: KeyInfo
    policy: ProjectPolicy


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


def api_key_of(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-pg-api-key")
    if key and key.strip():
        return key.strip()
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


class IngestService:
    def __init__(
        self,
        settings: GatewaySettings,
        keys: KeyCache[ResolvedKey],
        admission: AdmissionStore,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._keys = keys
        self._admission = admission
        self._publisher = publisher
        self._clock = clock
        self._in_flight = 0
        self._body_bytes = 0  # decompressed bodies of the requests being processed
        self._tokens = itertools.count()
        self._token_prefix = f"{os.getpid():x}.{os.urandom(4).hex()}."
        self._confirms: list[tuple[str, str, int]] = []  # (project_id, token, window_s) not yet sent
        self._confirming: asyncio.Task[None] | None = None
        self._warned: dict[str, float] = {}

    async def ingest(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> Reply:
        """``headers`` with lower-case names; ``chunks`` the (possibly compressed) body."""
        if self._in_flight >= self._s.max_in_flight_requests:
            reply = self._reply(503, {"error": "gateway overloaded, retry later", "accepted": 0}, retry_after=1)
        else:
            self._in_flight += 1
            metrics.IN_FLIGHT.inc()
            try:
                reply = await self._ingest(headers, chunks)
            finally:
                self._in_flight -= 1
                metrics.IN_FLIGHT.dec()
        if origin := headers.get("origin"):  # so that a browser SDK can read every answer, Retry-After too
            reply.headers.update(cors_headers(origin))
        return reply

    async def drain(self) -> None:
        """Wait for the dedup confirmations still running (shutdown)."""
        if self._confirming is not None:
            await asyncio.gather(self._confirming, return_exceptions=True)

    def _warn(self, what: str, exc: BaseException) -> None:
        """A warning per kind of failure at most every 5 s (an outage must not flood the log)."""
        now = time.monotonic()
        if now >= self._warned.get(what, 0.0):
            self._warned[what] = now + 5.0
            log.warning("%s: %s", what, exc)

    def _reply(self, status: int, body: dict[str, Any], retry_after: float | None = None) -> Reply:
        metrics.request_answered(status)
        headers = {} if retry_after is None else {"Retry-After": str(max(1, int(retry_after + 0.999)))}
        return Reply(status, body, headers)

    async def _ingest(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> Reply:
        received_ms = int(self._clock() * 1000)
        s = self._s
        key = api_key_of(headers)
        if key is None:
            return self._reply(401, {"error": "missing API key: send X-PG-API-Key or Authorization: Bearer"})
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype not in _JSON_TYPES:
            return self._reply(415, {"error": f"content type {ctype[:100]!r} is not supported; send application/json"})
        try:
            resolved = await self._keys.get(key)
        except Exception as exc:
            self._warn("key store unavailable", exc)
            return self._reply(503, {"error": "key store unavailable", "accepted": 0}, s.retry_after_s)
        if resolved is None:
            return self._reply(401, {"error": "unknown or revoked API key"})
        origin = headers.get("origin")
        if origin and not resolved.policy.origin_allowed(origin.rstrip("/")):
            return self._reply(401, {"error": f"origin {origin[:200]!r} is not allowed for this API key's project"})

        encoding = headers.get("content-encoding", "")
        length = headers.get("content-length", "")
        if encoding.strip().lower() in ("", "identity") and length.isdigit() and int(length) > s.max_body_bytes:
            return self._reply(413, {"error": f"body larger than {s.max_body_bytes} bytes"})
        try:
            async with asyncio.timeout(s.body_timeout_s):  # a slow upload must not hold its slot forever
                body = await read_body(chunks, encoding, s.max_body_bytes)
        except TimeoutError:
            return self._reply(400, {"error": f"body: not received within {s.body_timeout_s:g} s"})
        except BodyTooLarge:
            return self._reply(413, {"error": f"body larger than {s.max_body_bytes} bytes"})
        except UnsupportedEncoding as exc:
            return self._reply(415, {"error": f"content encoding {str(exc)[:50]!r} is not supported; use gzip or zstd"})
        except ValueError as exc:
            return self._reply(400, {"error": str(exc)})
        if self._body_bytes + len(body) > s.max_in_flight_body_bytes and self._body_bytes:
            return self._reply(503, {"error": "gateway overloaded, retry later", "accepted": 0}, retry_after=1)
        size = len(body)
        self._body_bytes += size
        try:
            batch = self._encode(body, received_ms, resolved.info)
            del body  # the request now waits for Redis and Kafka holding only its records
            if isinstance(batch, Reply):
                return batch
            metrics.BATCH_SIZE.observe(batch.events)
            return await self._admit_and_publish(resolved.info.project_id, resolved.policy, batch)
        finally:
            self._body_bytes -= size

    def _encode(self, body: bytes, received_ms: int, info: KeyInfo) -> EncodedBatch | Reply:
        try:
            return encode_batch(
                body,
                org_id=info.org_id,
                project_id=info.project_id,
                project_slug=info.project_slug,
                received_ms=received_ms,
                fill_missing_timestamp=self._s.fill_missing_timestamp,
            )
        except orjson.JSONDecodeError:
            return self._reply(400, {"error": "body: invalid JSON"})
        except BatchError as exc:
            return self._reply(400, {"error": str(exc)})

    async def _admit_and_publish(self, project_id: str, policy: ProjectPolicy, batch: EncodedBatch) -> Reply:
        records, duplicates, errors = batch.records, batch.duplicates, batch.errors
        token = self._token_prefix + str(next(self._tokens))
        verdicts: Sequence[int] = ()
        admitted = False
        if records:
            try:
                admission = await self._admission.admit(
                    project_id,
                    rate_per_s=policy.rate_per_s,
                    burst=policy.burst,
                    cost=len(records),
                    event_ids=batch.ids if policy.dedup_window_s else (),
                    token=token,
                    window_s=policy.dedup_window_s,
                    now_ms=int(self._clock() * 1000),
                )
            except AdmissionUnavailable as exc:
                metrics.ADMISSION_FAILURES.inc()
                self._warn("redis unavailable, admitting without rate limit and dedup", exc)
            else:
                if not admission.granted:
                    body = {"error": "project over its rate limit, retry later", "accepted": 0}
                    return self._reply(429, body, admission.retry_after_s)
                admitted, verdicts = True, admission.verdicts
        unknown = batch.unknown_fields
        if admitted and policy.dedup_window_s and Verdict.SEEN in verdicts:
            fresh = [v != Verdict.SEEN for v in verdicts]
            publish = list(itertools.compress(records, fresh))
            unknown = list(itertools.compress(unknown, fresh))
            duplicates += len(records) - len(publish)
        else:
            publish = records

        started = time.perf_counter()
        try:
            await self._publisher.publish(publish)
        except PublishFailed as exc:
            self._warn("publish failed", exc)
            body = {"error": "event stream unavailable, retry later", "accepted": 0}
            return self._reply(503, body, self._s.retry_after_s)
        if publish:
            metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        if admitted and policy.dedup_window_s and publish:
            self._confirm_later(project_id, token, policy.dedup_window_s)
        metrics.ACCEPTED.inc(len(publish))
        if errors:
            metrics.REJECTED.inc(len(errors))
        if duplicates:
            metrics.DUPLICATE.inc(duplicates)
        if unknown_fields := sum(unknown):
            metrics.UNKNOWN_FIELDS.inc(unknown_fields)
        return self._reply(
            202,
            {
                "accepted": len(publish),
                "rejected": len(errors),
                "duplicates": duplicates,
                "errors": [{"index": e.index, "error": e.error} for e in errors],
            },
        )

    def _confirm_later(self, project_id: str, token: str, window_s: int) -> None:
        self._confirms.append((project_id, token, window_s))
        if self._confirming is None:
            self._confirming = asyncio.get_running_loop().create_task(self._confirm_all())

    async def _confirm_all(self) -> None:
        try:
            while self._confirms:  # those added while a round trip runs go in the next one
                confirms, self._confirms = self._confirms, []
                try:
                    await self._admission.confirm_many(confirms)
                except AdmissionUnavailable as exc:  # unconfirmed claims do not count: a retry is republished
                    self._warn("dedup confirmation skipped", exc)
        finally:
            self._confirming = None
