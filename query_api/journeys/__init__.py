"""Journeys for the query API: metrics from ``journey_sessions`` (:mod:`.metrics`).  No GraphQL fields yet
(the root types are merged from ``QUERY``/``MUTATION`` here once they exist, see :mod:`query_api.schema`)."""

from query_api.journeys.metrics import JourneyMetrics, StepMetrics, journey_metrics, metrics_from_counts

__all__ = ["JourneyMetrics", "StepMetrics", "journey_metrics", "metrics_from_counts"]
