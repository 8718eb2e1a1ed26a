"""Query API configuration (``PG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings
from query_api.guards.limits import QueryLimits


class QueryApiSettings(ServerSettings):
    query_api_host: str = "127.0.0.1"
    query_api_port: int = 8090
    token_cache_ttl_s: float = Field(30.0, description="how long a resolved access token is trusted")
    project_cache_ttl_s: float = Field(
        10.0, description="how long a project id or slug resolved for an org is reused by other requests (0: off)"
    )
    journey_cache_ttl_s: float = Field(
        10.0, description="how long a journey definition read by the journey funnel is reused (0: off)"
    )
    clickhouse_timeout_s: float = Field(
        10.0, description="time budget of one analytics query; past it the query is cancelled on the server"
    )
    query_rate_limit_per_s: float = Field(20.0, description="GraphQL requests per second per access token (0: off)")
    query_rate_limit_burst: int = Field(40, description="token-bucket size of the per-token rate limit")
    mcp_token: str | None = Field(None, description="access token of `productgraph mcp --transport stdio`")

    def limits(self) -> QueryLimits:
        return QueryLimits(self.query_rate_limit_per_s, self.query_rate_limit_burst, self.clickhouse_timeout_s)
