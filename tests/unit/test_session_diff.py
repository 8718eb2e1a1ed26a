"""The state diff of rule 13 on hand-computed cases, plus the pure parts around replay and search:
cursors, filter validation, and the tenant scope of every query the sessions package builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from query_api.errors import InvalidInput
from query_api.sessions import sql
from query_api.sessions.cursor import (
    EventCursor,
    SessionCursor,
    decode_event_cursor,
    decode_session_cursor,
    encode,
)
from query_api.sessions.diff import MAX_DEPTH, MAX_ENTRIES, PathChange, diff_states, format_key, parse_state
from query_api.sessions.model import SessionFilter
from query_api.tenant_scope import check_scoped


def _d(before: Any, after: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[tuple[str, Any, Any]]]:
    """(added, removed, changed) of two JSON values given as Python values (dumped to text first)."""
    b = None if before is None else orjson.dumps(before).decode()
    a = None if after is None else orjson.dumps(after).decode()
    d = diff_states(b, a)
    assert not d.truncated
    return (
        [(c.path, c.new) for c in d.added],
        [(c.path, c.old) for c in d.removed],
        [(c.path, c.old, c.new) for c in d.changed],
    )


def test_seed_example_cart_items() -> None:
    # The seed's example: before [] after [{"id": "prod_123", "qty": 1}].
    assert _d([], [{"id": "prod_123", "qty": 1}]) == ([("$[0]", {"id": "prod_123", "qty": 1})], [], [])


def test_nested_objects_by_key_in_document_order() -> None:
    before = {"user": {"name": "Ann", "tags": ["a"], "age": 30}, "cart": {"n": 1}, "gone": True}
    after = {"user": {"name": "Bob", "tags": ["a"], "email": "b@x"}, "cart": {"n": 1}, "new": None}
    added, removed, changed = _d(before, after)
    assert added == [("$.user.email", "b@x"), ("$.new", None)]
    assert removed == [("$.user.age", 30), ("$.gone", True)]
    assert changed == [("$.user.name", "Ann", "Bob")]


def test_equal_states_have_no_changes() -> None:
    state = {"a": [1, {"b": [None, True, "x"]}], "c": {}}
    assert _d(state, state) == ([], [], [])


def test_arrays_by_index_grow_and_shrink_without_move_detection() -> None:
    assert _d([1, 2], [1, 2, 3, 4]) == ([("$[2]", 3), ("$[3]", 4)], [], [])
    assert _d([1, 2, 3], [1]) == ([], [("$[1]", 2), ("$[2]", 3)], [])
    # An element inserted at the front: every index shifts (no move detection).
    assert _d({"a": ["x", "y"]}, {"a": ["w", "x", "y"]}) == (
        [("$.a[2]", "y")],
        [],
        [("$.a[0]", "x", "w"), ("$.a[1]", "y", "x")],
    )
    assert _d({"m": [[1], [2, 3]]}, {"m": [[1, 9], [2]]}) == ([("$.m[0][1]", 9)], [("$.m[1][1]", 3)], [])


def test_type_changes_are_changes_at_the_node() -> None:
    assert _d({"a": {"b": 1}}, {"a": [1]}) == ([], [], [("$.a", {"b": 1}, [1])])
    assert _d({"a": 1}, {"a": "1"}) == ([], [], [("$.a", 1, "1")])
    assert _d({"a": True}, {"a": 1}) == ([], [], [("$.a", True, 1)])  # boolean vs number, though True == 1
    assert _d({"a": 0}, {"a": False}) == ([], [], [("$.a", 0, False)])
    assert _d({"a": None}, {"a": {}}) == ([], [], [("$.a", None, {})])
    # JSON has one number type: 1 and 1.0 are the same value.
    assert diff_states('{"a": 1}', '{"a": 1.0}').empty


def test_null_value_versus_missing_key() -> None:
    assert _d({"a": None}, {}) == ([], [("$.a", None)], [])
    assert _d({}, {"a": None}) == ([("$.a", None)], [], [])


def test_missing_sides_are_null() -> None:
    d = diff_states("", '{"a": 1}')
    assert d.changed == [PathChange("$", None, {"a": 1})] and not d.added and not d.removed
    d = diff_states('{"a": 1}', None)
    assert d.changed == [PathChange("$", {"a": 1}, None)]
    assert diff_states(None, "").empty
    assert parse_state("") is None and parse_state(None) is None


def test_non_json_stays_a_string() -> None:
    assert parse_state("open") == "open"
    assert parse_state("{broken") == "{broken"
    assert parse_state('"quoted"') == "quoted"  # a JSON string is JSON
    assert parse_state("NaN") == "NaN"  # strict JSON: not a number
    d = diff_states("open", "closed")
    assert d.changed == [PathChange("$", "open", "closed")]
    assert diff_states("open", '"open"').empty  # the text and the JSON string of it are the same value
    d = diff_states("{broken", '{"a": 1}')
    assert d.changed == [PathChange("$", "{broken", {"a": 1})]


def test_paths_of_odd_keys() -> None:
    assert format_key("abc_1") == ".abc_1"
    assert format_key("_x") == "._x"
    assert format_key("a.b") == '["a.b"]'
    assert format_key("1a") == '["1a"]'
    assert format_key("0") == '["0"]'  # an object key, not the index [0]
    assert format_key("") == '[""]'
    assert format_key("a b") == '["a b"]'
    assert format_key('say "hi"') == '["say \\"hi\\""]'
    assert format_key("a]b") == '["a]b"]'
    assert format_key("prénom") == '["prénom"]'  # non-ASCII kept as is, in brackets
    before = {"a.b": {"prénom": "Zoé", "日本": [1]}, "0": 1}
    after = {"a.b": {"prénom": "Zoë", "日本": [1, 2]}, "0": 2}
    added, removed, changed = _d(before, after)
    assert added == [('$["a.b"]["日本"][1]', 2)]
    assert removed == []
    assert changed == [('$["a.b"]["prénom"]', "Zoé", "Zoë"), ('$["0"]', 1, 2)]


def test_deep_states_are_compared_as_text() -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    deeper = "[" * (MAX_DEPTH + 1) + "1" + "]" * (MAX_DEPTH + 1)
    d = diff_states(deep, deeper)
    assert d.truncated and d.changed == [PathChange("$", deep, deeper)]
    same = diff_states(deep, deep)
    assert same.truncated and same.empty
    # Exactly MAX_DEPTH levels still diffs structurally.
    ok = diff_states("[" * MAX_DEPTH + "]" * MAX_DEPTH, "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH)
    assert not ok.truncated and ok.added == [PathChange("$" + "[0]" * MAX_DEPTH, None, 1)]
    # Beyond orjson's own nesting limit the text is not JSON: it stays a string.
    assert parse_state("[" * 2000 + "]" * 2000) == "[" * 2000 + "]" * 2000


def test_huge_states_are_cut_at_the_entry_bound() -> None:
    before = orjson.dumps(list(range(5000))).decode()
    after = orjson.dumps([i + 1 for i in range(5000)]).decode()
    d = diff_states(before, after)
    assert d.truncated and len(d.changed) == MAX_ENTRIES
    assert d.changed[0] == PathChange("$[0]", 0, 1) and d.changed[-1] == PathChange(f"$[{MAX_ENTRIES - 1}]", 999, 1000)


# --- cursors ----------------------------------------------------------------------------------------------


def test_cursors_round_trip_and_refuse_other_lists() -> None:
    s = SessionCursor(1_700_000_000_123, "sess/ü#1", 2)
    assert decode_session_cursor(encode(s)) == s
    e = EventCursor("s1", None, 1_700_000_000_123, -3, 1_700_000_000_200, "e-9")
    assert decode_event_cursor(encode(e), "s1", None) == e
    with pytest.raises(InvalidInput):
        decode_event_cursor(encode(e), "s2", None)  # another session's cursor
    with pytest.raises(InvalidInput):
        decode_event_cursor(encode(e), "s1", 1)  # another segment selection
    with pytest.raises(InvalidInput):
        decode_session_cursor(encode(e))  # a replay cursor in a search
    for junk in ["", "!!!", "bm90IGpzb24", encode(SessionCursor(1, "x", 1)) + "A", "W10"]:
        with pytest.raises(InvalidInput):
            decode_session_cursor(junk)


# --- filters ----------------------------------------------------------------------------------------------

NOW = datetime(2030, 1, 10, 12, tzinfo=UTC)


def test_filter_defaults_to_the_last_seven_days() -> None:
    r = SessionFilter().resolve(NOW)
    assert (r.date_from, r.date_to) == (NOW - timedelta(days=7), NOW)
    r = SessionFilter(date_to=NOW - timedelta(days=1)).resolve(NOW)
    assert r.date_from == NOW - timedelta(days=8)


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (SessionFilter(date_from=NOW - timedelta(days=401)), "400 days"),
        (SessionFilter(date_from=NOW, date_to=NOW), "before"),
        (SessionFilter(text="x" * 201), "text: longer than 200"),
        (SessionFilter(text=""), "text: must not be empty"),
        (SessionFilter(page="/a\x00"), "page: must not contain NUL"),
        (SessionFilter(journey_status="won"), "journeyStatus"),
        (SessionFilter(min_duration_ms=-1), "minDurationMs"),
        (SessionFilter(min_duration_ms=10, max_duration_ms=5), "minDurationMs: must not exceed"),
        (SessionFilter(date_from=datetime(2030, 1, 1)), "time zone"),
    ],
)
def test_filter_errors_name_the_field(flt: SessionFilter, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        flt.resolve(NOW)


def test_every_query_is_tenant_scoped_and_binds_user_input() -> None:
    text = "'); DROP TABLE events; --"
    full = SessionFilter(
        user_id="u", page="/p", page_match="prefix", journey_id="j", journey_status="converted", has_error=True,
        min_duration_ms=1, max_duration_ms=2, text=text,
    ).resolve(NOW)  # fmt: skip
    queries = [
        sql.search_query(full, SessionCursor(1, "s", 1), 51),
        sql.search_query(SessionFilter().resolve(NOW), None, 51),
        sql.count_query(full),
        sql.segments_query("s", 2),
        sql.segments_query("s", None),
        sql.exists_query("s"),
        sql.events_query("s", (NOW, NOW), EventCursor("s", 1, 1, 0, 1, "e"), 101),
        sql.events_query("s", None, None, 101),
        sql.timeline_query("s", None),
    ]
    for q in queries:
        check_scoped(q.sql)  # raises when a table read lacks its tenant condition
        assert text not in q.sql and "/p" not in q.sql
    assert queries[0].params["text"] == text and queries[0].params["page"] == "/p"
    assert "startsWith(page_path, {page:String})" in queries[0].sql
