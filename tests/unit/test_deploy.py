"""Deployment artefacts, validated offline: the container image, docker-compose, Kubernetes, cluster DDL.

* ``deploy/docker-compose.yml`` against the Compose specification (``check-jsonschema --builtin-schema
  vendor.compose-spec``), then its meaning: health-gated start order, production settings, and the
  environment each service gets, interpolated from ``deploy/.env.example`` and parsed by that service's
  own settings class.
* Kubernetes: ``kubectl`` is not installed here, so :func:`render` below is a deliberately small
  kustomize: ``resources`` (files and folders), ``namespace``, ``images`` and ``patches`` made of JSON 6902
  operations with a ``kind``/``name`` target.  It refuses every other kustomization field, so the overlays
  cannot silently use something it would render wrongly; when ``kubectl`` is on PATH a test compares it
  with ``kubectl kustomize``.  Every rendered object is validated by ``kubernetes-validate --strict``
  for Kubernetes ``K8S_VERSION``, except KEDA's ScaledObject (a CRD the validator does not know): those
  are checked against ``KEDA_SCALED_OBJECT`` below (a strict subset of the KEDA v2 CRD schema, written
  here) plus their embedded HPA behaviour through the real autoscaling/v2 schema.
* What each workload talks to (:data:`SERVERS_BY_COMMAND`): compose hands it those servers' URLs, and in
  Kubernetes it gets them from the ConfigMap/Secrets and the egress NetworkPolicies open exactly their ports
  (plus DNS) under a default deny.  The retention CronJob, the production Ingress (WebSocket timeouts for
  the query API, the gateway's body limit) are checked the same way.
* yamllint (repository ``.yamllint``) on every YAML file of ``deploy/``.
* The Dockerfile, parsed by the official BuildKit parser (the ``dockerfile`` package).
* :mod:`productgraph.clickhouse_ddl` and its wiring into ``productgraph migrate`` (with fakes, no server).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from pydantic_settings import BaseSettings
from yamllint import linter
from yamllint.config import YamlLintConfig

from ingest_gateway.settings import GatewaySettings
from productgraph import migrate
from productgraph.cli import main as cli_main
from productgraph.clickhouse_ddl import (
    SHARD_KEY,
    ClusterDDLError,
    create_database,
    ledger_table,
    render_migration,
    split_sql,
)
from productgraph.connections import ClickHouseTarget
from productgraph.retention import RetentionSettings
from productgraph.settings import MigrateSettings
from query_api.settings import QueryApiSettings
from schemas.topics import DEAD_LETTERS, EVENTS
from stream_processors import KIND_NAMES
from stream_processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
RENDERS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "production": K8S / "overlays" / "production"}
K8S_VERSION = "1.33.0"  # the oldest Kubernetes these manifests are meant for

# Each service's settings class, by its `productgraph` command (the same commands as `productgraph up`).
SETTINGS_BY_COMMAND: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "query-api": QueryApiSettings,
    "processor": ProcessorSettings,
    "migrate": MigrateSettings,
    "retention": RetentionSettings,
}
SERVICE_COMMANDS = {("gateway",), ("query-api",), ("migrate",), ("retention",)} | {("processor", k) for k in KIND_NAMES}
KNOWN_PG_VARS = {"PG_" + f.upper() for cls in SETTINGS_BY_COMMAND.values() for f in cls.model_fields}

# The servers each deployed command talks to (read from the code: ingest_gateway/, query_api/app.py,
# stream_processors/worker.py -- the sessions kind reads project settings and journeys from Postgres --,
# productgraph/migrate.py, productgraph/retention.py).  A new command or processor kind needs a row.
SERVERS_BY_COMMAND: dict[tuple[str, ...], set[str]] = {
    ("gateway",): {"kafka", "postgres", "redis"},
    ("query-api",): {"postgres", "redis", "clickhouse"},
    ("processor", "warehouse"): {"kafka", "clickhouse"},
    ("processor", "sessions"): {"kafka", "clickhouse", "redis", "postgres"},
    ("migrate",): {"postgres", "clickhouse", "kafka"},
    ("retention",): {"postgres", "clickhouse"},
}
SERVER_VARS = {
    "kafka": "PG_KAFKA_BOOTSTRAP",
    "clickhouse": "PG_CLICKHOUSE_URL",
    "postgres": "PG_POSTGRES_DSN",
    "redis": "PG_REDIS_URL",
}
# Settings the deployment files state explicitly, with the code's defaults (README "Configuration").
STATED_DEFAULTS: dict[str, type[BaseSettings]] = {
    "PG_QUERY_RATE_LIMIT_PER_S": QueryApiSettings,
    "PG_QUERY_RATE_LIMIT_BURST": QueryApiSettings,
    "PG_CLICKHOUSE_TIMEOUT_S": QueryApiSettings,
    "PG_PROJECT_CONFIG_REFRESH_S": ProcessorSettings,
}


def _server_ports(server: str, value: str) -> set[int]:
    """The TCP ports a service dials for ``server`` given its URL setting ``value``."""
    if server == "kafka":
        return {int(hostport.rsplit(":", 1)[1]) for hostport in value.split(",")}
    if server == "clickhouse":
        return {ClickHouseTarget(value).port}
    return {urlsplit(value).port or {"postgres": 5432, "redis": 6379}[server]}


def test_every_deployed_command_has_its_servers_listed() -> None:
    assert set(SERVERS_BY_COMMAND) == SERVICE_COMMANDS


Doc = dict[str, Any]


def _yaml_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---------------------------------------------------------------------------------------------------------------------
# container image
# ---------------------------------------------------------------------------------------------------------------------


def _dockerfile() -> list[Any]:
    return list(dockerfile.parse_file(str(DEPLOY / "Dockerfile")))


def test_dockerfile_is_multi_stage_slim_non_root_with_the_cli_as_entrypoint() -> None:
    cmds = _dockerfile()
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1] for c in cmds if c.cmd == "ARG" and "=" in c.value[0]
    }
    froms = [c.value for c in cmds if c.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for value in froms:
        image = args.get(value[0].strip("${}"), value[0]) if value[0].startswith("$") else value[0]
        assert image == "python:3.11-slim"
    last_stage = max(i for i, c in enumerate(cmds) if c.cmd == "FROM")
    runtime = cmds[last_stage:]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime stage must drop root"
    assert users[-1].split(":")[0].isdigit(), "numeric USER, so Kubernetes can check runAsNonRoot"
    entrypoint = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1].json and entrypoint[-1].value == ("productgraph",)
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in runtime), "runtime copies the built venv"


def test_image_carries_the_migrations_where_migrate_reads_them() -> None:
    cmds = _dockerfile()
    copied = {src for c in cmds if c.cmd == "COPY" and not c.flags for src in c.value[:-1]}
    assert {"deploy/postgres", "deploy/clickhouse"} <= copied
    # migrate.py reads <folder holding the packages>/deploy: the build copies deploy/ into site-packages
    # and asserts that load_migrations finds both folders there, so a wrong layout fails the build.
    assert Path(migrate.__file__).resolve().parent.parent / "deploy" == migrate.DEPLOY_DIR
    run = " ".join(" ".join(c.value) for c in cmds if c.cmd == "RUN")
    assert 'sysconfig.get_paths()["purelib"]' in run and "load_migrations(DEPLOY_DIR / 'clickhouse')" in run


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", "allowlist: ignore everything, then re-include"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    sources = {src for c in _dockerfile() if c.cmd == "COPY" and not c.flags for src in c.value[:-1]}
    assert sources <= allowed
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in packages["include"]} <= sources, "every package of the wheel is copied"
    assert not {".venv", ".git", "deploy", "deploy/.env", "tests", ".productgraph"} & allowed


@pytest.mark.parametrize("command", sorted(SERVICE_COMMANDS))
def test_every_deployed_command_is_a_cli_command(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli_main, [*command, "--help"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------------------------------
# docker-compose
# ---------------------------------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?err}``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m["name"], m["op"], m["arg"]
        present, value = name in env, env.get(name, "")
        if op in (":-", "-"):
            return value if (value if op == ":-" else present) else arg
        if op in (":?", "?") and not (value if op == ":?" else present):
            raise AssertionError(f"compose would stop: {name} unset ({arg})")
        return value

    return _VAR.sub(one, value)


def _env_example() -> dict[str, str]:
    pairs = [ln.split("=", 1) for ln in ENV_EXAMPLE.read_text().splitlines() if ln and not ln.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture(scope="module")
def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_compose_file_follows_the_compose_specification() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_runs_the_real_engines_with_production_settings(compose: Doc) -> None:
    services = compose["services"]
    kafka = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")}
    assert len(kafka) == 3, "three KRaft nodes, so topics can have 3 replicas"
    for s in kafka.values():
        env = s["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    assert {s["environment"]["KAFKA_NODE_ID"] for s in kafka.values()} == {"1", "2", "3"}
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    postgres_major = int(services["postgres"]["image"].split(":")[1].split(".")[0])
    assert postgres_major >= 18, "the migrations use uuidv7() (PostgreSQL 18)"
    assert re.fullmatch(r"redis:7[.\d]*(-alpine)?", services["redis"]["image"])


def test_compose_starts_services_only_after_healthy_servers_and_migrations(compose: Doc) -> None:
    services = compose["services"]
    servers = {n for n, s in services.items() if "build" not in s}
    apps = {n for n, s in services.items() if "build" in s}
    assert apps == {"migrate", "gateway", "query-api", "retention"} | {f"processor-{k}" for k in KIND_NAMES}
    # migrate runs to completion; retention serves no port and nothing waits for it (restarted if it exits).
    for name in servers | apps - {"migrate", "retention"}:
        assert "healthcheck" in services[name], f"{name} has no health check"
    migrate_deps = services["migrate"]["depends_on"]
    assert {d["condition"] for d in migrate_deps.values()} == {"service_healthy"}
    assert {n for n in migrate_deps if n.startswith("kafka")} == {n for n in servers if n.startswith("kafka")}
    assert {"clickhouse", "postgres"} <= set(migrate_deps)
    assert services["migrate"]["restart"] == "no"
    for name in apps - {"migrate"}:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert all(d["condition"] in ("service_healthy", "service_completed_successfully") for d in deps.values())


def test_compose_commands_volumes_and_ports(compose: Doc) -> None:
    services = compose["services"]
    commands = {tuple(s["command"]) for s in services.values() if "build" in s}
    assert commands == SERVICE_COMMANDS
    assert len({s["image"] for s in services.values() if "build" in s}) == 1, "one image for every service"
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"gateway", "query-api"}
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == declared, "every volume is a named volume, and every named volume is used"


def test_compose_env_file_example_defines_every_required_variable(compose: Doc) -> None:
    env = _env_example()
    text = COMPOSE.read_text()
    required = {m["name"] for m in _VAR.finditer(text) if m["name"] and (m["op"] or "").endswith("?")}
    assert required <= set(env), f"missing in deploy/.env.example: {required - set(env)}"
    assert {k for k in env if k.startswith("PG_")} <= KNOWN_PG_VARS


def _compose_service_env(service: Doc, env_file: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), env_file) for k, v in service["environment"].items()}


def _settings_from(env: dict[str, str], cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cls`` as the service would build it from exactly ``env`` (nothing else from this process)."""
    import os

    for key in list(os.environ):
        if key.startswith("PG_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()


def test_compose_environment_parses_in_each_services_settings(compose: Doc, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = _env_example()
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        env = _compose_service_env(service, env_file)
        assert set(env) <= KNOWN_PG_VARS, f"{name}: unknown PG_ variables {set(env) - KNOWN_PG_VARS}"
        s = _settings_from(env, SETTINGS_BY_COMMAND[service["command"][0]], monkeypatch)
        # Each server the command talks to is given explicitly (a settings default would point at 127.0.0.1).
        for server in SERVERS_BY_COMMAND[tuple(service["command"])]:
            assert SERVER_VARS[server] in env, f"{name} talks to {server} but gets no {SERVER_VARS[server]}"
            if server != "kafka":
                assert urlsplit(env[SERVER_VARS[server]]).hostname == server, f"{name}: {server} host"
        assert s.kafka_idempotence is True and s.clickhouse_compress is True
        assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert ClickHouseTarget(s.clickhouse_url).host == "clickhouse"
        assert s.postgres_dsn.startswith("postgresql://productgraph_app:")
        assert s.redis_url.startswith("redis://:") and "@redis:6379" in s.redis_url
        if name == "migrate":
            assert s.kafka_replication_factor == 3
            assert s.postgres_admin_dsn.startswith("postgresql://postgres:")
            assert s.postgres_dsn.split(":")[2].split("@")[0] == s.postgres_app_password
        else:
            assert "PG_POSTGRES_ADMIN_DSN" not in env, f"{name} must not see the schema owner's DSN"
        if name.startswith("processor-"):
            assert s.metrics_port == 9100
            assert "9100/health" in " ".join(service["healthcheck"]["test"])


def test_compose_retention_service(compose: Doc, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    retention = services["retention"]
    assert retention["command"] == ["retention"], "long-running: one pass at start, then every interval"
    assert retention["restart"] == "unless-stopped"
    deps = retention["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert {n for n, d in deps.items() if d["condition"] == "service_healthy"} == {"postgres", "clickhouse"}
    env_file = _env_example()
    assert env_file["PG_RETENTION_INTERVAL_S"] == "3600"
    # The interval set in deploy/.env reaches the service (not just the code's default).
    tuned = _compose_service_env(retention, env_file | {"PG_RETENTION_INTERVAL_S": "120"})
    assert _settings_from(tuned, RetentionSettings, monkeypatch).retention_interval_s == 120
    s = _settings_from(_compose_service_env(retention, env_file), RetentionSettings, monkeypatch)
    assert s.postgres_dsn.startswith("postgresql://productgraph_app:"), "retention_policies() as the app role"
    # Deletes must address the tables migrate created: the same cluster setting (single node here).
    m = _settings_from(_compose_service_env(services["migrate"], env_file), MigrateSettings, monkeypatch)
    assert s.clickhouse_cluster == m.clickhouse_cluster and s.clickhouse_url == m.clickhouse_url


def test_deployment_files_state_the_guard_rail_and_refresh_settings_with_the_code_defaults(
    compose: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = _env_example()
    config = _yaml_docs(K8S / "base" / "configmap.yaml")[0]["data"]
    services = compose["services"]
    for var, cls in STATED_DEFAULTS.items():
        default = cls.model_fields[var.removeprefix("PG_").lower()].default
        for where, value in (("deploy/.env.example", env_file[var]), ("configmap.yaml", config[var])):
            parsed = getattr(_settings_from({var: value}, cls, monkeypatch), var.removeprefix("PG_").lower())
            assert parsed == default, f"{where}: {var}={value}, the code's default is {default}"
        users = [n for n, svc in services.items() if var in svc.get("environment", {})]
        wanted = {"query-api"} if cls is QueryApiSettings else {f"processor-{k}" for k in KIND_NAMES}
        assert set(users) == wanted, f"{var} reaches {users}"


# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes: a small kustomize
# ---------------------------------------------------------------------------------------------------------------------

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}


def render(folder: Path) -> list[Doc]:
    """The objects ``kubectl kustomize folder`` prints, for the subset of kustomize these overlays use."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"{folder}: this renderer does not implement {sorted(unknown)}"
    docs: list[Doc] = []
    for entry in k.get("resources", []):
        path = (folder / entry).resolve()
        docs += render(path) if path.is_dir() else _yaml_docs(path)
    for patch in k.get("patches", []):
        assert set(patch) == {"target", "patch"} and set(patch["target"]) <= {"kind", "name"}, patch
        matched = [d for d in docs if _selected(d, patch["target"])]
        assert matched, f"{folder}: patch target {patch['target']} matches nothing"
        for doc in matched:
            _json_patch(doc, yaml.safe_load(patch["patch"]))
    for image in k.get("images", []):
        for container in (c for d in docs for c in _containers(d)):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if namespace := k.get("namespace"):
        for doc in docs:
            if doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def _selected(doc: Doc, target: dict[str, str]) -> bool:
    return all(re.fullmatch(target[f], doc[f] if f == "kind" else doc["metadata"]["name"]) for f in target)


def _json_patch(doc: Doc, operations: list[Doc]) -> None:
    """RFC 6902 ``add``, ``replace`` and ``remove`` (``replace``/``remove`` need the path to exist)."""
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        key: int | str = (len(parent) if last == "-" else int(last)) if isinstance(parent, list) else last
        if op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(int(key), op["value"])
            else:
                parent[key] = op["value"]
        elif op["op"] == "replace":
            parent[key]
            parent[key] = op["value"]
        elif op["op"] == "remove":
            del parent[key]
        else:
            raise AssertionError(f"JSON patch op {op['op']!r} not implemented by this renderer")


def _pod_template(doc: Doc) -> Doc | None:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        template: Doc = doc["spec"]["template"]
        return template
    if doc["kind"] == "CronJob":
        template = doc["spec"]["jobTemplate"]["spec"]["template"]
        return template
    return None


def _pod_spec(doc: Doc) -> Doc | None:
    template = _pod_template(doc)
    return None if template is None else template["spec"]


def _pod_labels(doc: Doc) -> dict[str, str]:
    template = _pod_template(doc)
    assert template is not None, doc["kind"]
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def _container_env(
    container: Doc, config_maps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """What the container's ``envFrom`` gives it (later sources win, as in Kubernetes)."""
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env |= config_maps[source["configMapRef"]["name"]]
        else:
            env |= secrets[source["secretRef"]["name"]]
    return env


def _service_command(args: list[str]) -> tuple[str, ...]:
    """``["retention", "--once"]`` -> ``("retention",)``: the command without its options."""
    return tuple(a for a in args if not a.startswith("-"))


def _containers(doc: Doc) -> Iterator[Doc]:
    if (spec := _pod_spec(doc)) is not None:
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module", params=sorted(RENDERS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(RENDERS[request.param])


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["stringData"] for d in _yaml_docs(SECRET_TEMPLATE)}


# KEDA v2 ScaledObject: the fields we use, strictly (no unknown keys), after the CRD in kedacore/keda
# config/crd/bases/keda.sh_scaledobjects.yaml.  Trigger metadata values must be strings.
KEDA_SCALED_OBJECT: Doc = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers",
    "bootstrapServersFromEnv",
    "consumerGroup",
    "consumerGroupFromEnv",
    "topic",
    "topicFromEnv",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "version",
}


def _validate_keda(doc: Doc) -> None:
    jsonschema.validate(doc, KEDA_SCALED_OBJECT)
    spec = doc["spec"]
    # KEDA hands `advanced.horizontalPodAutoscalerConfig.behavior` to the HPA it creates: check it there.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": doc["metadata"]["name"]},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec["scaleTargetRef"]["name"]},
            "minReplicas": max(1, spec.get("minReplicaCount", 1)),
            "maxReplicas": spec["maxReplicaCount"],
            "behavior": spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}),
        },
    }
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert set(meta) <= KAFKA_TRIGGER_KEYS, set(meta) - KAFKA_TRIGGER_KEYS
        assert ("bootstrapServers" in meta) != ("bootstrapServersFromEnv" in meta)
        assert meta["lagThreshold"].isdigit() and int(meta["lagThreshold"]) > 0
        assert meta.get("offsetResetPolicy", "latest") in ("earliest", "latest")
        assert meta.get("allowIdleConsumers", "false") in ("true", "false")


