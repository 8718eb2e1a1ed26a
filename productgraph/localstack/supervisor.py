"""``productgraph up``: the whole Growth-tier stack on one machine, each part its own OS process.

Order: servers (Kafka protocol via Tansu, ClickHouse via the chDB endpoint, PostgreSQL 18, Redis; any
given by URL in the environment is used instead), migrations and topics, the demo org/project/key/token
(created once, kept in the data dir), then the services: gateway, one process per processor kind (times
``processors_per_kind``), query API, the retention job.  A service that dies is restarted with backoff,
like a process manager would.  SIGINT/SIGTERM stop services first (processors flush and commit), then servers; nothing
is left running.  Postgres, ClickHouse and Redis keep their data in the data dir across restarts; the
local Tansu broker is memory-only, so topics are created again at each start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from productgraph.localstack.process import ServerProcess, free_port, port_open, spawn, wait_until
from productgraph.settings import StackSettings
from stream_processors import KIND_NAMES

__all__ = ["Stack", "run_stack"]

SERVER_ENV = ("PG_KAFKA_BOOTSTRAP", "PG_CLICKHOUSE_URL", "PG_POSTGRES_DSN", "PG_REDIS_URL")


@dataclass
class Service:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: ServerProcess | None = None
    restarts: int = 0
    next_start: float = 0.0


@dataclass
class Stack:
    settings: StackSettings
    say: Callable[[str], None] = print
    servers: list[ServerProcess] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    # ---- servers -------------------------------------------------------------------------------------
    def _json_file(self, name: str) -> dict[str, Any]:
        path = self.data_dir / name
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _write_json(self, name: str, data: dict[str, Any], private: bool = False) -> None:
        path = self.data_dir / name
        path.write_text(json.dumps(data, indent=2) + "\n")
        if private:
            path.chmod(0o600)

    def _port(self, ports: dict[str, int], name: str) -> int:
        port = ports.get(name)
        if port is None or port_open(self.settings.host, port):
            port = free_port(self.settings.host)
        ports[name] = port
        return port

    def start_servers(self) -> None:
        from productgraph.localstack.clickhouse import start_clickhouse
        from productgraph.localstack.kafka import start_kafka
        from productgraph.localstack.postgres import start_postgres
        from productgraph.localstack.redis import start_redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        given = {k: v for k, v in os.environ.items() if k in SERVER_ENV and v}
        ports: dict[str, int] = {k: int(v) for k, v in self._json_file("ports.json").items()}
        secret = self._json_file("secrets.json")
        secret.setdefault("postgres_app_password", secrets.token_urlsafe(24))
        self._write_json("secrets.json", secret, private=True)
        host, logs = self.settings.host, self.data_dir / "logs"

        def start(name: str, env_key: str, launch: Callable[[], ServerProcess]) -> str:
            if env_key in given:
                self.say(f"  {name:<11} given by {env_key}")
                return given[env_key]
            t0 = time.monotonic()
            proc = launch()
            self.servers.append(proc)
            self.say(f"  {name:<11} started in {time.monotonic() - t0:4.1f}s (pid {proc.pid})")
            return proc.url

        kafka = start("kafka", "PG_KAFKA_BOOTSTRAP", lambda: start_kafka(self._port(ports, "kafka"), host, logs))
        ch = start(
            "clickhouse",
            "PG_CLICKHOUSE_URL",
            lambda: start_clickhouse(self.data_dir / "clickhouse", self._port(ports, "clickhouse"), host),
        )
        if "PG_POSTGRES_DSN" in given:
            pg_app = given["PG_POSTGRES_DSN"]
            pg_admin = os.environ.get("PG_POSTGRES_ADMIN_DSN", pg_app)
            self.say("  postgres    given by PG_POSTGRES_DSN")
        else:
            pg_admin = start(
                "postgres",
                "-",
                lambda: start_postgres(self.data_dir / "postgres", self._port(ports, "postgres"), host, logs),
            )
            pg_app = _with_user(pg_admin, "productgraph_app", secret["postgres_app_password"])
        redis = start(
            "redis",
            "PG_REDIS_URL",
            lambda: start_redis(self.data_dir / "redis", self._port(ports, "redis"), host, logs),
        )
        self._write_json("ports.json", ports)
        ch_url = ch.rstrip("/") + "/productgraph" if ch.count("/") == 2 else ch
        self.env = {
            "PG_KAFKA_BOOTSTRAP": kafka,
            "PG_CLICKHOUSE_URL": ch_url,
            "PG_POSTGRES_DSN": pg_app,
            "PG_POSTGRES_ADMIN_DSN": pg_admin,
            "PG_POSTGRES_APP_PASSWORD": secret["postgres_app_password"],
            "PG_REDIS_URL": redis,
            "PG_EVENTS_TOPIC_PARTITIONS": str(self.settings.events_topic_partitions),
        }

    # ---- schema and demo tenant ---------------------------------------------------------------------
    def migrate(self) -> None:
        from productgraph.migrate import migrate_all
        from productgraph.settings import MigrateSettings

        settings = MigrateSettings(
            kafka_bootstrap=self.env["PG_KAFKA_BOOTSTRAP"],
            clickhouse_url=self.env["PG_CLICKHOUSE_URL"],
            postgres_dsn=self.env["PG_POSTGRES_DSN"],
            postgres_admin_dsn=self.env["PG_POSTGRES_ADMIN_DSN"],
            postgres_app_password=self.env["PG_POSTGRES_APP_PASSWORD"],
            redis_url=self.env["PG_REDIS_URL"],
            events_topic_partitions=self.settings.events_topic_partitions,
        )
        migrate_all(settings, progress=lambda m: self.say(f"  {m}"))

    def demo_tenant(self) -> dict[str, str]:
        from productgraph.admin import bootstrap_org

        demo = self._json_file("demo.json")
        if not demo:
            b = bootstrap_org(self.env["PG_POSTGRES_DSN"], "Demo Org", "demo", "Demo App", "demo")
            demo = {
                "org_id": b.org_id,
                "project_id": b.project_id,
                "project_slug": b.project_slug,
                "api_key": b.api_key,
                "admin_token": b.admin_token,
            }
            demo["journey_id"] = _demo_journey(self.env["PG_POSTGRES_DSN"], b.org_id, b.project_id)
            self._write_json("demo.json", demo, private=True)
            self.say("  created demo org, project, API key, admin token and a 'Checkout' journey")
        return {k: str(v) for k, v in demo.items()}

    # ---- services ------------------------------------------------------------------------------------
    def start_services(self) -> tuple[str, str]:
        s, host, logs = self.settings, self.settings.host, self.data_dir / "logs"
        base_env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        gw_port = s.gateway_port if not port_open(host, s.gateway_port) else free_port(host)
        q_port = s.query_api_port if not port_open(host, s.query_api_port) else free_port(host)
        cli = [sys.executable, "-m", "productgraph.cli"]
        self.services.append(
            Service(
                "gateway",
                [*cli, "gateway"],
                {**base_env, "PG_GATEWAY_HOST": host, "PG_GATEWAY_PORT": str(gw_port)},
                logs / "gateway.log",
            )
        )
        for kind in KIND_NAMES:
            for n in range(1, s.processors_per_kind + 1):
                env = {**base_env, "PG_METRICS_PORT": str(free_port(host)), "PG_METRICS_HOST": host}
                if kind == "sessions" and "PG_BATCH_MAX_AGE_S" not in os.environ:
                    env["PG_BATCH_MAX_AGE_S"] = "0.25"  # live metrics: pushed within 1 s of acceptance
                self.services.append(
                    Service(f"processor-{kind}-{n}", [*cli, "processor", kind], env, logs / f"processor-{kind}-{n}.log")
                )
        self.services.append(
            Service(
                "query-api",
                [*cli, "query-api"],
                {**base_env, "PG_QUERY_API_HOST": host, "PG_QUERY_API_PORT": str(q_port)},
                logs / "query-api.log",
            )
        )
        # Per-project retention: one pass now, then hourly (PG_RETENTION_INTERVAL_S).
        self.services.append(Service("retention", [*cli, "retention"], base_env, logs / "retention.log"))
        for svc in self.services:
            self._launch(svc)
        gateway_url, graphql_url = f"http://{host}:{gw_port}", f"http://{host}:{q_port}/graphql"
        for name, url in (("gateway", gateway_url + "/ready"), ("query-api", f"http://{host}:{q_port}/ready")):
            wait_until(lambda u=url: httpx.get(u, timeout=2).status_code == 200, 60, name)  # type: ignore[misc]
        return gateway_url, graphql_url

    def _launch(self, svc: Service) -> None:
        svc.proc = spawn(svc.name, svc.args, svc.log_path, url="", env=svc.env)

    def watch(self) -> None:
        """Restart services that died, until asked to stop."""
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for svc in self.services:
                if svc.proc is not None and not svc.proc.alive():
                    code = svc.proc.popen.returncode
                    svc.proc = None
                    svc.restarts += 1
                    svc.next_start = now + min(2 ** min(svc.restarts, 5) * 0.25, 10)
                    self.say(f"! {svc.name} exited with {code}; restarting (see {svc.log_path})")
                elif svc.proc is None and now >= svc.next_start:
                    self._launch(svc)
                    self._write_stack_json()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        for svc in reversed(self.services):
            if svc.proc is not None:
                svc.proc.stop(timeout=20)
        for server in reversed(self.servers):
            server.stop(timeout=20)

    def _write_stack_json(self) -> None:
        self.info["processes"] = {svc.name: svc.proc.pid for svc in self.services if svc.proc is not None}
        self.info["servers"] = {srv.name: srv.pid for srv in self.servers}
        self._write_json("stack.json", self.info, private=True)


def _demo_journey(dsn: str, org_id: str, project_id: str) -> str:
    import psycopg

    from productgraph.admin import create_journey

    pages = [("Cart", "/cart"), ("Shipping", "/checkout/shipping"), ("Payment", "/checkout/payment"),
             ("Done", "/checkout/done")]  # fmt: skip
    steps = [(name, {"event_type": "page.view", "page_path": path}) for name, path in pages]
    with psycopg.connect(dsn, autocommit=True) as conn:
        return create_journey(conn, org_id, project_id, "Checkout", steps)


def _with_user(dsn: str, user: str, password: str) -> str:
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(dsn)
    netloc = f"{quote(user)}:{quote(password)}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def run_stack(settings: StackSettings, say: Callable[[str], None] = print) -> int:
    """Bring everything up, print how to use it, then supervise until SIGINT/SIGTERM."""
    stack = Stack(settings, say)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stack.request_stop())
    t0 = time.monotonic()
    try:
        say(f"ProductGraph local stack, data in {stack.data_dir}")
        say("servers:")
        stack.start_servers()
        say("migrations:")
        stack.migrate()
        demo = stack.demo_tenant()
        say("services:")
        gateway_url, graphql_url = stack.start_services()
        stack.info = {
            "gateway_url": gateway_url,
            "graphql_url": graphql_url,
            **demo,
            "env": {k: v for k, v in stack.env.items() if k != "PG_POSTGRES_APP_PASSWORD"},
            "data_dir": str(stack.data_dir),
        }
        stack._write_stack_json()
        for svc in stack.services:
            say(f"  {svc.name:<22} pid {svc.proc.pid if svc.proc else '-'}  log {svc.log_path}")
        if settings.demo_events:
            from productgraph.demo import demo_events, send_events

            events = demo_events(demo["project_slug"], settings.demo_events, seed=time.time_ns())
            n = send_events(gateway_url, demo["api_key"], events)
            say(f"demo: sent {n} synthetic events through the gateway")
        _print_banner(say, stack.info, stack.data_dir, time.monotonic() - t0)
        if not stack._stop.is_set():
            stack.watch()
        say("stopping ...")
        return 0
    except Exception as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()
        with contextlib.suppress(FileNotFoundError):
            (stack.data_dir / "stack.json").unlink()
        say("stopped; data kept in " + str(stack.data_dir))


def _print_banner(say: Callable[[str], None], info: dict[str, Any], data_dir: Path, elapsed: float) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {"event_id": f"hello-{int(time.time())}", "project_id": info["project_slug"], "session.id": "s1",
             "event.type": "page.view", "event.timestamp": now, "page.path": "/"}  # fmt: skip
    query = {"query": f'{{ events(projectId: "{info["project_slug"]}") {{ total byType {{ eventType count }} }} }}'}
    journey = info.get("journey_id", "<id from journeys(projectId)>")
    say(f"""
