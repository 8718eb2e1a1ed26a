"""The admin surface of the GraphQL API: organisation, projects and settings, API keys, members and
tokens, catalog, journeys, saved funnels and cohorts, audit log.

Layers: ``types`` (GraphQL dataclasses) ← ``repo/*`` (SQL, inside the tenant transaction) ←
``queries`` / ``mutations_*`` (thin resolvers) with ``access`` (roles, transactions, audit) and
``validation`` (pure input checks).  Merged into the schema by :mod:`query_api.schema` through
``QUERY`` and ``MUTATION``.
"""

from __future__ import annotations

from query_api.admin.mutations_content import ContentMutation
from query_api.admin.mutations_org import OrgMutation
from query_api.admin.queries import AdminQuery

__all__ = ["MUTATION", "QUERY"]

QUERY = (AdminQuery,)
MUTATION = (OrgMutation, ContentMutation)
