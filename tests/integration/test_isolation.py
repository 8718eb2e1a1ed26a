"""Two organisations that share nothing: org A's credentials never read, count, change or delete org B's data.

The sweeps are generic: every field of the GraphQL schema (including fields other packages add later) is
called with org A's owner token and each of org B's ids in every ID argument; the answer must hold
nothing of B and be word for word the answer for a random id.  Mutations must leave B's rows, as the
schema owner sees them, exactly as they were.  ClickHouse-backed fields and live Redis state are checked
with a session id both orgs use.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLUnionType,
    Undefined,
    get_named_type,
)

from productgraph.db import open_pool, tenant_transaction
from query_api.schema import schema
from tests.conftest import Servers
from tests.integration.test_admin_support import (
    B_MARK,
    RANGE,
    SHARED_SESSION,
    Org,
    World,
    count_rows,
    error_of,
    gql,
    ok,
    populate,
    snapshot,
)

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.test_admin_support",)  # the admin_api and world fixtures

GQL = schema._schema
OWN_PARTS = {"AnalyticsQuery", "AdminQuery", "OrgMutation", "ContentMutation"}
RANDOM_ID = "0b5ad8a3-1d7e-4c55-9c3c-5d1d63b7e0a1"


# ---- building calls from the schema ------------------------------------------------------------------


def selection(t: Any, depth: int = 2) -> str:
    named = get_named_type(t)
    if isinstance(named, GraphQLScalarType | GraphQLEnumType):
        return ""
    if isinstance(named, GraphQLUnionType):
        return "{ __typename }"
    parts = []
    for name, f in named.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined for a in f.args.values()):
            continue
        sub = get_named_type(f.type)
        if isinstance(sub, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif depth > 1:
            inner = selection(f.type, depth - 1)
            if inner:
                parts.append(f"{name} {inner}")
    return "{ " + " ".join(parts or ["__typename"]) + " }"


class Unfillable(Exception):
    pass


def value_for(name: str, t: GraphQLInputType, ids: dict[str, Any], required_only: bool = True) -> Any:
    """A valid value of input type ``t`` for an argument called ``name``; ``ids`` gives ID-typed values."""
    if isinstance(t, GraphQLNonNull):
        return value_for(name, t.of_type, ids, required_only)
    if isinstance(t, GraphQLList):
        if name == "corsOrigins":
            return ["https://example.test"]
        item = value_for(name, t.of_type, ids, required_only)
        return [item, item] if not isinstance(item, dict) or "matcher" not in item else [item, {**item, "name": "b"}]
    if isinstance(t, GraphQLInputObjectType):
        out = {}
        for fname, f in t.fields.items():
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined:
                out[fname] = value_for(fname, f.type, ids, required_only)
            elif get_named_type(f.type).name == "ID" and fname in ids:
                out[fname] = ids[fname]
        return out
    named = t.name  # type: ignore[union-attr]
    if named == "ID":
        return ids.get(name, ids.get("*", RANDOM_ID))
    if named == "String":
        return {"email": f"x{uuid.uuid4().hex[:8]}@iso.test", "role": "viewer", "slug": f"s{uuid.uuid4().hex[:8]}",
                "sessionId": SHARED_SESSION}.get(name, f"iso {name}")  # fmt: skip
    if named == "Int":
        return 1
    if named == "Boolean":
        return False
    if named == "Float":
        return 1.0
    if named == "DateTime":
        return RANGE.split('"')[1]
    if named == "JSON":
        return {
            "matcher": {"event_type": "page.view"},
            "definition": {"steps": [{"event_type": "page.view"}, {"event_type": "ui.click"}]},
            "documentation": [],
        }.get(name, {})
    raise Unfillable(f"{name}: {named}")


def id_slots(field: GraphQLField) -> list[str]:
    """Names of the ID-typed arguments and ID fields of input arguments."""
    slots = []
    for name, arg in field.args.items():
        named = get_named_type(arg.type)
        if named.name == "ID":
            slots.append(name)
        elif isinstance(named, GraphQLInputObjectType):
            slots.extend(f for f, v in named.fields.items() if get_named_type(v.type).name == "ID")
    return slots


def operation(
    kind: str, name: str, field: GraphQLField, ids: dict[str, Any], extra: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``query``/``mutation`` text calling ``name`` with every required argument, the ID arguments found in
    ``ids`` and the ``extra`` ones (given values), all as variables."""
    decls, args, variables = [], [], {}
    extra = extra or {}
    for arg_name, arg in field.args.items():
        required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
        is_id = get_named_type(arg.type).name == "ID"
        if arg_name in extra:
            variables[arg_name] = extra[arg_name]
        elif required or (is_id and arg_name in ids):
            variables[arg_name] = value_for(arg_name, arg.type, ids)
        else:
            continue
        decls.append(f"${arg_name}: {arg.type}")
        args.append(f"{arg_name}: ${arg_name}")
    head = f"{kind}({', '.join(decls)})" if decls else kind
    call = f"{name}({', '.join(args)})" if args else name
    return f"{head} {{ {call} {selection(field.type)} }}", variables


