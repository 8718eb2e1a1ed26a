"""Gateway configuration (``PG_`` environment variables).

Per-project overrides live in ``projects.settings`` (jsonb) and arrive with the resolved API key; see
:mod:`ingest_gateway.policy` for the keys (``rate_limit_per_s``, ``rate_limit_burst``, ``dedup_window_s``,
``cors_origins``).  The values here are the defaults for projects that set nothing.
"""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings


class GatewaySettings(ServerSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = Field(10 * 1024 * 1024, description="decompressed request body limit (413 above)")
    body_timeout_s: float = Field(30.0, description="time allowed to receive a request body (then 400)")
    key_cache_ttl_s: float = Field(30.0, description="how long a resolved API key is trusted without Postgres")
    produce_timeout_s: float = Field(10.0, description="Kafka acknowledgement timeout before answering 503")
    producer_max_batch_bytes: int = Field(1024 * 1024, description="largest Kafka record batch per partition")
    fill_missing_timestamp: bool = Field(True, description="stamp events without event.timestamp with receive time")
    max_in_flight_requests: int = Field(
        512, description="ingest requests handled at once per process; more get 503 with Retry-After"
    )
    max_in_flight_body_bytes: int = Field(
        64 * 1024 * 1024, description="decompressed bodies held at once per process; more get 503 with Retry-After"
    )
    rate_limit_per_s: float = Field(10_000.0, description="default events/s per project (0: unlimited)")
    rate_limit_burst: int = Field(0, description="default token-bucket size per project (0: 2 s of the rate)")
    dedup_window_s: int = Field(24 * 3600, description="default window in which an event id counts as duplicate")
    redis_timeout_s: float = Field(0.5, description="Redis answer timeout on the ingest path (then fail open)")
    retry_after_s: int = Field(5, description="Retry-After of 503 answers when Kafka or the key store is down")
