"""Event properties by path, the same value in Python and in ClickHouse (pure).

A property path is a dotted field name of the event contract whose column is text or an integer
(``user.id``, ``page.path``, ``ui.viewport``, ``api.status_code`` ...), ``event.type``, ``session.id``,
``metadata.<key>`` or ``extra.<key>`` (unknown top-level fields of newer SDKs, where e.g. ``device.type``
lands).  Its value is text as stored (:mod:`schemas.rows`): a missing field or key reads as ``''``,
integers as decimal text, non-string map values as compact JSON.  Cohort property conditions and the
trends breakdown use this one definition, so a filter and a breakdown never disagree about a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from query_api.errors import InvalidInput
from schemas.fields import FIELDS_BY_NAME, Kind
from schemas.records import EventRecord

__all__ = ["Property", "parse_property"]

MAX_KEY_LEN = 255
_SPECIAL = {"event.type": "event_type", "session.id": "session_id"}


@dataclass(frozen=True, slots=True)
class Property:
    path: str
    column: str | None  # a column of ``events``; None for map keys
    map_column: str | None = None  # "metadata" | "extra"
    key: str | None = None
    integer: bool = False

    def value(self, rec: EventRecord) -> str:
        if self.map_column is not None:
            assert self.key is not None
            values: dict[str, Any] = rec.metadata if self.map_column == "metadata" else rec.extra
            if self.key not in values:
                return ""
            v = values[self.key]
            return v if isinstance(v, str) else orjson.dumps(v).decode()
        if self.path == "event.type":
            return rec.event_type
        if self.path == "session.id":
            return rec.session_id
        raw = rec.fields.get(self.path)
        if raw is None:
            return ""
        return str(int(raw)) if self.integer else str(raw)

    def sql(self, alias: str, key_param: str) -> tuple[str, dict[str, Any]]:
        """A String expression over ``alias`` (``"e."`` or ``""``) and its parameters."""
        if self.map_column is not None:
            return f"{alias}{self.map_column}[{{{key_param}:String}}]", {key_param: self.key}
        assert self.column is not None
        if self.column == "event_type":
            return f"toString({alias}event_type)", {}
        if self.integer:
            return f"ifNull(toString({alias}{self.column}), '')", {}
        return f"{alias}{self.column}", {}


def parse_property(where: str, path: object) -> Property:
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"{where}: must be a property path such as page.path or metadata.plan")
    for prefix in ("metadata", "extra"):
        if path.startswith(prefix + "."):
            key = path[len(prefix) + 1 :]
            if not key or len(key) > MAX_KEY_LEN:
                raise InvalidInput(f"{where}: {prefix} key must have 1 to {MAX_KEY_LEN} characters")
            return Property(path, None, prefix, key)
    if path in _SPECIAL:
        return Property(path, _SPECIAL[path])
    spec = FIELDS_BY_NAME.get(path)
    if spec is None or spec.kind not in (Kind.STRING, Kind.INT):
        raise InvalidInput(f"{where}: unknown or unsupported property '{path[:100]}'")
    return Property(path, spec.column, integer=spec.kind is Kind.INT)