def strawberry_origin(root_name: str, name: str) -> str:
    root = schema.get_type_by_name(root_name)
    assert root is not None
    for f in root.fields:  # type: ignore[union-attr]
        if schema.config.name_converter.get_graphql_name(f) == name:
            return str(f.origin.__qualname__.split(".")[0]) if f.origin else ""
    return ""


def b_id_candidates(b: Org) -> dict[str, list[str]]:
    everything = sorted(set(b.ids.values()) | {b.project_id, b.org_id})
    return {"projectId": [b.project_id, b.project_slug], "*": everything}


def assert_no_b(body: Any, b: Org) -> None:
    """No name of B anywhere; none of B's ids in the data (an error may echo the caller's own argument)."""
    assert B_MARK not in json.dumps(body), body
    data = json.dumps(body.get("data"))
    for value in [*b.ids.values(), b.org_id, b.project_id, b.project_slug]:
        assert value not in data, (value, body)


def control_for(b_value: str) -> str:
    """A made-up value of the same shape: a random UUID for an id, a random slug for a slug."""
    try:
        uuid.UUID(b_value)
    except ValueError:
        return "o" + b_value[::-1][:8]
    return RANDOM_ID


def same_error(body_b: Any, body_random: Any, b_value: str, control: str) -> None:
    assert body_b.get("data") in (None, {}) or all(v is None for v in body_b["data"].values()), body_b
    msg_b = error_of(body_b).replace(b_value, "X")
    msg_r = error_of(body_random).replace(control, "X")
    assert msg_b == msg_r, (msg_b, msg_r)
    assert "Unexpected error" not in msg_b


async def sweep(client: httpx.AsyncClient, w: World, kind: str) -> tuple[set[str], set[str]]:
    """Calls every field of the root type with B's ids; returns (fields called, fields skipped)."""
    root_name = "Query" if kind == "query" else "Mutation"
    root = GQL.query_type if kind == "query" else GQL.mutation_type
    assert root is not None
    called, skipped = set(), set()
    cands = b_id_candidates(w.b)
    for name, field in sorted(root.fields.items()):
        slots = id_slots(field)
        try:
            if not slots:
                query, variables = operation(kind, name, field, {})
                body = await gql(client, w.a.owner_token, query, variables)
                assert_no_b(body, w.b)
                called.add(name)
                continue
            values = cands["projectId"] if slots == ["projectId"] else cands["*"] + cands["projectId"][1:]
            for b_value in values:
                query, variables = operation(kind, name, field, dict.fromkeys(slots, b_value))
                body_b = await gql(client, w.a.owner_token, query, variables)
                control = control_for(b_value)
                query_r, variables_r = operation(kind, name, field, dict.fromkeys(slots, control))
                body_r = await gql(client, w.a.owner_token, query_r, variables_r)
                assert_no_b(body_b, w.b)
                same_error(body_b, body_r, b_value, control)
            called.add(name)
        except Unfillable:
            skipped.add(name)
        if name in skipped:
            assert strawberry_origin(root_name, name) not in OWN_PARTS, f"cannot build a call to {name}"
    return called, skipped


