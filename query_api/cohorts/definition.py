"""What a cohort is: a saved (Postgres ``cohorts.definition``) or inline JSON definition, parsed and bounded.

A cohort is a set of persons (rule 4: ``user:<id>``, ``anonymous:<id>``, ``session:<id>``), computed when a
question uses it (dynamic, like PostHog's), from the events of the last ``days`` days before ``now``.  JSON:

* ``{"did_event": <matcher>, "min": 1, "max": null, "days": 30}``: the person did matching events (matcher
  language of :mod:`schemas.matchers`; ``{}`` = any event) between ``min`` and ``max`` times (inclusive) in
  the last ``days`` days.  ``"max": 0`` means "did not" (among persons active in the cohort's range).
* ``{"property": "page.path", "op": "eq", "value": "/pricing", "days": 30}``: at least one of the person's
  events in the range has the property (:mod:`.properties`) ``op`` the value; ``op`` is ``eq``, ``neq``,
  ``in`` / ``not_in`` (``"values": [...]``), ``prefix``, ``contains``, ``set`` or ``not_set`` (no value).
* ``{"all": [...]}`` / ``{"any": [...]}``: AND / OR of the above, nested up to :data:`MAX_DEPTH` deep.

Persons considered: those with any event in the longest range of the definition.  Limits keep the
query small: at most :data:`MAX_CONDITIONS` conditions, ``days`` 1..400, ``in`` lists of 100 values.
Errors are :class:`~query_api.errors.InvalidInput` naming the JSON path (``definition.all[2].min: ...``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from query_api.cohorts.bounds import check_int
from query_api.cohorts.persons import ANY
from query_api.cohorts.properties import Property, parse_property
from query_api.errors import InvalidInput
from schemas.matchers import Matcher, MatcherError, parse_matcher

__all__ = [
    "CohortDefinition",
    "EventCondition",
    "Group",
    "Node",
    "Op",
    "PropertyCondition",
    "parse_definition",
    "validate_saved_definition",
]

Op = Literal["eq", "neq", "in", "not_in", "prefix", "contains", "set", "not_set"]
MAX_CONDITIONS = 20
MAX_DEPTH = 3
MAX_DAYS = 400
DEFAULT_DAYS = 30
MAX_COUNT = 1_000_000
MAX_VALUES = 100
MAX_VALUE_LEN = 1024


@dataclass(frozen=True, slots=True)
class EventCondition:
    matcher: Matcher
    min: int = 1
    max: int | None = None
    days: int = DEFAULT_DAYS


@dataclass(frozen=True, slots=True)
class PropertyCondition:
    property: Property
    op: Op
    values: tuple[str, ...] = ()
    days: int = DEFAULT_DAYS

    def holds(self, value: str) -> bool:
        v = self.values
        return {
            "eq": lambda: value == v[0],
            "neq": lambda: value != v[0],
            "in": lambda: value in v,
            "not_in": lambda: value not in v,
            "prefix": lambda: value.startswith(v[0]),
            "contains": lambda: v[0] in value,
            "set": lambda: value != "",
            "not_set": lambda: value == "",
        }[self.op]()


@dataclass(frozen=True, slots=True)
class Group:
    op: Literal["all", "any"]
    children: tuple[Node, ...]


Node = EventCondition | PropertyCondition | Group


@dataclass(frozen=True, slots=True)
class CohortDefinition:
    root: Node

    def leaves(self) -> Iterator[EventCondition | PropertyCondition]:
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Group):
                stack.extend(reversed(node.children))
            else:
                yield node

    @property
    def days(self) -> int:
        """The longest range of any condition: the cohort's scan."""
        return max(leaf.days for leaf in self.leaves())


def parse_definition(raw: object) -> CohortDefinition:
    counter = [0]
    root = _node("definition", raw, 1, counter)
    return CohortDefinition(root)


def validate_saved_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """The check of saved cohorts (installed with the admin surface's register hook)."""
    parse_definition(definition)
    return definition


def _node(where: str, raw: object, depth: int, counter: list[int]) -> Node:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be an object")
    groups = [k for k in ("all", "any") if k in raw]
    if groups:
        key = groups[0]
        if len(raw) != 1:
            raise InvalidInput(f"{where}: a group has exactly one key, 'all' or 'any'")
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where}: groups nest at most {MAX_DEPTH} deep")
        items = raw[key]
        if not isinstance(items, list) or not items:
            raise InvalidInput(f"{where}.{key}: must be a non-empty list")
        children = tuple(_node(f"{where}.{key}[{i}]", item, depth + 1, counter) for i, item in enumerate(items, 1))
        return Group("all" if key == "all" else "any", children)
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise InvalidInput(f"{where}: at most {MAX_CONDITIONS} conditions")
    if "did_event" in raw:
        return _event(where, raw)
    if "property" in raw:
        return _property(where, raw)
    raise InvalidInput(f"{where}: needs 'did_event', 'property', 'all' or 'any'")


def _unknown(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(str(k) for k in set(raw) - allowed)
    if extra:
        raise InvalidInput(f"{where}.{extra[0]}: unknown field")


def _days(where: str, raw: Mapping[str, Any]) -> int:
    return check_int(f"{where}.days", raw.get("days", DEFAULT_DAYS), 1, MAX_DAYS)


def _event(where: str, raw: Mapping[str, Any]) -> EventCondition:
    _unknown(where, raw, {"did_event", "min", "max", "days"})
    m = raw["did_event"]
    if m == {}:
        matcher = ANY
    else:
        try:
            matcher = parse_matcher(m)
        except MatcherError as exc:
            raise InvalidInput(f"{where}.did_event.{exc}") from None
    low = check_int(f"{where}.min", raw.get("min", 1), 0, MAX_COUNT)
    high = raw.get("max")
    if high is not None:
        high = check_int(f"{where}.max", high, low, MAX_COUNT)
    return EventCondition(matcher, low, high, _days(where, raw))


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_VALUE_LEN or "\x00" in value:
        raise InvalidInput(f"{where}: must be a string of at most {MAX_VALUE_LEN} characters")
    return value


def _property(where: str, raw: Mapping[str, Any]) -> PropertyCondition:
    _unknown(where, raw, {"property", "op", "value", "values", "days"})
    prop = parse_property(f"{where}.property", raw["property"])
    op = raw.get("op", "eq")
    if op not in get_args(Op):
        raise InvalidInput(f"{where}.op: must be one of {', '.join(get_args(Op))}")
    values: tuple[str, ...] = ()
    if op in ("in", "not_in"):
        items = raw.get("values")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_VALUES or "value" in raw:
            raise InvalidInput(f"{where}.values: {op} takes 'values', a list of 1 to {MAX_VALUES} strings")
        values = tuple(_text(f"{where}.values[{i}]", v) for i, v in enumerate(items, 1))
    elif op in ("set", "not_set"):
        if "value" in raw or "values" in raw:
            raise InvalidInput(f"{where}.op: {op} takes no value")
    else:
        if "values" in raw or "value" not in raw:
            raise InvalidInput(f"{where}.value: {op} takes one 'value'")
        values = (_text(f"{where}.value", raw["value"]),)
    return PropertyCondition(prop, op, values, _days(where, raw))
