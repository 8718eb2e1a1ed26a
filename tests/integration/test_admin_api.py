"""The admin surface over real Postgres: what each mutation does, who may call it, and its audit row."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from productgraph.admin import bootstrap_org
from productgraph.db import open_pool, resolve_access_token, resolve_api_key
from tests.conftest import Servers
from tests.integration.test_admin_support import (
    World,
    count_rows,
    error_of,
    gql,
    insert_aged_rows,
    ok,
)

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.test_admin_support",)  # the admin_api and world fixtures


@pytest.fixture
async def fresh(admin_api: httpx.AsyncClient, servers: Servers) -> dict[str, str]:
    """A new org with an owner member (so role rules about owners can be exercised)."""
    slug = f"adm{secrets.token_hex(4)}"
    b = bootstrap_org(servers.postgres_dsn, "Adm", slug, "App", slug, owner_email=f"owner@{slug}.test")
    assert b.owner_user_id is not None
    return {"org": b.org_id, "project": b.project_id, "slug": slug, "owner": b.admin_token, "key": b.api_key}


async def _audit_actions(client: httpx.AsyncClient, token: str, n: int = 50) -> list[str]:
    data = await ok(client, token, f"{{ auditLog(limit: {n}) {{ action targetType actorLabel }} }}")
    return [e["action"] for e in data["auditLog"]]


async def test_projects_and_settings(admin_api: httpx.AsyncClient, fresh: dict[str, str], servers: Servers) -> None:
    tok = fresh["owner"]
    created = await ok(
        admin_api,
        tok,
        'mutation { createProject(name: "Web", slug: "web", settings: {sessionTimeoutMinutes: 45}) '
        "{ id name slug settings { sessionTimeoutMinutes dedupWindowS rateLimitPerS retentionDays corsOrigins "
        "rateLimitBurst } } }",
    )
    p = created["createProject"]
    assert p["settings"] == {"sessionTimeoutMinutes": 45, "dedupWindowS": 86400, "rateLimitPerS": 10000,
                             "retentionDays": 365, "corsOrigins": ["*"], "rateLimitBurst": None}  # fmt: skip
    dup = await gql(admin_api, tok, 'mutation { createProject(name: "Web", slug: "web") { id } }')
    assert error_of(dup) == "a project with slug 'web' already exists"

    upd = await ok(
        admin_api,
        tok,
        "mutation($id: ID!) { updateProjectSettings(id: $id, settings: {rateLimitPerS: 5, corsOrigins: "
        '["https://shop.example", "http://localhost:3000"], sessionTimeoutMinutes: null}) '
        "{ settings { sessionTimeoutMinutes rateLimitPerS corsOrigins } } }",
        {"id": p["id"]},
    )
    assert upd["updateProjectSettings"]["settings"] == {
        "sessionTimeoutMinutes": 30,  # null: back to the default
        "rateLimitPerS": 5,
        "corsOrigins": ["https://shop.example", "http://localhost:3000"],
    }
    for bad, msg in [
        ("{rateLimitPerS: -1}", "settings.rate_limit_per_s"),
        ("{sessionTimeoutMinutes: 100000}", "settings.session_timeout_minutes"),
        ('{corsOrigins: ["javascript:alert(1)"]}', "settings.cors_origins"),
    ]:
        body = await gql(admin_api, tok, f'mutation {{ updateProjectSettings(id: "web", settings: {bad}) {{ id }} }}')
        assert error_of(body).startswith(msg), body
    renamed = await ok(admin_api, tok, 'mutation { renameProject(id: "web", name: "Web shop") { name slug } }')
    assert renamed["renameProject"] == {"name": "Web shop", "slug": "web"}

    # The gateway's view of the project: stored overrides over the defaults.
    key = await ok(admin_api, tok, 'mutation { createApiKey(projectId: "web", name: "sdk") { secret } }')
    async with open_pool(servers.postgres_dsn) as pool:
        info = await resolve_api_key(pool, key["createApiKey"]["secret"])
    assert info is not None and info.project_id == p["id"]
    origins = ["https://shop.example", "http://localhost:3000"]
    assert info.settings == {"session_timeout_minutes": 30, "dedup_window_s": 86400, "rate_limit_per_s": 5,
                             "retention_days": 365, "cors_origins": origins}  # fmt: skip
    products = await ok(admin_api, tok, '{ products { slug } product(id: "web") { name } }')
    assert [x["slug"] for x in products["products"]] == [fresh["slug"], "web"]
    assert products["product"] == {"name": "Web shop"}
    assert (await _audit_actions(admin_api, tok, 5))[:4] == [
        "api_key.create", "project.rename", "project.update_settings", "project.create"
    ]  # fmt: skip


async def test_api_key_rotation_overlap_and_revocation(
    admin_api: httpx.AsyncClient, fresh: dict[str, str], servers: Servers
) -> None:
    tok, old_secret = fresh["owner"], fresh["key"]
    keys = await ok(admin_api, tok, f'{{ apiKeys(projectId: "{fresh["project"]}") {{ id prefix active }} }}')
    (old,) = keys["apiKeys"]
    assert old_secret.startswith(old["prefix"]) and old["active"]
    rotated = await ok(
        admin_api,
        tok,
        f'mutation {{ rotateApiKey(id: "{old["id"]}", overlapSeconds: 2) {{ secret apiKey {{ id rotatedFrom }} }} }}',
    )
    new_secret = rotated["rotateApiKey"]["secret"]
    assert rotated["rotateApiKey"]["apiKey"]["rotatedFrom"] == old["id"] and new_secret != old_secret
    async with open_pool(servers.postgres_dsn) as pool:
        assert await resolve_api_key(pool, old_secret) is not None  # inside the overlap: both work
        assert await resolve_api_key(pool, new_secret) is not None
        await asyncio.sleep(2.2)
        assert await resolve_api_key(pool, old_secret) is None  # overlap over: only the new one
        assert await resolve_api_key(pool, new_secret) is not None
        again = await gql(admin_api, tok, f'mutation {{ rotateApiKey(id: "{old["id"]}") {{ secret }} }}')
        assert error_of(again) == "id: only an active key can be rotated"
        # The gateway trusts a resolved key for its cache TTL (PG_KEY_CACHE_TTL_S, 30 s by default; 1 s here).
        from ingest_gateway.keys import KeyCache

        cache = KeyCache(lambda k: resolve_api_key(pool, k), ttl_s=1.0)
        assert await cache.get(new_secret) is not None
        new_id = rotated["rotateApiKey"]["apiKey"]["id"]
        revoked = await ok(admin_api, tok, f'mutation {{ revokeApiKey(id: "{new_id}") {{ active revokedAt }} }}')
        assert revoked["revokeApiKey"]["active"] is False and revoked["revokeApiKey"]["revokedAt"]
        assert await resolve_api_key(pool, new_secret) is None
        assert await cache.get(new_secret) is not None  # still cached...
        await asyncio.sleep(1.1)
        assert await cache.get(new_secret) is None  # ...refused once the TTL has passed
    listed = await ok(admin_api, tok, f'{{ apiKeys(projectId: "{fresh["project"]}") {{ active lastUsedAt }} }}')
    assert [k["active"] for k in listed["apiKeys"]] == [False, False]
    assert listed["apiKeys"][0]["lastUsedAt"] is not None  # resolve_api_key records use
    assert (await _audit_actions(admin_api, tok, 2)) == ["api_key.revoke", "api_key.rotate"]


async def test_members_roles_and_tokens(admin_api: httpx.AsyncClient, fresh: dict[str, str], servers: Servers) -> None:
    owner = fresh["owner"]
    inv = await ok(
        admin_api,
        owner,
        'mutation { inviteMember(email: " Admin@Example.COM ", role: "admin", name: "Ada") '
        "{ member { id userId email role } accessToken { secret accessToken { id role userId expiresAt } } } }",
    )
    member, tok = inv["inviteMember"]["member"], inv["inviteMember"]["accessToken"]
    assert member["email"] == "admin@example.com" and member["role"] == "admin"
    assert tok["accessToken"]["userId"] == member["userId"] and tok["accessToken"]["expiresAt"]
    admin = tok["secret"]
    me = await ok(admin_api, admin, "{ me { role user { email } organization { id } } }")
    assert me["me"] == {"role": "admin", "user": {"email": "admin@example.com"}, "organization": {"id": fresh["org"]}}

    # An admin cannot create owners, nor tokens above its role; an owner can.
    body = await gql(admin_api, admin, 'mutation { inviteMember(email: "o@x.io", role: "owner") { member { id } } }')
    assert error_of(body) == "forbidden: role owner is above your own (admin)"
    body = await gql(admin_api, admin, 'mutation { createAccessToken(name: "t", role: "owner") { secret } }')
    assert error_of(body) == "forbidden: role owner is above your own (admin)"
    again = 'mutation { inviteMember(email: "admin@example.com", role: "viewer") { member { id } } }'
    dup = await gql(admin_api, owner, again)
    assert error_of(dup) == "'admin@example.com' is already a member"

    # Demoting the member demotes every token of theirs at once; removing them kills the tokens.
    await ok(admin_api, owner, f'mutation {{ updateMemberRole(id: "{member["id"]}", role: "viewer") {{ role }} }}')
    async with open_pool(servers.postgres_dsn) as pool:
        info = await resolve_access_token(pool, admin)
        assert info is not None and info.role == "viewer" and info.user_id == member["userId"]
        body = await gql(admin_api, admin, 'mutation { createApiKey(projectId: "x") { secret } }')
        assert error_of(body) == "forbidden: needs role admin or above (token has viewer)"
        members = await ok(admin_api, owner, "{ members { role email } }")
        assert {"role": "viewer", "email": "admin@example.com"} in members["members"]
        await ok(admin_api, owner, f'mutation {{ removeMember(id: "{member["id"]}") {{ id }} }}')
        assert await resolve_access_token(pool, admin) is None
    resp = await admin_api.post(
        "/graphql", json={"query": "{ me { role } }"}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert resp.status_code == 401

    # The last owner stays.
    owners = [m for m in (await ok(admin_api, owner, "{ members { id role } }"))["members"] if m["role"] == "owner"]
    body = await gql(admin_api, owner, f'mutation {{ removeMember(id: "{owners[0]["id"]}") {{ id }} }}')
    assert error_of(body) == "id: the organisation's last owner cannot be removed"
    demote = f'mutation {{ updateMemberRole(id: "{owners[0]["id"]}", role: "admin") {{ id }} }}'
    body = await gql(admin_api, owner, demote)
    assert error_of(body) == "role: the organisation's last owner cannot be demoted"

    # Service tokens: expiry, self-revocation by a viewer, listing.
    svc = await ok(admin_api, owner, 'mutation { createAccessToken(name: "ci", role: "viewer", expiresInDays: null) '
                                      "{ secret accessToken { id expiresAt role } } }")  # fmt: skip
    svc_secret, svc_id = svc["createAccessToken"]["secret"], svc["createAccessToken"]["accessToken"]["id"]
    assert svc["createAccessToken"]["accessToken"]["expiresAt"] is None
    body = await gql(admin_api, svc_secret, "{ accessTokens { id } }")
    assert error_of(body) == "forbidden: needs role admin or above (token has viewer)"
    await ok(admin_api, svc_secret, f'mutation {{ revokeAccessToken(id: "{svc_id}") {{ revokedAt }} }}')
    resp = await admin_api.post(
        "/graphql", json={"query": "{ me { role } }"}, headers={"Authorization": f"Bearer {svc_secret}"}
    )
    assert resp.status_code == 401
    actions = await _audit_actions(admin_api, owner, 6)
    assert actions[:2] == ["access_token.revoke", "access_token.create"]
    assert "member.remove" in actions and "member.update_role" in actions


async def test_expired_token_is_refused(servers: Servers) -> None:
    from datetime import UTC, datetime, timedelta

    from productgraph.admin import create_access_token

    b = bootstrap_org(servers.postgres_dsn, "Exp", f"exp{secrets.token_hex(4)}", "p", "p")
    with psycopg.connect(servers.postgres_dsn, autocommit=True) as conn:
        past = create_access_token(conn, b.org_id, "old", "viewer", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    async with open_pool(servers.postgres_dsn) as pool:
        assert await resolve_access_token(pool, past) is None


JOURNEY = """
mutation($p: ID!, $steps: [JourneyStepInput!]!) {
  defineJourney(projectId: $p, journey: {name: "Checkout", timeoutMinutes: 20, steps: $steps}) {
    id name timeoutMinutes isActive version featureId steps { position name matcher isRequired }
  }
}
"""


async def test_journeys_catalog_and_matchers(
    admin_api: httpx.AsyncClient, fresh: dict[str, str], servers: Servers
) -> None:
    tok, p = fresh["owner"], fresh["project"]
    steps = [
        {"name": "cart", "matcher": {"event_type": "page.view", "page_path": "/cart"}},
        {"name": "pay", "matcher": {"page_path": "/pay/*", "page_path_mode": "glob"}, "isRequired": False},
    ]
    j = (await ok(admin_api, tok, JOURNEY, {"p": p, "steps": steps}))["defineJourney"]
    assert (j["timeoutMinutes"], j["isActive"], j["version"], j["featureId"]) == (20, True, 1, None)
    assert j["steps"] == [
        {"position": 1, "name": "cart", "matcher": {"event_type": "page.view", "page_path": "/cart",
                                                      "page_path_mode": "exact"}, "isRequired": True},
        {"position": 2, "name": "pay", "matcher": {"page_path": "/pay/*", "page_path_mode": "glob"},
         "isRequired": False},
    ]  # fmt: skip
    for bad_steps, msg in [
        ([steps[0]], "steps: between 2 and 100 steps"),
        ([steps[0], {"name": "x", "matcher": {"event_type": "nope"}}], "steps[2].matcher.event_type: unknown type"),
        ([steps[0], {"name": "x", "matcher": {"colour": "red"}}], "steps[2].matcher.colour: unknown matcher field"),
        ([steps[0], {"name": "x", "matcher": {}}], "steps[2].matcher.matcher: needs at least one condition"),
        ([steps[0], {"name": " ", "matcher": {"action": "a"}}], "steps[2].name: must not be empty"),
    ]:
        body = await gql(admin_api, tok, JOURNEY.replace("Checkout", "Other"), {"p": p, "steps": bad_steps})
        assert error_of(body).startswith(msg), body
    dup = await gql(admin_api, tok, JOURNEY, {"p": p, "steps": steps})
    assert error_of(dup) == "a journey named 'Checkout' already exists in this project"
    funnel_steps = f'{{ journeyFunnel(journeyId: "{j["id"]}") {{ name steps {{ name reached }} }} }}'
    before = await ok(admin_api, tok, funnel_steps)  # read once: the process now caches the definition
    assert before["journeyFunnel"] == {"name": "Checkout", "steps": [{"name": "cart", "reached": 0},
                                                                     {"name": "pay", "reached": 0}]}  # fmt: skip

    cat = await ok(admin_api, tok, f'mutation {{ createCapability(projectId: "{p}", name: "Buying") {{ id }} }}')
    cap_id = cat["createCapability"]["id"]
    create_feature = f'mutation {{ createFeature(capabilityId: "{cap_id}", name: "Cart") {{ id projectId }} }}'
    feat = await ok(admin_api, tok, create_feature)
    feature_id = feat["createFeature"]["id"]
    assert feat["createFeature"]["projectId"] == p
    upd = await ok(
        admin_api,
        tok,
        "mutation($id: ID!, $f: ID!) { updateJourney(id: $id, journey: {featureId: $f, timeoutMinutes: 60, "
        'steps: [{name: "a", matcher: {action: "add"}}, {name: "b", matcher: {action: "buy"}}, '
        '{name: "c", matcher: {event_name: "done"}}]}) { version featureId timeoutMinutes steps { name } } }',
        {"id": j["id"], "f": feature_id},
    )
    assert upd["updateJourney"] == {"version": 2, "featureId": feature_id, "timeoutMinutes": 60,
                                    "steps": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}  # fmt: skip
    # the process that changed the journey forgets its cached definition at once
    after = await ok(admin_api, tok, funnel_steps)
    assert [s["name"] for s in after["journeyFunnel"]["steps"]] == ["a", "b", "c"]
    deact = await ok(admin_api, tok, f'mutation {{ deactivateJourney(id: "{j["id"]}") {{ isActive version }} }}')
    assert deact["deactivateJourney"] == {"isActive": False, "version": 3}
    listed = await ok(admin_api, tok, f'{{ a: journeys(projectId: "{p}") {{ id }} '
                                      f'b: journeys(projectId: "{p}", includeInactive: true) {{ id }} }}')  # fmt: skip
    assert listed == {"a": [], "b": [{"id": j["id"]}]}
    await ok(admin_api, tok, f'mutation {{ updateCapability(id: "{cap_id}", name: "Buy", displayOrder: 2) {{ id }} }}')
    docs = '[{label: "x", url: "y"}]'
    await ok(admin_api, tok, f'mutation {{ updateFeature(id: "{feature_id}", documentation: {docs}) {{ id }} }}')
    cat_list = await ok(admin_api, tok, f'{{ capabilities(projectId: "{p}") {{ name displayOrder }} '
                                        f'features(projectId: "{p}") {{ name documentation }} }}')  # fmt: skip
    assert cat_list == {"capabilities": [{"name": "Buy", "displayOrder": 2}],
                        "features": [{"name": "Cart", "documentation": [{"label": "x", "url": "y"}]}]}  # fmt: skip

    # The processors' view (productgraph.admin.load_journeys): active journeys with steps, in order.
    from productgraph.admin import load_journeys

    async with open_pool(servers.postgres_dsn) as pool:
        assert await load_journeys(pool, fresh["org"], p) == []
        (inactive,) = await load_journeys(pool, fresh["org"], p, include_inactive=True)
    assert inactive.version == 3 and [s.position for s in inactive.steps] == [1, 2, 3]
    assert inactive.steps[1].matcher == {"action": "buy"}


async def test_saved_funnels_cohorts_and_roles(admin_api: httpx.AsyncClient, world: World) -> None:
    a = world.a
    p = a.project_id
    analyst, viewer = a.tokens["analyst"], a.tokens["viewer"]
    save = (
        f'mutation {{ saveFunnel(projectId: "{p}", name: "By analyst", '
        'definition: {steps: [{event_type: "page.view"}, {matcher: {event_type: "ui.click"}, window_ms: 1000}]}) '
        "{ id createdBy definition } }"
    )
    saved = (await ok(admin_api, analyst, save))["saveFunnel"]
    assert saved["createdBy"] == a.ids["analyst_user"]
    assert error_of(await gql(admin_api, viewer, save)) == "forbidden: needs role analyst or above (token has viewer)"
    one_step = '{steps: [{event_type: "page.view"}]}'
    bad = await gql(
        admin_api, analyst, f'mutation {{ saveFunnel(projectId: "{p}", name: "x", definition: {one_step}) {{ id }} }}'
    )
    assert error_of(bad) == "definition.steps: a list of 2 to 100 steps"
    bad = await gql(
        admin_api, analyst, f'mutation {{ saveFunnel(projectId: "{p}", name: "x", definition: [1]) {{ id }} }}'
    )
    assert error_of(bad) == "definition: must be a JSON object"
    rename = f'mutation {{ updateSavedFunnel(id: "{saved["id"]}", name: "Renamed") {{ name }} }}'
    upd = await ok(admin_api, analyst, rename)
    assert upd["updateSavedFunnel"]["name"] == "Renamed"
    lists = await ok(
        admin_api, viewer, f'{{ savedFunnels(projectId: "{p}") {{ name }} cohorts(projectId: "{p}") {{ name }} }}'
    )
    assert {"name": "Renamed"} in lists["savedFunnels"] and lists["cohorts"] == [{"name": "amark4q thing"}]
    buyers = '{did_event: {event_name: "buy"}}'  # the cohort definition format of query_api/cohorts
    cohort = f'mutation {{ saveCohort(projectId: "{p}", name: "Buyers", definition: {buyers}) {{ id }} }}'
    c = await ok(admin_api, analyst, cohort)
    await ok(
        admin_api, analyst, f'mutation {{ updateCohort(id: "{c["saveCohort"]["id"]}", description: "d") {{ id }} }}'
    )
    await ok(admin_api, analyst, f'mutation {{ deleteCohort(id: "{c["saveCohort"]["id"]}") {{ id }} }}')
    await ok(admin_api, analyst, f'mutation {{ deleteSavedFunnel(id: "{saved["id"]}") {{ id }} }}')
    # Analysts save analyses but manage nothing; viewers read.
    for q in [
        f'mutation {{ createApiKey(projectId: "{p}") {{ secret }} }}',
        f'mutation {{ defineJourney(projectId: "{p}", journey: {{name: "j", steps: []}}) {{ id }} }}',
        'mutation { inviteMember(email: "z@z.io", role: "viewer") { member { id } } }',
        "{ auditLog { id } }",
    ]:
        assert error_of(await gql(admin_api, analyst, q)).startswith("forbidden: needs role admin or above"), q
    owner_view = await ok(admin_api, a.owner_token, "{ auditLog(limit: 4) { action actorLabel actorUserId } }")
    assert [e["action"] for e in owner_view["auditLog"]] == ["funnel.delete", "cohort.delete", "cohort.update",
                                                             "cohort.create"]  # fmt: skip
    assert {e["actorLabel"] for e in owner_view["auditLog"]} == {f"analyst@{a.project_slug}.test"}
    assert {e["actorUserId"] for e in owner_view["auditLog"]} == {a.ids["analyst_user"]}


async def _eventually(check: object, within_s: float = 15.0) -> None:
    """ClickHouse runs ALTER ... DELETE in the background: poll until ``check()`` holds."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < within_s, "not within the time limit"
        await asyncio.sleep(0.2)


