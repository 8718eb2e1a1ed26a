"""The ``paths`` GraphQL field: arguments validated into a :class:`PathsSpec`, answered by
:func:`query_api.paths.service.paths`.  Thin."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api.context import QueryContext
from query_api.paths.result import PathsResult
from query_api.paths.service import paths
from query_api.paths.spec import parse_paths_spec

__all__ = ["PathsQuery"]


@strawberry.enum
class PathDirection(Enum):
    AFTER = "AFTER"
    BEFORE = "BEFORE"


@strawberry.enum
class PathNode(Enum):
    PAGE = "PAGE"
    EVENT = "EVENT"


@strawberry.type
class PathCountType:
    nodes: list[str]
    count: int
    rate: float


@strawberry.type
class Paths:
    direction: PathDirection
    total: int = strawberry.field(description="Session segments with an anchor event.")
    paths: list[PathCountType]


def to_graphql(r: PathsResult) -> Paths:
    return Paths(
        direction=PathDirection(r.direction),
        total=r.total,
        paths=[PathCountType(nodes=list(p.nodes), count=p.count, rate=p.rate) for p in r.paths],
    )


@strawberry.type
class PathsQuery:
    @strawberry.field(
        description="Top paths after (or before) the first event matching `step` in each session segment: "
        "sequences of up to `depth` (1-5) page paths (PAGE: page.view events) or event names (EVENT), most "
        "frequent first (`limit` 1-100). Default range: the last 7 days; at most 400 days."
    )
    async def paths(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        step: Annotated[JSON, strawberry.argument(description="The anchor: a matcher (JSON).")],
        direction: PathDirection = PathDirection.AFTER,
        depth: int = 3,
        limit: int = 10,
        node: PathNode = PathNode.PAGE,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
    ) -> Paths:
        tenant = await info.context.tenant(str(project_id))
        spec = parse_paths_spec(
            step=step,
            direction=direction.value,
            depth=depth,
            limit=limit,
            node=node.value,
            date_from=date_from,
            date_to=date_to,
            now=datetime.now(UTC),
        )
        return to_graphql(await paths(info.context, tenant, spec))
