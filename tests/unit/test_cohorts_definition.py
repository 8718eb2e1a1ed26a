"""Cohort definitions (parsing, limits, the saved-definition check) and the membership reference on
hand-computed data (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from query_api.admin.validation import validate_definition
from query_api.cohorts import cohort_sql, parse_definition, reference_members
from query_api.errors import InvalidInput
from query_api.tenant_scope import check_scoped
from schemas.records import EventRecord

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
_n = 0


def ev(days_ago: float, session: str, user: str | None = None, anon: str | None = None, **kw: Any) -> EventRecord:
    global _n
    _n += 1
    f: dict[str, Any] = {k.replace("_", "."): v for k, v in kw.items() if k not in ("meta", "etype", "f")}
    f |= kw.get("f", {})
    if user:
        f["user.id"] = user
    if anon:
        f["user.anonymous_id"] = anon
    ts = int((NOW - timedelta(days=days_ago)).timestamp() * 1000)
    return EventRecord("o", "p", f"e{_n}", session, kw.get("etype", "custom"), ts, ts, fields=f,
                       metadata=kw.get("meta", {}))  # fmt: skip


RECORDS = [
    ev(1, "s1", "u1", event_name="buy"), ev(2, "s1", "u1", event_name="buy", meta={"plan": "pro"}),
    ev(3, "s2", anon="a", event_name="buy"), ev(2, "s2", "u2", "a", event_name="login"),
    ev(4, "s3", event_name="buy", page_path="/pricing"),
    ev(45, "s4", "u4", event_name="buy"), ev(1, "s4b", "u4", f={"api.status_code": 500}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ({"did_event": {"event_name": "buy"}, "min": 2}, {"user:u1"}),
        ({"did_event": {"event_name": "buy"}, "max": 1}, {"user:u2", "session:s3"}),  # a merged into u2
        ({"did_event": {"event_name": "buy"}, "min": 0, "max": 0}, {"user:u4"}),
        ({"did_event": {"event_name": "buy"}, "days": 50}, {"user:u1", "user:u2", "session:s3", "user:u4"}),
        ({"property": "metadata.plan", "op": "set"}, {"user:u1"}),
        ({"property": "api.status_code", "op": "in", "values": ["500", "503"]}, {"user:u4"}),
        ({"property": "page.path", "op": "prefix", "value": "/pri"}, {"session:s3"}),
        ({"property": "user.id", "op": "contains", "value": "u"}, {"user:u1", "user:u2", "user:u4"}),
        ({"any": [{"property": "page.path", "op": "eq", "value": "/pricing"},
                  {"all": [{"did_event": {}, "min": 2}, {"property": "user.id", "op": "neq", "value": "u1"}]}]},
         {"session:s3", "user:u2"}),
    ],
)  # fmt: skip
def test_members_hand_computed(definition: dict[str, Any], expected: set[str]) -> None:
    assert reference_members(RECORDS, parse_definition(definition), NOW) == expected
    q = cohort_sql(parse_definition(definition), NOW)
    check_scoped(q.sql)  # every read carries the tenant condition
    assert all(k.startswith("cohort_") for k in q.params)
    for value in q.params.values():  # user values travel as parameters, never in the text
        if isinstance(value, str) and len(value) > 3:
            assert value not in q.sql


def test_duplicates_count_once() -> None:
    twice = [*RECORDS, dataclasses.replace(RECORDS[0])]
    assert reference_members(twice, parse_definition({"did_event": {"event_name": "buy"}, "min": 3}), NOW) == set()


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({}, "definition: needs 'did_event', 'property', 'all' or 'any'"),
        ({"did_event": {"nope": 1}}, "definition.did_event.nope: unknown matcher field"),
        ({"did_event": {}, "min": 3, "max": 2}, "definition.max: must be an integer in 3..1000000"),
        ({"did_event": {}, "days": 401}, "definition.days: must be an integer in 1..400"),
        ({"did_event": {}, "extra": 1}, "definition.extra: unknown field"),
        ({"property": "ui.scroll.position", "op": "set"}, "definition.property: unknown or unsupported property"),
        ({"property": "page.path", "op": "like", "value": "x"}, "definition.op: must be one of"),
        ({"property": "page.path", "op": "in", "value": "x"}, "definition.values: in takes 'values'"),
        ({"property": "page.path", "op": "set", "value": "x"}, "definition.op: set takes no value"),
        ({"all": []}, "definition.all: must be a non-empty list"),
        (
            {"all": [{"any": [{"all": [{"any": [{"did_event": {}}]}]}]}]},
            "definition.all[1].any[1].all[1]: groups nest at most 3 deep",
        ),
        ({"any": [{"did_event": {}}] * 21}, "definition.any[21]: at most 20 conditions"),
    ],
)
def test_invalid_definitions(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_definition(definition)
    assert str(err.value).startswith(message)
    with pytest.raises(InvalidInput):  # the saved-definition check of the admin surface is the same
        validate_definition("cohort", definition)
