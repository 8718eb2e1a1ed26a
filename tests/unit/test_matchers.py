"""The matcher language in Python and as ClickHouse text (pure).  That both sides agree on stored events
is checked on a real server in tests/integration/test_matchers_clickhouse.py."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.matchers import matches, parse_matcher, to_clickhouse
from schemas.records import EventRecord


def _rec(metadata: dict[str, Any], **fields: Any) -> EventRecord:
    return EventRecord("o", "p", "e1", "s1", "page.view", 0, 0, fields=fields, metadata=metadata)


@pytest.mark.parametrize(
    ("stored", "wanted", "hit"),
    [
        ({"plan": "pro"}, "pro", True),
        ({"plan": True}, "true", True),  # non-strings compare as stored: compact JSON text
        ({"plan": True}, "True", False),
        ({"plan": None}, "null", True),
        ({"plan": [1, "a"]}, '[1,"a"]', True),
        ({"plan": ""}, "", True),
        ({}, "", False),  # a missing key is not an empty value
    ],
)
def test_metadata_compares_stored_text(stored: dict[str, Any], wanted: str, hit: bool) -> None:
    assert matches(parse_matcher({"metadata": {"plan": wanted}}), _rec(stored)) is hit


def test_sql_checks_the_key_exists_and_binds_every_value() -> None:
    sql, params = to_clickhouse(parse_matcher({"metadata": {"plan": ""}, "event_name": "x'; DROP"}), "m")
    assert sql == (
        "event_name = {m_name:String} AND mapContains(metadata, {m_mk0:String}) "
        "AND metadata[{m_mk0:String}] = {m_mv0:String}"
    )
    assert params == {"m_name": "x'; DROP", "m_mk0": "plan", "m_mv0": ""}


@pytest.mark.parametrize(
    ("glob", "pattern"),
    [
        ("/a/*", r"(?s)^\x{2F}a\x{2F}.*$"),
        ("[^a]", r"(?s)^[\x{5E}\x{61}]$"),  # '^' is literal in a glob set
        ("[!]]", r"(?s)^[^\x{5D}]$"),  # '!' negates, a leading ']' is a member
        ("[[:alpha:]]", r"(?s)^[\x{5B}\x{3A}\x{61}\x{6C}\x{70}\x{68}\x{61}\x{3A}]\x{5D}$"),  # no POSIX classes
        ("[z-a]", r"(?s)^[^\x{0}-\x{10FFFF}]$"),  # an empty range matches nothing
        ("[!z-a]", "(?s)^.$"),
        ("a[", r"(?s)^a\x{5B}$"),  # an unclosed '[' is literal
    ],
)
def test_globs_become_escaped_re2(glob: str, pattern: str) -> None:
    _, params = to_clickhouse(parse_matcher({"page_path": glob, "page_path_mode": "glob"}), "m")
    assert params["m_path"] == pattern
