"""Query API configuration (``PG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings


class QueryApiSettings(ServerSettings):
    query_api_host: str = "127.0.0.1"
    query_api_port: int = 8090
    token_cache_ttl_s: float = Field(30.0, description="how long a resolved access token is trusted")
    clickhouse_timeout_s: float = Field(10.0, description="max_execution_time of analytics queries")
    mcp_token: str | None = Field(None, description="access token of `productgraph mcp --transport stdio`")