# ---- the tests ---------------------------------------------------------------------------------------


async def test_every_query_is_blind_to_the_other_org(
    admin_api: httpx.AsyncClient, world: World, servers: Servers
) -> None:
    before = snapshot(servers.postgres_admin_dsn, world.b.org_id)
    called, _ = await sweep(admin_api, world, "query")
    assert {"project", "journey", "savedFunnel", "cohort", "events", "session", "apiKeys", "auditLog"} <= called
    assert snapshot(servers.postgres_admin_dsn, world.b.org_id) == before


async def test_every_mutation_is_blind_to_the_other_org(
    admin_api: httpx.AsyncClient, world: World, servers: Servers
) -> None:
    before = snapshot(servers.postgres_admin_dsn, world.b.org_id)
    called, _ = await sweep(admin_api, world, "mutation")
    mutation = GQL.mutation_type
    assert mutation is not None
    own = {n for n in mutation.fields if strawberry_origin("Mutation", n) in OWN_PARTS}
    assert own and own <= called
    assert snapshot(servers.postgres_admin_dsn, world.b.org_id) == before


DELETES = {  # every mutation that removes or revokes something, with the kind of id it takes
    "deleteProject": "project2",
    "deleteJourney": "journey",
    "deleteSavedFunnel": "funnel",
    "deleteCohort": "cohort",
    "removeMember": "viewer_member",
    "revokeApiKey": "api_key",
    "revokeAccessToken": "service_token",
}


async def test_other_orgs_objects_cannot_be_deleted(
    admin_api: httpx.AsyncClient, world: World, servers: Servers
) -> None:
    """Org A's owner, holding ids copied from B (and B's slug as deleteProject's confirmation): each delete is
    the same not-found as for a made-up id, and afterwards all of B is still there, warehouse and live state
    included."""
    a, b = world.a, world.b
    before = snapshot(servers.postgres_admin_dsn, b.org_id)
    mutation = GQL.mutation_type
    assert mutation is not None
    for name, key in DELETES.items():
        field = mutation.fields[name]
        for target in (b.ids[key], b.project_id, b.project_slug) if name == "deleteProject" else (b.ids[key],):
            extra = {"confirmSlug": b.project_slug} if name == "deleteProject" else {}
            query, variables = operation("mutation", name, field, {"id": target}, extra)
            body_b = await gql(admin_api, a.owner_token, query, variables)
            control = control_for(target)
            query_r, variables_r = operation("mutation", name, field, {"id": control}, extra)
            body_r = await gql(admin_api, a.owner_token, query_r, variables_r)
            assert_no_b(body_b, b)
            same_error(body_b, body_r, target, control)
            assert "not found" in error_of(body_b), (name, body_b)
    assert snapshot(servers.postgres_admin_dsn, b.org_id) == before
    assert count_rows(servers, "events", b.project_id) == 7
    r = aioredis.from_url(servers.redis_url)
    try:
        assert await r.hget(f"session:{b.project_id}:{SHARED_SESSION}", "event_count") == b"7"
    finally:
        await r.aclose()
    theirs = await ok(admin_api, b.owner_token, f'{{ events(projectId: "{b.project_id}", {RANGE}) {{ total }} }}')
    assert theirs["events"]["total"] == 7


