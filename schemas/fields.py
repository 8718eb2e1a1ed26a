"""The event contract's field table: dotted name, value kind and ClickHouse column, in one place.

Source: ../shared/seed/productgraph-spec.md §3 plus the semconv extras of the event contract.  Column
names are the dotted keys in snake_case with the ``gen_ai.journey.`` prefix dropped, as in the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["EVENT_TYPES", "FIELDS", "FIELDS_BY_NAME", "REQUIRED_ORDER", "FieldSpec", "Kind"]


class Kind(Enum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    DURATION = "duration"  # any finite, non-negative number (SDKs send floats)
    UNIT_FLOAT = "unit_float"  # float in [0, 1]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    column: str
    max_len: int | None = None
    choices: frozenset[str] | None = None

    @property
    def clickhouse_type(self) -> str:
        return {
            Kind.STRING: "String",
            Kind.INT: "Nullable(Int64)",
            Kind.FLOAT: "Nullable(Float64)",
            Kind.DURATION: "Nullable(Float64)",
            Kind.UNIT_FLOAT: "Nullable(Float64)",
        }[self.kind]


EVENT_TYPES: frozenset[str] = frozenset(
    {
        "page.view",
        "page.leave",
        "ui.click",
        "ui.input",
        "ui.scroll",
        "ui.focus",
        "ui.blur",
        "ui.submit",
        "state.change",
        "api.request",
        "api.response",
        "journey.step",
        "error",
        "performance",
        "custom",
        "journey.conversion",
        "snapshot.captured",
        "ui.hover",
    }
)

# The seed's validation order for required fields; `project_id` also arrives as `product_id`.
REQUIRED_ORDER: tuple[str, ...] = ("event_id", "project_id", "session.id", "event.type", "event.timestamp")


# Where snake_case of the dotted name is not the column: the SDK's own org fields must not collide with
# the tenant column `org_id`, and the journey prefix is dropped as in the seed.
_COLUMN_OVERRIDES = {"org.id": "client_org_id", "org.name": "client_org_name"}


def _f(name: str, kind: Kind = Kind.STRING, max_len: int | None = None, choices: set[str] | None = None) -> FieldSpec:
    column = _COLUMN_OVERRIDES.get(name) or name.replace("gen_ai.", "").replace(".", "_")
    return FieldSpec(name, kind, column, max_len, frozenset(choices) if choices else None)


S = Kind.STRING
# Optional fields (the required ones are handled by the record itself).
FIELDS: tuple[FieldSpec, ...] = (
    _f("user.id", S, 255),
    _f("user.anonymous_id", S, 255),
    _f("org.id", S, 255),
    _f("org.name", S, 255),
    _f("session.previous_id", S, 255),
    _f("event.name", S, 255),
    _f("event.sequence", Kind.INT),
    _f("page.path", S, 1024),
    _f("page.title", S, 1024),
    _f("page.url", S, 2048),
    _f("page.referrer", S, 2048),
    _f("ui.component.name", S, 255),
    _f("ui.component.path", S, 1024),
    _f("ui.component.type", S, 255),
    _f("ui.action", S, 255),
    _f("ui.element", S, 1024),
    _f("ui.element.text", S, 500),
    _f("ui.viewport", S, 64),
    _f("ui.scroll.position", Kind.UNIT_FLOAT),
    _f("ui.state.key", S, 1024),
    _f("ui.state.before", S),
    _f("ui.state.after", S),
    _f("ui.state.change_type", S, None, {"set", "update", "delete", "reset", "merge"}),
    _f("ui.state.source", S, 255),
    _f("gen_ai.journey.id", S, 255),
    _f("gen_ai.journey.step.id", S, 255),
    _f("gen_ai.journey.step.name", S, 255),
    _f("gen_ai.journey.conversion.status", S, None, {"pending", "converted", "dropped", "bounced", "abandoned"}),
    _f("gen_ai.journey.dropoff.step_id", S, 255),
    _f("gen_ai.journey.dropoff.reason", S, None, {"timeout", "error", "navigation_away", "rage_quit", "unknown"}),
    _f("api.method", S, 10),
    _f("api.path", S, 2048),
    _f("api.status_code", Kind.INT),
    _f("api.duration_ms", Kind.DURATION),
    _f("error.type", S, 255),
    _f("error.message", S),
    _f("error.stack", S),
    _f("error.component", S, 1024),
    _f("performance.lcp_ms", Kind.DURATION),
    _f("performance.fid_ms", Kind.DURATION),
    _f("performance.cls", Kind.FLOAT),
    _f("performance.ttfb_ms", Kind.DURATION),
    _f("performance.fcp_ms", Kind.DURATION),
    _f("performance.inp_ms", Kind.DURATION),
    _f("snapshot.url", S, 2048),
    _f("snapshot.viewport", S, 64),
    _f("duration_ms", Kind.DURATION),
)

FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
