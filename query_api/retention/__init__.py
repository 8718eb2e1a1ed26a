"""Retention (rule 12): the question (:mod:`.spec`), the answer (:mod:`.result`), the rule in plain Python
(:mod:`.reference`), the ClickHouse query (:mod:`.sql`) and the shared entry point :func:`retention`."""

from query_api.retention.graphql import RetentionQuery
from query_api.retention.reference import evaluate as evaluate_reference
from query_api.retention.result import RetentionCell, RetentionCohort, RetentionResult
from query_api.retention.service import retention
from query_api.retention.spec import RetentionSpec, parse_retention_spec

# Merged into the GraphQL root Query by query_api.schema.
QUERY = RetentionQuery

__all__ = [
    "QUERY",
    "RetentionCell",
    "RetentionCohort",
    "RetentionResult",
    "RetentionSpec",
    "evaluate_reference",
    "parse_retention_spec",
    "retention",
]