ProductGraph is up ({elapsed:.0f}s).
  gateway   {info["gateway_url"]}   (POST /v1/events, /docs, /ready, /metrics)
  GraphQL   {info["graphql_url"]}   (GraphiQL in a browser; Authorization: Bearer <admin token>)
  project   {info["project_slug"]} ({info["project_id"]})
  API key   {info["api_key"]}
  admin     {info["admin_token"]}
  details   {data_dir / "stack.json"}

Send an event:
  curl -s -X POST {info["gateway_url"]}/v1/events -H 'Content-Type: application/json' \\
    -H 'X-PG-API-Key: {info["api_key"]}' \\
    -d '{json.dumps({"events": [event]})}'
Query it:
  curl -s {info["graphql_url"]} -H 'Authorization: Bearer {info["admin_token"]}' -H 'Content-Type: application/json' \\
    -d '{json.dumps(query)}'
More to try in GraphiQL ({info["graphql_url"]}; header {{"Authorization": "Bearer <admin token>"}}):
  {{ journeyFunnel(journeyId: "{journey}") {{ totalSessions conversionRate steps {{ name reached dropOff }} }} }}
  {{ sessions(projectId: "{info["project_slug"]}") {{ nodes {{ sessionId segment durationMs conversionStatus }} }} }}
  {{ liveMetrics(projectId: "{info["project_slug"]}") {{ activeSessions activeUsers eventsLastHour }} }}
  subscription {{ liveMetrics(projectId: "{info["project_slug"]}") {{ activeSessions eventsLastHour }} }}

Ctrl-C stops everything.""")
