"""Pure checks of the tenancy layer: the ClickHouse/Redis tenant scope, admin input validation, roles, and
the schema composition rules.  No servers."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
import strawberry

from productgraph.admin import ROLES, role_at_least
from query_api.admin.validation import (
    parse_id,
    register_definition_validator,
    validate_definition,
    validate_email,
    validate_journey_steps,
    validate_settings,
    validate_slug,
    validate_text,
)
from query_api.errors import InvalidInput, NotFound
from query_api.tenant_scope import (
    TENANT_FILTER,
    Tenant,
    UnscopedQuery,
    check_scoped,
    read_settings,
    redis_key,
    tenant_parameters,
)
from schemas.sessions import live_key

T = Tenant("0b5ad8a3-1d7e-4c55-9c3c-5d1d63b7e0a1", "7f1f4f1e-0c1b-4a43-9c61-2a4d0d3b8f00")


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count() FROM events FINAL WHERE {TENANT_FILTER}",
        "SELECT count() FROM events AS e WHERE e.org_id = {org:UUID} AND e.project_id = {project:UUID}",
        f"WITH s AS (SELECT session_id FROM events WHERE {TENANT_FILTER}) SELECT count() FROM s",
        f"SELECT * FROM (SELECT * FROM events WHERE {TENANT_FILTER}) JOIN sessions USING (session_id) "
        f"WHERE sessions.org_id = {{org:UUID}} AND sessions.project_id = {{project:UUID}}",
        f"SELECT number FROM numbers(3) CROSS JOIN (SELECT 1 FROM events WHERE {TENANT_FILTER})",
    ],
)
def test_scoped_sql_is_accepted(sql: str) -> None:
    check_scoped(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM events",
        "SELECT count() FROM events WHERE org_id = {org:UUID}",  # project missing
        f"SELECT * FROM events WHERE {TENANT_FILTER} UNION ALL SELECT * FROM events",  # second read unscoped
        f"SELECT * FROM events e JOIN sessions s USING (session_id) WHERE {TENANT_FILTER}",  # join unscoped
        f"SELECT * FROM events WHERE org_id = '{T.org_id}' AND project_id = '{T.project_id}'",  # pasted values
        "SELECT 1",
    ],
)
def test_unscoped_sql_is_refused(sql: str) -> None:
    with pytest.raises(UnscopedQuery):
        check_scoped(sql)


def test_tenant_parameters_come_from_the_tenant_only() -> None:
    assert tenant_parameters(T, {"x": 1}) == {"x": 1, "org": T.org_id, "project": T.project_id}
    for clash in ({"org": "other"}, {"project": "other"}):
        with pytest.raises(UnscopedQuery):
            tenant_parameters(T, clash)


def test_redis_keys_live_under_the_tenants_project() -> None:
    assert redis_key(T, "session", "s1") == f"session:{T.project_id}:s1"
    assert redis_key(T, "session", "s1") == live_key(T.project_id, "s1")  # the processors' layout (schemas/)
    assert redis_key(T, "live_steps", "j", "2") == f"live_steps:{T.project_id}:j:2"
    with pytest.raises(ValueError):
        redis_key(T, "session:other-project")


def test_roles_are_ordered() -> None:
    assert ROLES == ("viewer", "analyst", "admin", "owner")
    assert role_at_least("owner", "admin") and role_at_least("analyst", "analyst")
    assert not role_at_least("viewer", "analyst") and not role_at_least("root", "viewer")


def test_ids_that_are_not_uuids_are_simply_not_found() -> None:
    assert parse_id(str(uuid.UUID(int=5)), "journey") == uuid.UUID(int=5)
    with pytest.raises(NotFound, match='journey "\' OR 1=1" not found'):
        parse_id("' OR 1=1", "journey")


def test_text_slug_email() -> None:
    assert validate_text("  Checkout ", "name") == "Checkout"
    for bad in ("", "   ", "x" * 256, "a\x00b", "\ud800"):
        with pytest.raises(InvalidInput, match=r"^name: "):
            validate_text(bad, "name")
    assert validate_text("", "description", required=False) == ""
    assert validate_slug("web-app_2") == "web-app_2"
    for bad in ("Web", "-web", "a b", "a'b", "é"):
        with pytest.raises(InvalidInput):
            validate_slug(bad)
    assert validate_email(" Ada@Example.COM ") == "ada@example.com"
    with pytest.raises(InvalidInput):
        validate_email("not an email")


def test_settings_merge_reset_and_limits() -> None:
    stored = validate_settings({}, {"rate_limit_per_s": 5, "cors_origins": ["https://a.example", "*"]})
    assert stored == {"rate_limit_per_s": 5, "cors_origins": ["https://a.example", "*"]}
    assert validate_settings(stored, {"rate_limit_per_s": None, "retention_days": 30}) == {
        "cors_origins": ["https://a.example", "*"],
        "retention_days": 30,
    }
    for bad, where in [
        ({"session_timeout_minutes": 0}, "settings.session_timeout_minutes"),
        ({"dedup_window_s": 10**9}, "settings.dedup_window_s"),
        ({"rate_limit_per_s": "10"}, "settings.rate_limit_per_s"),
        ({"retention_days": 1.5}, "settings.retention_days"),
        ({"cors_origins": ["https://a.example/path"]}, "settings.cors_origins"),
        ({"colour": "red"}, "settings.colour"),
    ]:
        with pytest.raises(InvalidInput, match=f"^{where}"):
            validate_settings({}, bad)


def test_journey_steps_are_parsed_and_normalised() -> None:
    steps = validate_journey_steps(
        [("land", {"event_type": "page.view", "page_path": "/"}, True), ("buy", {"action": "buy"}, False)]
    )
    assert [(s.name, s.matcher, s.is_required) for s in steps] == [
        ("land", {"event_type": "page.view", "page_path": "/", "page_path_mode": "exact"}, True),
        ("buy", {"action": "buy"}, False),
    ]
    with pytest.raises(InvalidInput, match=r"^steps\[2\]\.matcher\.page_path_mode"):
        validate_journey_steps([("a", {"action": "a"}, True), ("b", {"page_path": "/", "page_path_mode": "re"}, True)])
    with pytest.raises(InvalidInput, match=r"^steps\[1\]\.matcher: contains NUL"):
        validate_journey_steps([("a", {"action": "a\x00"}, True), ("b", {"action": "b"}, True)])


def test_definitions_and_a_stricter_validator() -> None:
    funnel = {"steps": [{"event_type": "page.view"}, {"matcher": {"event_type": "ui.click"}, "window_ms": 5}]}
    assert validate_definition("funnel", funnel) == funnel
    for bad in ({"steps": [{"event_type": "page.view"}]}, {"steps": [{"event_type": "x"}, {"action": "a"}]}, []):
        with pytest.raises(InvalidInput):
            validate_definition("funnel", bad)
    with pytest.raises(InvalidInput, match="larger than 64 KB"):
        validate_definition("cohort", {"x": "y" * 70_000})
    with pytest.raises(InvalidInput, match="not storable JSON"):
        validate_definition("cohort", {"x": 2**70})

    def strict(definition: dict[str, object]) -> dict[str, object]:
        if "mode" not in definition:
            raise InvalidInput("definition.mode: required")
        return definition

    register_definition_validator("funnel", strict)
    try:
        with pytest.raises(InvalidInput, match=r"definition\.mode"):
            validate_definition("funnel", funnel)
    finally:
        from query_api.admin import validation

        register_definition_validator("funnel", validation._funnel_definition)
    with pytest.raises(ValueError):
        register_definition_validator("dashboard", strict)


def test_schema_parts_may_not_override_each_other() -> None:
    from query_api.schema import _merge

    @strawberry.type
    class One:
        @strawberry.field
        def ping(self) -> int:
            return 1

    @strawberry.type
    class Two:
        @strawberry.field
        def ping(self) -> int:
            return 2

    with pytest.raises(TypeError, match=r"Query\.ping is defined by both"):
        _merge("Query", [One, Two])
    with pytest.raises(TypeError, match="not a strawberry type"):
        _merge("Query", [One, object()])


def test_version_settings_go_only_to_servers_that_have_them() -> None:
    old, new = (
        SimpleNamespace(server_settings={}),
        SimpleNamespace(server_settings={"use_skip_indexes_on_data_read": 1}),
    )
    wanted = {"use_skip_indexes_on_data_read": 0, "group_by_two_level_threshold": 2000}
    assert read_settings(new, wanted) == wanted  # type: ignore[arg-type]
    assert read_settings(old, wanted) == {"group_by_two_level_threshold": 2000}  # type: ignore[arg-type]
    assert read_settings(old, None) == {}  # type: ignore[arg-type]