async def test_delete_project_everywhere(admin_api: httpx.AsyncClient, fresh: dict[str, str], servers: Servers) -> None:
    tok, keeper = fresh["owner"], fresh["project"]
    doomed = (await ok(admin_api, tok, 'mutation { createProject(name: "Doomed", slug: "doomed") { id } }'))[
        "createProject"
    ]["id"]
    key = await ok(admin_api, tok, f'mutation {{ createApiKey(projectId: "{doomed}") {{ secret }} }}')
    await ok(admin_api, tok, JOURNEY, {"p": doomed, "steps": [{"name": "a", "matcher": {"action": "a"}},
                                                              {"name": "b", "matcher": {"action": "b"}}]})  # fmt: skip
    insert_aged_rows(servers, fresh["org"], doomed, [0.1, 2], "doomed")
    insert_aged_rows(servers, fresh["org"], keeper, [0.1, 2], "keeper")
    r = aioredis.from_url(servers.redis_url)
    doomed_keys = [f"session:{doomed}:s1", f"session:{doomed}:s1:events", f"pg:{{{doomed}}}:rl"]
    for k in [*doomed_keys, f"session:{keeper}:s1"]:
        await r.set(k, "1", ex=600)

    inv = await ok(admin_api, tok, 'mutation { inviteMember(email: "adm@x.io", role: "admin") '
                                   "{ accessToken { secret } } }")  # fmt: skip
    admin = inv["inviteMember"]["accessToken"]["secret"]
    delete = "mutation($id: ID!, $c: String!) { deleteProject(id: $id, confirmSlug: $c) { id slug name } }"
    body = await gql(admin_api, admin, delete, {"id": doomed, "c": "doomed"})
    assert error_of(body) == "forbidden: needs role owner or above (token has admin)"
    body = await gql(admin_api, tok, delete, {"id": doomed, "c": "doomedx"})
    assert error_of(body) == "confirmSlug: must be the slug of the project to delete"
    assert count_rows(servers, "events", doomed) == 2  # refused calls changed nothing

    gone = await ok(admin_api, tok, delete, {"id": "doomed", "c": "doomed"})
    assert gone["deleteProject"] == {"id": doomed, "slug": "doomed", "name": "Doomed"}
    body = await gql(admin_api, tok, f'{{ project(id: "{doomed}") {{ id }} }}')
    assert error_of(body) == f"project {doomed!r} not found"
    again = await gql(admin_api, tok, delete, {"id": doomed, "c": "doomed"})
    assert error_of(again) == f"project {doomed!r} not found"
    async with open_pool(servers.postgres_dsn) as pool:
        assert await resolve_api_key(pool, key["createApiKey"]["secret"]) is None
    with psycopg.connect(servers.postgres_admin_dsn) as conn:  # the cascade, as the schema owner sees it
        for table in ("api_keys", "journeys", "journey_steps"):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE org_id = %s", (fresh["org"],)).fetchone()
            expected = 1 if table == "api_keys" else 0  # the keeper's bootstrap key stays
            assert n == (expected,), table
    await _eventually(lambda: count_rows(servers, "events", doomed) + count_rows(servers, "sessions", doomed) == 0)
    assert count_rows(servers, "events", keeper) == 2 and count_rows(servers, "sessions", keeper) == 2
    assert await r.exists(*doomed_keys) == 0
    assert await r.exists(f"session:{keeper}:s1") == 1
    await r.aclose()
    audit = await ok(admin_api, tok, "{ auditLog(limit: 1) { action targetId projectId details } }")
    (entry,) = audit["auditLog"]
    assert (entry["action"], entry["targetId"], entry["projectId"]) == ("project.delete", doomed, doomed)
    assert {"events", "sessions"} <= set(entry["details"]["tables"])


