"""Real-time metrics from Redis (:mod:`.metrics`) over GraphQL: a query and a subscription (:mod:`.graphql`)."""

from query_api.live.graphql import LiveMetrics, LiveQuery, LiveSubscription, live_snapshot, to_graphql
from query_api.live.metrics import LiveSnapshot, read_live_metrics

# Merged into the GraphQL root types by query_api.schema.
QUERY = LiveQuery
SUBSCRIPTION = LiveSubscription

__all__ = [
    "QUERY",
    "SUBSCRIPTION",
    "LiveMetrics",
    "LiveSnapshot",
    "live_snapshot",
    "read_live_metrics",
    "to_graphql",
]