def test_every_rendered_manifest_validates_strictly(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    assert docs
    for doc in docs:
        label = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("keda.sh/"):
            _validate_keda(doc)  # a CRD: kubernetes-validate has no schema for it
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{label}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{label}: {exc.message}")


def test_secret_template_validates_and_is_clearly_a_template(secrets: dict[str, dict[str, str]]) -> None:
    docs = _yaml_docs(SECRET_TEMPLATE)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert "TEMPLATE" in SECRET_TEMPLATE.read_text().splitlines()[0]
    for name, data in secrets.items():
        assert all("CHANGE-ME" in v for v in data.values()), f"{name}: every value must be a placeholder"
        assert set(data) <= KNOWN_PG_VARS
    for render_name, folder in RENDERS.items():
        assert not [d for d in render(folder) if d["kind"] == "Secret"], f"{render_name} must not ship Secrets"


def test_processor_kinds_scale_on_lag_up_to_the_partition_count(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    config = _one(docs, "ConfigMap", "productgraph-config")["data"]
    partitions = int(config["PG_EVENTS_TOPIC_PARTITIONS"])
    processors = {
        d["metadata"]["name"] for d in docs if d["kind"] == "Deployment" and "processor" in d["metadata"]["name"]
    }
    assert processors == {f"productgraph-processor-{k}" for k in KIND_NAMES}
    for kind in KIND_NAMES:
        deployment = _one(docs, "Deployment", f"productgraph-processor-{kind}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["processor", kind]
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        scaled = _one(docs, "ScaledObject", f"productgraph-processor-{kind}")
        assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert scaled["spec"]["maxReplicaCount"] == partitions, f"{name}: maxReplicaCount != partitions"
        assert 1 <= scaled["spec"]["minReplicaCount"] <= partitions
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == f"productgraph-{kind}"  # stream_processors.runner.BatchRunner.group_id
        assert meta["topic"] == EVENTS.name
        assert meta["bootstrapServersFromEnv"] in config, "KEDA reads it from the Deployment's environment"
        pdb = _one(docs, "PodDisruptionBudget", f"productgraph-processor-{kind}")
        assert _labels_match(
            pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
        )


@pytest.mark.parametrize(
    ("component", "port_var"), [("gateway", "PG_GATEWAY_PORT"), ("query-api", "PG_QUERY_API_PORT")]
)
def test_http_services_autoscale_on_cpu_and_probe_their_real_endpoints(
    rendered: tuple[str, list[Doc]], component: str, port_var: str
) -> None:
    _, docs = rendered
    config = _one(docs, "ConfigMap", "productgraph-config")["data"]
    name = f"productgraph-{component}"
    deployment = _one(docs, "Deployment", name)
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [component]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(config[port_var])}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    hpa = _one(docs, "HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    service = _one(docs, "Service", name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _labels_match(service["spec"]["selector"], pod_labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    pdb = _one(docs, "PodDisruptionBudget", name)
    assert _labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)


def test_workloads_are_sized_hardened_and_configured_from_one_image(
    rendered: tuple[str, list[Doc]], secrets: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, docs = rendered
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    workloads = [d for d in docs if _pod_spec(d) is not None]
    images = {c["image"] for d in workloads for c in _containers(d)}
    assert len(images) == 1, f"{name}: one image for every service, got {images}"
    commands = set()
    for doc in workloads:
        pod = _pod_spec(doc)
        assert pod is not None
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        selector = doc["spec"].get("selector", {}).get("matchLabels")
        if selector is not None:
            assert _labels_match(selector, _pod_labels(doc))
        for container in _containers(doc):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{doc['metadata']['name']}"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            env = _container_env(container, config_maps, secrets)
            assert {k for k in env if k.startswith("PG_")} <= KNOWN_PG_VARS
            command = container["args"][0]
            commands.add(_service_command(container["args"]))
            cli = CliRunner().invoke(cli_main, [*container["args"], "--help"])
            assert cli.exit_code == 0, f"{doc['metadata']['name']}: args {container['args']}: {cli.output}"
            settings = _settings_from(env, SETTINGS_BY_COMMAND[command], monkeypatch)
            assert settings.kafka_idempotence is True and settings.clickhouse_compress is True
            refs = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
            assert ("productgraph-migrate" in refs) == (command == "migrate"), "owner DSN for migrations only"
            if command == "processor":
                probe_port = container["livenessProbe"]["httpGet"]["port"]
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert ports[probe_port] == settings.metrics_port and settings.metrics_host == "0.0.0.0"
                assert container["readinessProbe"]["httpGet"]["path"] == "/ready"  # sinks answer, partitions owned
                assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            if command == "migrate":
                assert settings.kafka_replication_factor >= (3 if name != "dev" else 1)
    assert commands == SERVICE_COMMANDS


def test_only_the_gateway_and_query_api_accept_outside_traffic(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert any(
        p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in p["spec"]
        for p in policies
    ), "default-deny ingress for every pod"
    open_to: dict[str, set[int]] = {}
    for doc in (d for d in docs if _pod_spec(d) is not None):
        labels = _pod_labels(doc)
        for policy in policies:
            if not _labels_match(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
                continue
            for rule in policy["spec"].get("ingress", []):
                sources = rule.get("from")
                if not sources or any(s.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for s in sources):
                    open_to.setdefault(labels["app.kubernetes.io/component"], set()).update(
                        p["port"] for p in rule["ports"]
                    )
    assert open_to == {"gateway": {8080}, "query-api": {8090}}


def _egress_ports(policies: list[Doc], labels: dict[str, str]) -> set[tuple[str, int]]:
    """(protocol, port) a pod with ``labels`` may dial under these policies (rules without ports: refused)."""
    allowed: set[tuple[str, int]] = set()
    for policy in policies:
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"]:
            continue
        assert set(spec["podSelector"]) <= {"matchLabels"}, "this check reads matchLabels only"
        if not _labels_match(spec["podSelector"].get("matchLabels", {}), labels):
            continue
        for rule in spec.get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule without ports opens everything"
            allowed |= {(port.get("protocol", "TCP"), port["port"]) for port in rule["ports"]}
    return allowed


def test_egress_is_denied_except_dns_and_each_workloads_own_servers(
    rendered: tuple[str, list[Doc]], secrets: dict[str, dict[str, str]]
) -> None:
    name, docs = rendered
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["policyTypes"] == ["Egress"] and "egress" not in p["spec"]]
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    seen = set()
    for doc in (d for d in docs if _pod_spec(d) is not None):
        labels = _pod_labels(doc)
        assert any(_labels_match(p["spec"]["podSelector"]["matchLabels"], labels) for p in deny), "default deny"
        allowed = _egress_ports(policies, labels)
        assert {("UDP", 53), ("TCP", 53)} <= allowed, f"{doc['metadata']['name']}: no DNS"
        for container in _containers(doc):
            command = _service_command(container["args"])
            seen.add(command)
            env = _container_env(container, config_maps, secrets)
            wanted = {53}
            for server in SERVERS_BY_COMMAND[command]:
                assert SERVER_VARS[server] in env, f"{name}: {command} talks to {server} but gets no URL for it"
                wanted |= _server_ports(server, env[SERVER_VARS[server]])
            tcp = {port for protocol, port in allowed if protocol == "TCP"}
            assert tcp == wanted, f"{name}: {doc['metadata']['name']} may dial {sorted(tcp)}, needs {sorted(wanted)}"
    assert seen == SERVICE_COMMANDS


def test_sessions_processor_reads_postgres_as_the_app_role(
    rendered: tuple[str, list[Doc]], secrets: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, docs = rendered
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    (container,) = _containers(_one(docs, "Deployment", "productgraph-processor-sessions"))
    env = _container_env(container, config_maps, secrets)
    assert env["PG_POSTGRES_DSN"] == secrets["productgraph-runtime"]["PG_POSTGRES_DSN"]
    assert urlsplit(env["PG_POSTGRES_DSN"]).username == "productgraph_app", "RLS: never the owner role"
    assert "PG_POSTGRES_ADMIN_DSN" not in env
    settings = _settings_from(env, ProcessorSettings, monkeypatch)
    assert settings.project_config_refresh_s == ProcessorSettings.model_fields["project_config_refresh_s"].default


def _hourly(schedule: str) -> bool:
    minute, *rest = schedule.split()
    return minute.isdigit() and 0 <= int(minute) < 60 and rest == ["*", "*", "*", "*"]


def test_retention_cronjob_runs_one_pass_an_hour_as_the_app_role(
    rendered: tuple[str, list[Doc]], secrets: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, docs = rendered
    cron = _one(docs, "CronJob", "productgraph-retention")
    spec = cron["spec"]
    assert _hourly(spec["schedule"]), spec["schedule"]
    assert spec["concurrencyPolicy"] == "Forbid", "never two passes at once"
    job = spec["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] < 3600, "a stuck pass ends before the next one is due"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["args"] == ["retention", "--once"]
    refs = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
    assert refs == {"productgraph-runtime"}
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    settings = _settings_from(_container_env(container, config_maps, secrets), RetentionSettings, monkeypatch)
    runtime = secrets["productgraph-runtime"]
    assert (
        settings.postgres_dsn == runtime["PG_POSTGRES_DSN"] and settings.clickhouse_url == runtime["PG_CLICKHOUSE_URL"]
    )
    # Deletes go to the tables migrate created: the same ClickHouse cluster setting (production: cluster mode).
    (migrate_container,) = _containers(_one(docs, "Job", "productgraph-migrate"))
    migrate_env = _container_env(migrate_container, config_maps, secrets)
    assert settings.clickhouse_cluster == _settings_from(migrate_env, MigrateSettings, monkeypatch).clickhouse_cluster


def test_production_ingress_routes_the_public_apis_and_keeps_subscriptions_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render(RENDERS["production"])
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    routes: dict[tuple[str, str], Doc] = {}
    for ingress in ingresses:
        assert ingress["spec"]["ingressClassName"] == "nginx", "the annotations below are ingress-nginx's"
        backends = set()
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                ports = {p["name"] for p in _one(docs, "Service", service["name"])["spec"]["ports"]}
                assert service["port"]["name"] in ports
                routes[(rule["host"], path["path"])] = ingress
                backends.add(service["name"])
        # ingress-nginx annotations hold for the whole object: one backend each, so timeouts do not leak.
        assert len(backends) == 1, f"{ingress['metadata']['name']} routes to {backends}"
    assert {path for _, path in routes} == {"/v1", "/graphql"}, "only the public APIs are routed"
    (api,) = {id(i): i for (_, path), i in routes.items() if path == "/graphql"}.values()
    annotations = api["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        # The default (60 s) would cut a quiet GraphQL subscription (WebSocket) after a minute.
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    (ingest,) = {id(i): i for (_, path), i in routes.items() if path == "/v1"}.values()
    body = (ingest["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    limit = int(body[:-1]) * units[body[-1].lower()] if body[-1].isalpha() else int(body)
    config = _one(docs, "ConfigMap", "productgraph-config")["data"]
    gateway = _settings_from(config, GatewaySettings, monkeypatch)
    assert limit >= gateway.max_body_bytes, "nginx must not refuse a body the gateway accepts (413 is the gateway's)"
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" not in (ingest["metadata"].get("annotations") or {})


def test_migrations_job_and_namespaces(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    job = _one(docs, "Job", "productgraph-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert [c["args"] for c in job["spec"]["template"]["spec"]["containers"]] == [["migrate"]]
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    if name == "base":
        assert not namespaces and all("namespace" not in d["metadata"] for d in docs)
    else:
        (namespace,) = namespaces
        assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace")
        image = next(_containers(job))["image"]
        assert ":" in image and not image.endswith(":latest"), "overlays pin the image tag"


def test_renderer_implements_json_patch_as_specified() -> None:
    doc: Doc = {"a": {"b/c": 1, "list": [1, 2]}}
    _json_patch(doc, [{"op": "replace", "path": "/a/b~1c", "value": 2}, {"op": "add", "path": "/a/list/-", "value": 3}])
    _json_patch(doc, [{"op": "remove", "path": "/a/list/0"}, {"op": "add", "path": "/a/new", "value": "x"}])
    assert doc == {"a": {"b/c": 2, "list": [2, 3], "new": "x"}}
    with pytest.raises(KeyError):
        _json_patch(doc, [{"op": "replace", "path": "/a/missing", "value": 1}])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: the small renderer is used alone")
@pytest.mark.parametrize("overlay", sorted(RENDERS))
def test_renderer_agrees_with_kubectl_kustomize(overlay: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(RENDERS[overlay])], capture_output=True, text=True, check=True, timeout=120
    ).stdout

    def key(d: Doc) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    ours = sorted(render(RENDERS[overlay]), key=key)
    assert json.dumps(ours, sort_keys=True, indent=1) == json.dumps(theirs, sort_keys=True, indent=1)


# ---------------------------------------------------------------------------------------------------------------------
# yamllint
# ---------------------------------------------------------------------------------------------------------------------


def test_yaml_files_pass_yamllint() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    files = [COMPOSE, *sorted(K8S.rglob("*.yaml")), ROOT / ".yamllint"]
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column}: {p.message} ({p.rule})"
        for path in files
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------------
# cluster-mode ClickHouse DDL
# ---------------------------------------------------------------------------------------------------------------------

EVENTS_SQL = (DEPLOY / "clickhouse" / "0001_events.sql").read_text()
CLUSTER = "pg_cluster"


def _column_block(statement: str) -> str:
    start = statement.index("(")
    depth = 0
    for i, c in enumerate(statement[start:], start):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth == 0:
            return statement[start : i + 1]
    raise AssertionError("unbalanced")


def test_single_node_sql_passes_through_unchanged() -> None:
    assert render_migration(EVENTS_SQL, None) is EVENTS_SQL
    assert render_migration(EVENTS_SQL, "") is EVENTS_SQL


def test_cluster_rendering_of_the_events_migration() -> None:
    statements = migrate.split_statements(render_migration(EVENTS_SQL, CLUSTER))
    (original,) = migrate.split_statements(EVENTS_SQL)
    assert len(statements) == 2
    local, distributed = statements
    assert local.startswith(f"CREATE TABLE IF NOT EXISTS events_local ON CLUSTER {CLUSTER}\n(")
    assert _column_block(local) == _column_block(original)
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')"
        in local
    )
    assert "ENGINE = ReplacingMergeTree" not in local
    tail = original[original.index("PARTITION BY") :]
    assert local.endswith(tail), "partitioning, order, TTL and settings are kept"
    assert distributed == (
        f"CREATE TABLE IF NOT EXISTS events ON CLUSTER {CLUSTER} AS events_local\n"
        f"ENGINE = Distributed({CLUSTER}, currentDatabase(), events_local, cityHash64(project_id))"
    )
    assert SHARD_KEY == "cityHash64(project_id)"


def test_every_clickhouse_migration_has_a_cluster_rendering() -> None:
    for mig in migrate.load_migrations(DEPLOY / "clickhouse"):
        rendered = render_migration(mig.sql, CLUSTER)
        statements = migrate.split_statements(rendered)
        assert statements and all(f"ON CLUSTER {CLUSTER}" in s for s in statements), mig.name
        assert not re.search(r"ENGINE\s*=\s*(?!Replicated|Distributed)\w*MergeTree", rendered), mig.name


def test_engine_arguments_follow_the_replication_arguments() -> None:
    sql = (
        "CREATE TABLE t (project_id UUID, v UInt64, s String DEFAULT 'x;y') ENGINE = ReplacingMergeTree(v) ORDER BY v;"
    )
    local, distributed = split_sql(render_migration(sql, "c"))
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/t_local', '{replica}', v)"
        in local
    )
    assert local.endswith(" ORDER BY v") and "DEFAULT 'x;y'" in local
    assert distributed.startswith("CREATE TABLE t ON CLUSTER c AS t_local")
    plain = render_migration("CREATE TABLE u (project_id UUID) ENGINE = MergeTree() ORDER BY project_id", "c")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/u_local', '{replica}') ORDER" in plain


def test_alter_statements_reach_local_and_distributed_tables_in_a_safe_order() -> None:
    add = split_sql(
        render_migration("ALTER TABLE events ADD COLUMN x String DEFAULT 'a,b', ADD INDEX i x TYPE set(0)", "c")
    )
    assert add == [
        "ALTER TABLE events_local ON CLUSTER c ADD COLUMN x String DEFAULT 'a,b', ADD INDEX i x TYPE set(0)",
        "ALTER TABLE events ON CLUSTER c ADD COLUMN x String DEFAULT 'a,b'",
    ]
    drop = split_sql(render_migration("ALTER TABLE events DROP COLUMN x", "c"))
    assert drop == [
        "ALTER TABLE events ON CLUSTER c DROP COLUMN x",
        "ALTER TABLE events_local ON CLUSTER c DROP COLUMN x",
    ]
    ttl = split_sql(render_migration("ALTER TABLE events MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY", "c"))
    assert ttl == ["ALTER TABLE events_local ON CLUSTER c MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY"]
    with pytest.raises(ClusterDDLError, match="own ALTER"):
        render_migration("ALTER TABLE events DROP COLUMN x, ADD COLUMN y String", "c")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE MATERIALIZED VIEW mv TO rollup AS SELECT project_id FROM events",
        "CREATE TABLE m (project_id UUID) ENGINE = Memory",
        "CREATE TABLE r (project_id UUID) ENGINE = ReplicatedMergeTree('/p', '{replica}') ORDER BY project_id",
        "CREATE TABLE n (org_id UUID) ENGINE = MergeTree ORDER BY org_id",
        "CREATE TABLE o ON CLUSTER x (project_id UUID) ENGINE = MergeTree ORDER BY project_id",
        "CREATE TABLE s AS events",
        "INSERT INTO events VALUES (1)",
    ],
)
def test_statements_without_a_cluster_rendering_are_refused(sql: str) -> None:
    with pytest.raises(ClusterDDLError):
        render_migration(sql, "c")
    assert render_migration(sql, None) == sql


@pytest.mark.parametrize("cluster", ["a b", "c; DROP TABLE events", "1c", "c`"])
def test_cluster_names_are_plain_identifiers(cluster: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        render_migration(EVENTS_SQL, cluster)


def test_split_sql_ignores_comments_and_quoted_semicolons() -> None:
    script = "-- a; comment\nSELECT 'x;y', `a;b` /* c; d */;\n\nSELECT 2; -- tail\n"
    assert split_sql(script) == ["SELECT 'x;y', `a;b`", "SELECT 2"]


def test_database_and_ledger_single_node_unchanged_and_cluster_wide() -> None:
    assert create_database("db", None) == "CREATE DATABASE IF NOT EXISTS `db`"
    assert create_database("db", "c") == "CREATE DATABASE IF NOT EXISTS `db` ON CLUSTER c"
    assert ledger_table(None) == (  # exactly what migrate created before cluster mode existed
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    clustered = ledger_table("c")
    assert "ON CLUSTER c" in clustered and "ReplicatedMergeTree('/clickhouse/tables/all/{database}/" in clustered
    assert "{shard}" not in clustered.split("'")[1], "one replicated ledger across all shards"


# ---------------------------------------------------------------------------------------------------------------------
# the wiring into `productgraph migrate` (fakes instead of servers)
# ---------------------------------------------------------------------------------------------------------------------


class _FakeResult:
    result_rows: list[tuple[int]] = []


class _FakeClickHouse:
    """Records what migrate_clickhouse sends; the ledger starts empty."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def command(self, sql: str) -> None:
        self.log.append(sql)

    def query(self, sql: str) -> _FakeResult:
        self.log.append(sql)
        return _FakeResult()

    def insert(self, table: str, rows: list[list[object]], column_names: list[str]) -> None:
        self.log.append(f"INSERT {table} {rows}")

    def close(self) -> None:
        pass


@pytest.fixture
def clickhouse_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    monkeypatch.setattr(migrate, "clickhouse_client", lambda url, **kw: _FakeClickHouse(log))
    return log


def test_migrate_clickhouse_single_node_sends_the_migration_files_as_written(clickhouse_log: list[str]) -> None:
    applied = migrate.migrate_clickhouse("http://u:p@ch:8123/db")
    files = migrate.load_migrations(DEPLOY / "clickhouse")
    assert applied == [f"clickhouse {m.version:04d}_{m.name}" for m in files]
    assert clickhouse_log[0] == "CREATE DATABASE IF NOT EXISTS `db`"
    assert clickhouse_log[1] == ledger_table(None)
    assert clickhouse_log[3] == migrate.split_statements(EVENTS_SQL)[0]


def test_migrate_clickhouse_cluster_mode_renders_every_statement(clickhouse_log: list[str]) -> None:
    migrate.migrate_clickhouse("http://u:p@ch:8123/db", cluster=CLUSTER)
    assert clickhouse_log[0] == f"CREATE DATABASE IF NOT EXISTS `db` ON CLUSTER {CLUSTER}"
    assert clickhouse_log[1] == ledger_table(CLUSTER)
    ddl = [s for s in clickhouse_log[3:] if not s.startswith("INSERT")]
    files = migrate.load_migrations(DEPLOY / "clickhouse")
    assert ddl == [s for m in files for s in migrate.split_statements(render_migration(m.sql, CLUSTER))]
    last = files[-1]
    assert clickhouse_log[-1] == f"INSERT schema_migrations [[{last.version}, '{last.name}']]"


def test_migrate_all_passes_cluster_and_replication_factor_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setattr(migrate, "migrate_postgres", lambda dsn, password: [])

    def fake_clickhouse(url: str, **kw: Any) -> list[str]:
        calls["clickhouse"] = kw
        return []

    async def fake_topics(bootstrap: str, partitions: dict[str, int], **kw: Any) -> None:
        calls["topics"] = (partitions, kw)

    monkeypatch.setattr(migrate, "migrate_clickhouse", fake_clickhouse)
    monkeypatch.setattr(migrate, "ensure_all_topics", fake_topics)
    env = {"PG_CLICKHOUSE_CLUSTER": CLUSTER, "PG_KAFKA_REPLICATION_FACTOR": "3", "PG_EVENTS_TOPIC_PARTITIONS": "12"}
    settings = _settings_from(env, MigrateSettings, monkeypatch)
    migrate.migrate_all(settings, progress=lambda _: None)
    assert calls["clickhouse"] == {"compress": False, "cluster": CLUSTER}
    assert calls["topics"] == ({EVENTS.name: 12}, {"replication_factor": 3})
    assert _settings_from({}, MigrateSettings, monkeypatch).clickhouse_cluster is None


def test_ensure_all_topics_hands_the_replication_factor_to_topic_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    seen: list[tuple[str, dict[str, int], int]] = []

    async def ensure_topics(bootstrap: str, wanted: dict[str, int], *, replication_factor: int = 1) -> None:
        seen.append((bootstrap, wanted, replication_factor))

    # Stands in for productgraph.localstack.kafka (another module's job): only the call is under test.
    monkeypatch.setitem(
        sys.modules, "productgraph.localstack.kafka", types.SimpleNamespace(ensure_topics=ensure_topics)
    )
    asyncio.run(migrate.ensure_all_topics("k:9092", {EVENTS.name: 12}, replication_factor=3))
    assert seen == [("k:9092", {EVENTS.name: 12, DEAD_LETTERS.name: DEAD_LETTERS.partitions}, 3)]