async def test_delete_journey(admin_api: httpx.AsyncClient, fresh: dict[str, str]) -> None:
    tok, p = fresh["owner"], fresh["project"]
    steps = [{"name": "a", "matcher": {"action": "a"}}, {"name": "b", "matcher": {"action": "b"}}]
    j = (await ok(admin_api, tok, JOURNEY, {"p": p, "steps": steps}))["defineJourney"]
    inv = await ok(admin_api, tok, 'mutation { inviteMember(email: "an@x.io", role: "analyst") '
                                   "{ accessToken { secret } } }")  # fmt: skip
    analyst = inv["inviteMember"]["accessToken"]["secret"]
    delete = f'mutation {{ deleteJourney(id: "{j["id"]}") {{ id name steps {{ name }} }} }}'
    funnel = f'{{ journeyFunnel(journeyId: "{j["id"]}") {{ steps {{ name }} }} }}'
    assert (await ok(admin_api, tok, funnel))["journeyFunnel"]["steps"] == [{"name": "a"}, {"name": "b"}]
    assert error_of(await gql(admin_api, analyst, delete)) == "forbidden: needs role admin or above (token has analyst)"
    deleted = await ok(admin_api, tok, delete)
    assert deleted["deleteJourney"] == {"id": j["id"], "name": "Checkout", "steps": [{"name": "a"}, {"name": "b"}]}
    listed = await ok(admin_api, tok, f'{{ journeys(projectId: "{p}", includeInactive: true) {{ id }} }}')
    assert listed["journeys"] == []
    assert error_of(await gql(admin_api, tok, delete)) == f"journey {j['id']!r} not found"
    assert error_of(await gql(admin_api, tok, funnel)) == f"journey {j['id']!r} not found"  # not from the cache
    # The name is free again.
    await ok(admin_api, tok, JOURNEY, {"p": p, "steps": steps})
    assert (await _audit_actions(admin_api, tok, 2)) == ["journey.create", "journey.delete"]
