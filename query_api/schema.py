"""The GraphQL schema, composed from parts so that each area adds fields without editing the others.

Parts: :class:`query_api.analytics_schema.AnalyticsQuery` here, plus every sub-package of ``query_api``
(``query_api/admin/``, ``query_api/funnels/``, ...) whose ``__init__`` exposes any of

* ``QUERY``, ``MUTATION``, ``SUBSCRIPTION``: a strawberry type or a tuple of them, merged into the root
  type of that name;
* ``EXTENSIONS``: a tuple of schema extensions (classes or factories), e.g. depth or cost limits.

Packages are merged in name order; two parts defining the same field is an error at import, not a silent
override.  Errors other than user errors are masked first of all (:mod:`query_api.errors`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.base import has_object_definition

import query_api
from query_api.analytics_schema import AnalyticsQuery
from query_api.errors import is_expected, mask_errors

__all__ = ["build_schema", "schema"]

Extension = type[SchemaExtension] | Callable[[], SchemaExtension]


def _parts(attribute: str) -> list[object]:
    found: list[object] = []
    for module in sorted(pkgutil.iter_modules(query_api.__path__), key=lambda m: m.name):
        if module.ispkg:
            value = getattr(importlib.import_module(f"query_api.{module.name}"), attribute, None)
            if value is not None:
                found.extend(value if isinstance(value, tuple) else (value,))
    return found


def _merge(name: str, parts: Sequence[object]) -> type | None:
    if not parts:
        return None
    seen: dict[str, str] = {}
    types: list[type] = []
    for part in parts:
        if not isinstance(part, type) or not has_object_definition(part):
            raise TypeError(f"{name} part {part!r} is not a strawberry type")
        for f in part.__strawberry_definition__.fields:
            if f.name in seen:
                raise TypeError(f"{name}.{f.name} is defined by both {seen[f.name]} and {part.__qualname__}")
            seen[f.name] = part.__qualname__
        types.append(part)
    return strawberry.type(type(name, tuple(types), {}))


def _extensions() -> list[Extension]:
    found: list[Extension] = [mask_errors]
    for ext in _parts("EXTENSIONS"):
        if not callable(ext):
            raise TypeError(f"extension {ext!r} is neither a SchemaExtension class nor a factory")
        found.append(ext)
    return found


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Log our faults only; a caller's not-found or invalid argument is an answer, not an error."""
        super().process_errors([e for e in errors if not is_expected(e)], execution_context)


def build_schema() -> strawberry.Schema:
    query = _merge("Query", [AnalyticsQuery, *_parts("QUERY")])
    assert query is not None
    return _Schema(
        query=query,
        mutation=_merge("Mutation", _parts("MUTATION")),
        subscription=_merge("Subscription", _parts("SUBSCRIPTION")),
        extensions=_extensions(),
    )


schema = build_schema()
