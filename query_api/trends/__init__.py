"""Trends: events per interval with filters and a top-N breakdown: the question (:mod:`.spec`), the answer
(:mod:`.result`), plain Python (:mod:`.reference`), ClickHouse (:mod:`.sql`), the entry point :func:`trends`."""

from query_api.trends.graphql import TrendsQuery
from query_api.trends.reference import evaluate as evaluate_reference
from query_api.trends.result import TrendSeries, TrendsResult
from query_api.trends.service import trends
from query_api.trends.spec import TrendsSpec, parse_trends_spec

# Merged into the GraphQL root Query by query_api.schema.
QUERY = TrendsQuery

__all__ = ["QUERY", "TrendSeries", "TrendsResult", "TrendsSpec", "evaluate_reference", "parse_trends_spec", "trends"]
