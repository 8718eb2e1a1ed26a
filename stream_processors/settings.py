"""Processor configuration (``PG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings


class ProcessorSettings(ServerSettings):
    batch_max_records: int = Field(10_000, description="flush a batch at this many records")
    batch_max_age_s: float = Field(1.0, description="... or when its oldest record is this old")
    metrics_port: int = Field(0, description="port of /metrics, /health and /ready (0: none)")
    metrics_host: str = "127.0.0.1"
    session_ttl_s: int = Field(35 * 60, description="TTL of live session keys in Redis (timeout + 5 min)")
    retry_max_backoff_s: float = 5.0
