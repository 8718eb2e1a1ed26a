"""Gateway configuration (``PG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings


class GatewaySettings(ServerSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = Field(10 * 1024 * 1024, description="decompressed request body limit (413 above)")
    key_cache_ttl_s: float = Field(30.0, description="how long a resolved API key is trusted without Postgres")
    produce_timeout_s: float = Field(10.0, description="Kafka acknowledgement timeout before answering 503")
    producer_linger_ms: int = 5
    producer_max_batch_bytes: int = 1024 * 1024
    fill_missing_timestamp: bool = Field(True, description="stamp events without event.timestamp with receive time")
