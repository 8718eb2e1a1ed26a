"""Cohorts: saved (Postgres ``cohorts``) or inline definitions (:mod:`.definition`) evaluated as a ClickHouse
subquery of person keys (:mod:`.sql`), with a Python reference (:mod:`.reference`).  Other areas filter by a
cohort with :func:`cohort_filter` / :func:`funnel_cohort_filter`.

Importing the package installs the strict check of saved cohort definitions in the admin surface
(:func:`query_api.admin.validation.register_definition_validator`), so only definitions this code can
run are saved.
"""

from query_api.admin.validation import register_definition_validator
from query_api.cohorts.definition import CohortDefinition, parse_definition, validate_saved_definition
from query_api.cohorts.graphql import CohortQuery
from query_api.cohorts.persons import PersonSource, person_events, person_source
from query_api.cohorts.reference import members as reference_members
from query_api.cohorts.service import (
    cohort_filter,
    cohort_members,
    cohort_size,
    funnel_cohort_filter,
    load_cohort,
    resolve_cohort,
)
from query_api.cohorts.sql import CohortSql, cohort_sql

register_definition_validator("cohort", validate_saved_definition)

# Merged into the GraphQL root Query by query_api.schema.
QUERY = CohortQuery

__all__ = [
    "QUERY",
    "CohortDefinition",
    "CohortSql",
    "PersonSource",
    "cohort_filter",
    "cohort_members",
    "cohort_size",
    "cohort_sql",
    "funnel_cohort_filter",
    "load_cohort",
    "parse_definition",
    "person_events",
    "person_source",
    "reference_members",
    "resolve_cohort",
]