async def test_lists_hold_only_the_callers_org(admin_api: httpx.AsyncClient, world: World) -> None:
    a, b = world.a, world.b
    for token in (a.owner_token, a.tokens["analyst"], a.tokens["viewer"], a.tokens["service"]):
        body = await gql(
            admin_api,
            token,
            "{ organization { id name } me { organization { id } } projects { id name } members { id email } "
            f'journeys(projectId: "{a.project_id}", includeInactive: true) {{ id name steps {{ id }} }} '
            f'capabilities(projectId: "{a.project_id}") {{ id }} features(projectId: "{a.project_id}") {{ id }} '
            f'savedFunnels(projectId: "{a.project_id}") {{ id }} cohorts(projectId: "{a.project_id}") {{ id }} }}',
        )
        assert not body.get("errors"), body
        assert_no_b(body, b)
        assert body["data"]["organization"]["id"] == a.org_id
    admin_view = await ok(
        admin_api,
        a.owner_token,
        f'{{ accessTokens {{ id }} auditLog(limit: 200) {{ id targetId details }} apiKeys(projectId: "{a.project_id}") '
        "{ id } }",
    )
    assert_no_b(admin_view, b)
    assert len(admin_view["auditLog"]) > 5
    # B sees its own, through its own token (so the lists above are not empty by accident).
    own = await ok(admin_api, b.owner_token, f'{{ journeys(projectId: "{b.project_id}") {{ name }} }}')
    assert own["journeys"] == [{"name": f"{B_MARK} thing"}]


async def test_warehouse_and_live_state_are_per_tenant(admin_api: httpx.AsyncClient, world: World) -> None:
    a, b = world.a, world.b
    q = (
        '{{ events(projectId: "{p}", ' + RANGE + ") {{ total byType {{ eventType count }} }} "
        'session(projectId: "{p}", sessionId: "'
        + SHARED_SESSION
        + '") {{ eventCount live {{ eventCount userId }} }} }}'
    )
    mine = await ok(admin_api, a.owner_token, q.format(p=a.project_id))
    assert mine["events"] == {"total": 3, "byType": [{"eventType": "page.view", "count": 3}]}
    assert mine["session"] == {"eventCount": 3, "live": {"eventCount": 3, "userId": "user-amark4q"}}
    theirs = await ok(admin_api, b.owner_token, q.format(p=b.project_slug))
    assert theirs["session"] == {"eventCount": 7, "live": {"eventCount": 7, "userId": f"user-{B_MARK}"}}
    for ref in (b.project_id, b.project_slug):
        crossed = await gql(admin_api, a.owner_token, q.format(p=ref))
        made_up = await gql(admin_api, a.owner_token, q.format(p=RANDOM_ID))
        assert crossed["data"] is None
        assert error_of(crossed).replace(ref, "X") == error_of(made_up).replace(RANDOM_ID, "X")


async def test_scoped_clickhouse_reads_only_see_the_tenant(world: World, servers: Servers) -> None:
    from productgraph.connections import clickhouse_client
    from query_api.tenant_scope import TENANT_FILTER, Tenant, UnscopedQuery, scoped_query

    ch = clickhouse_client(servers.clickhouse_url)
    a = Tenant(world.a.org_id, world.a.project_id)
    res = await scoped_query(ch, a, f"SELECT DISTINCT org_id, project_id FROM events FINAL WHERE {TENANT_FILTER}")
    assert [tuple(str(v) for v in r) for r in res.result_rows] == [(world.a.org_id, world.a.project_id)]
    with pytest.raises(UnscopedQuery):
        await scoped_query(ch, a, "SELECT count() FROM events")
    with pytest.raises(UnscopedQuery):  # the tenant cannot be overridden by parameters
        await scoped_query(ch, a, f"SELECT count() FROM events WHERE {TENANT_FILTER}", {"org": world.b.org_id})
    # A tenant built for A's org with B's project reads nothing (both conditions hold on every row).
    mixed = Tenant(world.a.org_id, world.b.project_id)
    res = await scoped_query(ch, mixed, f"SELECT count() FROM events FINAL WHERE {TENANT_FILTER}")
    assert res.result_rows == [(0,)]
    ch.close()


