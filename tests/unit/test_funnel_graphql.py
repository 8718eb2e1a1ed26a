"""Which GraphQL funnel requests are answered by the levels-only query: the selection decides, fragments
included (a funnel chart reads counts, rates and drop-offs; anything with times or entities needs paths)."""

from __future__ import annotations

import pytest
import strawberry

from query_api.funnels.graphql import Funnel, counts_only

seen: list[bool] = []


@strawberry.type
class _Query:
    @strawberry.field
    def funnel(self, info: strawberry.Info) -> Funnel:
        seen.append(counts_only(info))
        return Funnel(mode="ordered", count_by="users", steps=[], breakdown=[], breakdown_truncated=False)


_SCHEMA = strawberry.Schema(query=_Query)
_FRAGMENT = "fragment F on FunnelStepResult { count dropOff }"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("{ funnel { steps { count } } }", True),
        (
            "{ funnel { mode countBy steps { step name count conversionFromFirst conversionFromPrevious dropOff } } }",
            True,
        ),
        ("{ funnel { steps { ...F } breakdownTruncated } } " + _FRAGMENT, True),
        ("{ funnel { steps { ... on FunnelStepResult { count } } breakdown { value steps { count } } } }", True),
        ("{ funnel { steps { count medianMsFromFirst } } }", False),
        ("{ funnel { steps { count converted { entityId } } } }", False),
        ("{ funnel { steps { ...F ... on FunnelStepResult { dropped { sessionId } } } } } " + _FRAGMENT, False),
        ("{ funnel { steps { count } breakdown { steps { meanMsFromPrevious } } } }", False),
    ],
)
def test_selection_decides_counts_only(query: str, expected: bool) -> None:
    seen.clear()
    result = _SCHEMA.execute_sync(query)
    assert result.errors is None
    assert seen == [expected]
