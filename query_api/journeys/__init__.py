"""Journeys for the query API: metrics from ``journey_sessions`` (:mod:`.metrics`) and the ``journeyFunnel``
field (:mod:`.graphql`)."""

from query_api.journeys.graphql import JourneyFunnel, JourneyQuery, journey_funnel
from query_api.journeys.metrics import JourneyMetrics, StepMetrics, journey_metrics, metrics_from_counts

# Merged into the GraphQL root Query by query_api.schema.
QUERY = JourneyQuery

__all__ = [
    "QUERY",
    "JourneyFunnel",
    "JourneyMetrics",
    "StepMetrics",
    "journey_funnel",
    "journey_metrics",
    "metrics_from_counts",
]