async def test_500_concurrent_requests_never_cross_tenants(
    admin_api: httpx.AsyncClient, world: World, servers: Servers
) -> None:
    a, b = world.a, world.b
    expected = {}
    for org in (a, b):
        data = await ok(admin_api, org.owner_token, "{ projects { id } }")
        expected[org.owner_token] = (org.org_id, {p["id"] for p in data["projects"]})

    async def one(i: int) -> None:
        org = a if i % 2 == 0 else b
        data = await ok(admin_api, org.owner_token, "{ organization { id } projects { id } }")
        org_id, projects = expected[org.owner_token]
        assert data["organization"]["id"] == org_id
        assert {p["id"] for p in data["projects"]} == projects

    await asyncio.gather(*(one(i) for i in range(500)))

    # The same straight through the pool: the tenant setting never outlives its transaction.
    async with open_pool(servers.postgres_dsn, max_size=10) as pool:

        async def direct(i: int) -> None:
            org = a if i % 2 == 0 else b
            async with tenant_transaction(pool, org.org_id) as conn:
                cur = await conn.execute("SELECT DISTINCT org_id::text FROM projects")
                assert await cur.fetchall() == [(org.org_id,)]
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT current_setting('app.org_id', true), count(*) FROM projects")
                assert await cur.fetchone() in (("", 0), (None, 0))

        await asyncio.gather(*(direct(i) for i in range(500)))


PAYLOADS = [
    "' OR '1'='1",
    "'; DROP TABLE projects; --",
    '") OR 1=1 --',
    "{org:UUID}",
    "x' UNION SELECT * FROM system.tables --",
    "' || (SELECT sleep(3)) || '",
    "file('/etc/passwd')",
    "%s%(x)s{}",
    "\\'; SELECT 1; --",
    "\x00",
    "\ud800",
    "é ünï \U0001d518 \u202e 😀",
    "a" * 5000,
]


async def test_injection_in_every_string_argument_changes_nothing(
    admin_api: httpx.AsyncClient, servers: Servers, world: World
) -> None:
    c = await populate(admin_api, servers, "cmark7k")
    before_b = snapshot(servers.postgres_admin_dsn, world.b.org_id)
    ids = {"projectId": c.project_id, "capabilityId": c.ids["capability"], "featureId": c.ids["feature"]}
    by_word = [("ApiKey", "api_key"), ("Member", "viewer_member"), ("AccessToken", "service_token"),
               ("Capability", "capability"), ("Feature", "feature"), ("Journey", "journey"), ("Funnel", "funnel"),
               ("Cohort", "cohort"), ("Project", "project2")]  # fmt: skip
    checked = 0
    for kind, root in (("query", GQL.query_type), ("mutation", GQL.mutation_type)):
        assert root is not None
        for name, field in sorted(root.fields.items()):
            title = name[0].upper() + name[1:]
            own_id = next((c.ids[key] for word, key in by_word if word in title), c.project_id)
            base = {**ids, "id": own_id}
            strings = [n for n, arg in field.args.items() if get_named_type(arg.type).name in ("String", "ID")]
            for arg_name in strings:
                for payload in PAYLOADS:
                    try:
                        query, variables = operation(kind, name, field, base, {arg_name: payload})
                    except Unfillable:
                        break
                    body = await gql(admin_api, c.owner_token, query, variables)
                    checked += 1
                    for err in body.get("errors") or []:
                        assert err["message"] != "Unexpected error.", (name, arg_name, payload, body)
                    assert_no_b(body, world.b)
    assert checked > 300
    # Nothing was dropped or rewritten behind the API's back; B is untouched.
    assert snapshot(servers.postgres_admin_dsn, world.b.org_id) == before_b
    names = await ok(admin_api, c.owner_token, "{ projects { name } }")
    assert {"'; DROP TABLE projects; --"} <= {p["name"] for p in names["projects"]}
