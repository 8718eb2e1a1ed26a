"""Guard rails of the GraphQL API: what one caller may ask for, how often, and for how long.

* Document limits, checked before any resolver runs (strawberry's own validation extensions): operation
  depth (:data:`~query_api.guards.limits.MAX_DEPTH`, introspection not counted), aliases
  (:data:`~query_api.guards.limits.MAX_ALIASES`) and lexical tokens
  (:data:`~query_api.guards.limits.MAX_TOKENS`, which also bounds parser work on hostile documents).
* A per-token rate limit (:mod:`query_api.guards.rate_limit`): Redis token bucket, 429 when empty.
* The ClickHouse time budget: :func:`query_api.tenant_scope.scoped_query` runs every read with
  ``max_execution_time`` and a query id, and kills the server-side query when the caller stops waiting.

Bounded date ranges and step counts belong to each analytics area (funnels: ``query_api/funnels/spec.py``).
:mod:`query_api.schema` installs :data:`EXTENSIONS`.
"""

from __future__ import annotations

from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from query_api.guards.limits import DEFAULT_LIMITS, MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, QueryLimits
from query_api.guards.rate_limit import RateLimitExtension

__all__ = ["CACHED_DOCUMENTS", "DEFAULT_LIMITS", "EXTENSIONS", "QueryLimits"]


# Dashboards and agents repeat the same documents: their parse and validation are kept (LRU, bounded so that
# unique documents cannot grow memory).  Rejected documents raise, and an exception is never cached.
CACHED_DOCUMENTS = 256


# The depth and alias limits are validation rules, classes that strawberry's limiters create in their __init__.
# Built once here and added by every request's extension: the validation cache is keyed by the document *and*
# the rule classes, so limiters built per request (new classes each time) made every lookup a miss.
_LIMIT_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)


def _limits() -> SchemaExtension:
    return AddValidationRules(list(_LIMIT_RULES))


def _tokens() -> SchemaExtension:
    return MaxTokensLimiter(max_token_count=MAX_TOKENS)


def _parsed() -> SchemaExtension:
    return ParserCache(maxsize=CACHED_DOCUMENTS)


def _validated() -> SchemaExtension:
    return ValidationCache(maxsize=CACHED_DOCUMENTS)


EXTENSIONS = (_tokens, _parsed, _limits, _validated, RateLimitExtension)
