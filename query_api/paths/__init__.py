"""Top paths after/before a step, per session segment: the question (:mod:`.spec`), the answer
(:mod:`.result`), plain Python (:mod:`.reference`), ClickHouse (:mod:`.sql`), the entry point :func:`paths`."""

from query_api.paths.graphql import PathsQuery
from query_api.paths.reference import evaluate as evaluate_reference
from query_api.paths.result import PathCount, PathsResult
from query_api.paths.service import paths
from query_api.paths.spec import PathsSpec, parse_paths_spec

# Merged into the GraphQL root Query by query_api.schema.
QUERY = PathsQuery

__all__ = ["QUERY", "PathCount", "PathsResult", "PathsSpec", "evaluate_reference", "parse_paths_spec", "paths"]
