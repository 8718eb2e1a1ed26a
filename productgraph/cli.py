"""The ``productgraph`` command: run the local stack, one service, migrations, or bootstrap tenants."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator

import click

from productgraph import __version__
from productgraph.bench import bench
from productgraph.dlq import dlq
from stream_processors import KIND_NAMES


class _JsonLines(logging.Formatter):
    """One JSON object per line (structured logs), exceptions included, quotes escaped."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}  # fmt: skip
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    logging.basicConfig(level=level.upper(), handlers=[handler])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="productgraph")
def main() -> None:
    """ProductGraph: product analytics from OpenTelemetry-style events.

    Configuration comes from PG_* environment variables (see README.md).  `productgraph up` runs the whole
    stack locally; the other commands run one part against the servers the environment points at, which
    is how each service is run and scaled in production.
    """


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="where local servers keep data [PG_DATA_DIR, ./.productgraph]"
)
@click.option("--demo-events", type=int, help="synthetic events sent through the gateway at start (0: none) [300]")
@click.option("--processors-per-kind", type=int, help="processes started per processor kind [1]")
def up(data_dir: str | None, demo_events: int | None, processors_per_kind: int | None) -> None:
    """Start the whole stack (servers, migrations, demo tenant, services) and supervise it until Ctrl-C.

    Servers given by PG_KAFKA_BOOTSTRAP, PG_CLICKHOUSE_URL, PG_POSTGRES_DSN (+ PG_POSTGRES_ADMIN_DSN) or
    PG_REDIS_URL are used instead of starting local ones.  Writes <data dir>/stack.json for scripts.
    """
    from pathlib import Path

    from productgraph.localstack.supervisor import run_stack
    from productgraph.settings import StackSettings

    overrides: dict[str, object] = {}
    if data_dir:
        overrides["data_dir"] = Path(data_dir)
    if demo_events is not None:
        overrides["demo_events"] = demo_events
    if processors_per_kind is not None:
        overrides["processors_per_kind"] = processors_per_kind
    settings = StackSettings(**overrides)  # type: ignore[arg-type]
    _logging("WARNING")
    sys.exit(run_stack(settings, say=lambda m: click.echo(m)))


@main.command()
def migrate() -> None:
    """Apply Postgres and ClickHouse migrations and create the Kafka topics (idempotent)."""
    from productgraph.migrate import migrate_all
    from productgraph.settings import MigrateSettings

    s = MigrateSettings()
    _logging(s.log_level)
    migrate_all(s, progress=click.echo)
    click.echo("migrations up to date")


@main.command()
def gateway() -> None:
    """Run the ingest gateway (POST /v1/events) on PG_GATEWAY_HOST:PG_GATEWAY_PORT."""
    import uvicorn

    from ingest_gateway.app import create_app
    from ingest_gateway.settings import GatewaySettings

    s = GatewaySettings()
    _logging(s.log_level)
    uvicorn.run(create_app(s), host=s.gateway_host, port=s.gateway_port, access_log=False, log_level="warning")


@main.command("query-api")
def query_api() -> None:
    """Run the GraphQL query API on PG_QUERY_API_HOST:PG_QUERY_API_PORT."""
    import uvicorn

    from query_api.app import create_app
    from query_api.settings import QueryApiSettings

    s = QueryApiSettings()
    _logging(s.log_level)
    uvicorn.run(create_app(s), host=s.query_api_host, port=s.query_api_port, access_log=False, log_level="warning")


@main.command()
@click.argument("kind", type=click.Choice(KIND_NAMES))
def processor(kind: str) -> None:
    """Run one stream-processor worker of KIND; start more processes to scale (up to the partition count).

    \b
    warehouse  events -> ClickHouse `events` (batched, deduplicated)
    sessions   live sessions -> Redis, versioned session rows -> ClickHouse `sessions`
    """
    from stream_processors.settings import ProcessorSettings
    from stream_processors.worker import run_worker

    s = ProcessorSettings()
    _logging(s.log_level)
    run_worker(kind, s)


ROLE_CHOICES = ["owner", "admin", "analyst", "viewer"]  # productgraph.admin.ROLES, strongest first


@main.group()
def org() -> None:
    """Organisations."""


@org.command("create")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--project", "project_slug", default="default", show_default=True, help="slug of its first project")
@click.option("--owner-email", help="also create the first owner member; the token then belongs to them")
def org_create(name: str, slug: str, project_slug: str, owner_email: str | None) -> None:
    """Create an org with a first project, an API key and an owner token (secrets are shown once).

    This is how a fresh install gets its first admin: the owner token manages everything else through the
    GraphQL API (projects, keys, members, journeys).
    """
    from productgraph.admin import bootstrap_org
    from productgraph.settings import ServerSettings

    with _db_errors():
        b = bootstrap_org(ServerSettings().postgres_dsn, name, slug, project_slug, project_slug, owner_email)
    click.echo(json.dumps(dataclasses.asdict(b), indent=2))


