"""Bootstrap from the command line on real Postgres: a fresh install gets its first owner, then more members."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from click.testing import CliRunner

from productgraph.admin import ROLES
from productgraph.cli import ROLE_CHOICES, main
from productgraph.db import open_pool, resolve_access_token, resolve_api_key
from tests.conftest import Servers

pytestmark = pytest.mark.integration


async def test_org_user_and_token_bootstrap(servers: Servers) -> None:
    assert set(ROLE_CHOICES) == set(ROLES)
    runner = CliRunner()
    env = {"PG_POSTGRES_DSN": servers.postgres_dsn}
    slug = f"cli{secrets.token_hex(4)}"
    res = runner.invoke(
        main, ["org", "create", "--name", "Acme", "--slug", slug, "--owner-email", f"Boss@{slug}.test"], env=env
    )
    assert res.exit_code == 0, res.output
    org = json.loads(res.output)
    assert org["project_slug"] == "default" and org["owner_user_id"]

    res = runner.invoke(
        main,
        ["user", "create", "--org-id", org["org_id"], "--email", f"ana@{slug}.test", "--role", "analyst"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    analyst = json.loads(res.output)
    res = runner.invoke(
        main,
        ["token", "create", "--org-id", org["org_id"], "--role", "admin", "--user-id", analyst["user_id"],
         "--expires-in-days", "7"],
        env=env,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    capped = res.output.strip()

    async with open_pool(servers.postgres_dsn) as pool:
        owner = await resolve_access_token(pool, org["admin_token"])
        assert owner is not None and (owner.role, owner.user_id) == ("owner", org["owner_user_id"])
        info = await resolve_access_token(pool, analyst["access_token"])
        assert info is not None and (info.org_id, info.role) == (org["org_id"], "analyst")
        # An "admin" token of an analyst member acts as an analyst.
        capped_info = await resolve_access_token(pool, capped)
        assert capped_info is not None and capped_info.role == "analyst"
        key = await resolve_api_key(pool, org["api_key"])
        assert key is not None and key.settings["session_timeout_minutes"] == 30

    for args, message in [
        (["user", "create", "--org-id", str(uuid.uuid4()), "--email", "x@y.z"], "no such organisation or user"),
        (["user", "create", "--org-id", org["org_id"], "--email", f"ana@{slug}.test"], "already exists"),
        (["token", "create", "--org-id", "not-a-uuid"], "invalid value"),
        (["org", "create", "--name", "Again", "--slug", slug], "already exists"),
    ]:
        res = runner.invoke(main, args, env=env)
        assert res.exit_code != 0 and message in res.output, (args, res.output)
