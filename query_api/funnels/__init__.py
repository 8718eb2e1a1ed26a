"""Funnels (ad hoc and for journeys): the question (:mod:`.spec`), the answer (:mod:`.result`), the rules in
plain Python (:mod:`.reference`) and the production evaluator over ClickHouse (:mod:`.clickhouse`)."""

from query_api.funnels.clickhouse import run_funnel
from query_api.funnels.graphql import FunnelQuery
from query_api.funnels.reference import evaluate as evaluate_reference
from query_api.funnels.result import BreakdownGroup, EntityRef, FunnelResult, StepResult
from query_api.funnels.spec import (
    Breakdown,
    CohortFilter,
    CohortSubquery,
    Exclusion,
    FunnelSpec,
    FunnelSpecError,
    FunnelStep,
    parse_funnel_spec,
)

# Merged into the GraphQL root Query by query_api.schema.
QUERY = FunnelQuery

__all__ = [
    "QUERY",
    "Breakdown",
    "BreakdownGroup",
    "CohortFilter",
    "CohortSubquery",
    "EntityRef",
    "Exclusion",
    "FunnelResult",
    "FunnelSpec",
    "FunnelSpecError",
    "FunnelStep",
    "StepResult",
    "evaluate_reference",
    "parse_funnel_spec",
    "run_funnel",
]