@main.group()
def user() -> None:
    """Members of an org (users with a role)."""


@user.command("create")
@click.option("--org-id", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(ROLE_CHOICES), default="owner", show_default=True)
@click.option("--name", default="", help="display name")
@click.option("--token-expires-in-days", type=click.IntRange(1, 3650), help="expiry of their first token [none]")
def user_create(org_id: str, email: str, role: str, name: str, token_expires_in_days: int | None) -> None:
    """Add a member to an org and print their first access token (shown once), e.g. a new owner."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from productgraph.admin import create_access_token, create_user
    from productgraph.settings import ServerSettings

    expires = datetime.now(UTC) + timedelta(days=token_expires_in_days) if token_expires_in_days else None
    with _db_errors(), psycopg.connect(ServerSettings().postgres_dsn, autocommit=True) as conn:
        user_id = create_user(conn, org_id, email, name, role)
        secret = create_access_token(conn, org_id, "cli", role, user_id=user_id, expires_at=expires)
    out = {"org_id": org_id, "user_id": user_id, "email": email.strip().lower(), "role": role, "access_token": secret}
    click.echo(json.dumps(out, indent=2))


@main.group()
def token() -> None:
    """Query-API access tokens."""


@token.command("create")
@click.option("--org-id", required=True)
@click.option("--role", type=click.Choice(ROLE_CHOICES), default="admin", show_default=True)
@click.option("--name", default="cli", show_default=True)
@click.option("--user-id", help="the member the token belongs to (it never acts above their role)")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), help="expiry [none]")
def token_create(org_id: str, role: str, name: str, user_id: str | None, expires_in_days: int | None) -> None:
    """Create an access token for one org (printed once)."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from productgraph.admin import create_access_token
    from productgraph.settings import ServerSettings

    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with _db_errors(), psycopg.connect(ServerSettings().postgres_dsn, autocommit=True) as conn:
        click.echo(create_access_token(conn, org_id, name, role, user_id=user_id, expires_at=expires))


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    """Bootstrap mistakes (unknown org, taken slug or email, malformed id) as one-line errors, not tracebacks."""
    import psycopg

    try:
        yield
    except psycopg.errors.ForeignKeyViolation:
        raise click.ClickException("no such organisation or user") from None
    except psycopg.errors.UniqueViolation as exc:
        detail = exc.diag.message_detail or "already exists"
        raise click.ClickException(f"already exists: {detail}") from None
    except (psycopg.errors.DataError, psycopg.errors.CheckViolation) as exc:
        raise click.ClickException(f"invalid value: {exc.diag.message_primary}") from None


@main.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="http: listen address")
@click.option("--port", default=8091, show_default=True, help="http: listen port (endpoint /mcp)")
@click.option("--public-url", help="http: the URL agents use, for the auth metadata [http://HOST:PORT]")
def mcp(transport: str, host: str, port: int, public_url: str | None) -> None:
    """Serve the MCP tools for AI agents (stdio: token from PG_MCP_TOKEN; http: Authorization: Bearer)."""
    import asyncio

    from query_api.mcp_server import Backends, build_mcp_server
    from query_api.settings import QueryApiSettings

    s = QueryApiSettings()
    _logging("WARNING")
    backends = Backends(s)

    async def serve() -> None:
        try:
            if transport == "stdio":
                if not s.mcp_token:
                    raise click.UsageError("set PG_MCP_TOKEN to an access token (productgraph token create)")
                await build_mcp_server(backends, stdio_token=s.mcp_token).run_stdio_async()
            else:
                server = build_mcp_server(backends, http_url=public_url or f"http://{host}:{port}")
                await server.run_streamable_http_async(host=host, port=port)
        finally:
            await backends.close()

    asyncio.run(serve())


@main.command()
@click.option("--once", is_flag=True, help="one pass, then exit (else a pass every --interval seconds)")
@click.option("--interval", type=click.FloatRange(min=1), help="seconds between passes [PG_RETENTION_INTERVAL_S, 3600]")
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
def retention(once: bool, interval: float | None, dry_run: bool) -> None:
    """Delete each project's events and sessions older than its retention_days setting (ClickHouse)."""
    from productgraph.retention import RetentionSettings, run_retention

    s = RetentionSettings()
    _logging(s.log_level)
    run_retention(s, once=once, interval_s=interval, dry_run=dry_run, progress=click.echo)


main.add_command(bench)
main.add_command(dlq)

if __name__ == "__main__":
    main()
