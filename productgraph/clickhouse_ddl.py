"""Cluster-mode ClickHouse DDL, rendered from the single-node migrations (the one source of the schema).

``deploy/clickhouse/*.sql`` are written for one server.  With a cluster name (``PG_CLICKHOUSE_CLUSTER``),
:func:`render_migration` turns every table into a replicated shard-local table plus a ``Distributed``
table under the original name, so inserts and queries keep using ``events`` and rows are sharded by
project (all events of a project, hence every duplicate of an event, live on one shard, which keeps
``ReplacingMergeTree`` deduplication and ``FINAL`` exact)::

    CREATE TABLE IF NOT EXISTS events (...) ENGINE = ReplacingMergeTree ORDER BY ...
    -->
    CREATE TABLE IF NOT EXISTS events_local ON CLUSTER c (...)
    ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')
    ORDER BY ...;
    CREATE TABLE IF NOT EXISTS events ON CLUSTER c AS events_local
    ENGINE = Distributed(c, currentDatabase(), events_local, cityHash64(project_id))

``ALTER TABLE`` statements go to the local table and, for column changes, to the distributed one too.
Any other statement is refused with :class:`ClusterDDLError`: the unit tests render every migration
file, so a migration that cannot be rendered fails there rather than during a production deploy.
Without a cluster name the SQL is returned unchanged.  Everything here is pure string work.
"""

from __future__ import annotations

import re

__all__ = [
    "SHARD_KEY",
    "ClusterDDLError",
    "create_database",
    "ledger_table",
    "local_name",
    "render_migration",
    "split_sql",
]

SHARD_KEY = "cityHash64(project_id)"
LOCAL_SUFFIX = "_local"
_ZK_PATH = "/clickhouse/tables/{{shard}}/{{database}}/{table}"

_CLUSTER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_CREATE = re.compile(rf"^CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{_IDENT})\s*", re.I)
_ALTER = re.compile(rf"^ALTER\s+TABLE\s+(?P<name>{_IDENT})\s+(?P<commands>.+)$", re.I | re.S)
_ENGINE = re.compile(r"^\s*ENGINE\s*=\s*(?P<engine>[A-Za-z]*MergeTree)\b", re.I)
_ON_CLUSTER = re.compile(r"\bON\s+CLUSTER\b", re.I)
_HAS_PROJECT_ID = re.compile(r"[(,]\s*`?project_id`?\s", re.I)
_COLUMN_COMMAND = re.compile(r"^(?P<verb>ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)

_LEDGER_COLUMNS = "(version UInt32, name String, applied_at DateTime DEFAULT now())"


class ClusterDDLError(ValueError):
    """A statement that has no cluster-mode rendering (write it differently or extend this module)."""


def render_migration(script: str, cluster: str | None) -> str:
    """The migration ``script`` for one server (``cluster`` unset: unchanged) or for ``cluster``."""
    if not cluster:
        return script
    _check_cluster(cluster)
    rendered: list[str] = []
    for statement in split_sql(script):
        if _CREATE.match(statement):
            rendered += _create_table(statement, cluster)
        elif _ALTER.match(statement):
            rendered += _alter_table(statement, cluster)
        else:
            raise ClusterDDLError(f"no cluster-mode rendering for: {statement[:80]!r}")
    return "".join(f"{s};\n\n" for s in rendered)


def create_database(database: str, cluster: str | None) -> str:
    """``CREATE DATABASE``, on every node of ``cluster`` when given (``ON CLUSTER`` tables need it there)."""
    if "`" in database:
        raise ValueError(f"invalid database name {database!r}")
    return f"CREATE DATABASE IF NOT EXISTS `{database}`" + (f" ON CLUSTER {_check_cluster(cluster)}" if cluster else "")


def ledger_table(cluster: str | None) -> str:
    """The ``schema_migrations`` ledger.  On a cluster it is one replicated table with a full copy on every
    node (no ``{shard}`` in its path), so whichever node ``migrate`` reaches knows what was applied."""
    if not cluster:
        return f"CREATE TABLE IF NOT EXISTS schema_migrations {_LEDGER_COLUMNS} ENGINE = MergeTree ORDER BY version"
    _check_cluster(cluster)
    return (
        f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {cluster} {_LEDGER_COLUMNS} "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{shard}-{replica}') "
        "ORDER BY version"
    )


def local_name(table: str) -> str:
    """Name of the shard-local table behind the distributed table ``table``."""
    return table + LOCAL_SUFFIX


def split_sql(script: str) -> list[str]:
    """Statements of ``script`` without comments; ``;`` inside quotes or identifiers does not split."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in "'\"`":
            end = _quote_end(script, i)
            current.append(script[i:end])
            i = end
        elif script.startswith("--", i):
            newline = script.find("\n", i)
            i = n if newline < 0 else newline
        elif script.startswith("/*", i):
            close = script.find("*/", i + 2)
            if close < 0:
                raise ClusterDDLError("unterminated /* comment")
            i = close + 2
        elif c == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def _check_cluster(cluster: str) -> str:
    if not _CLUSTER.match(cluster):
        raise ValueError(f"cluster name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*), got {cluster!r}")
    return cluster


def _create_table(statement: str, cluster: str) -> list[str]:
    head = _CREATE.match(statement)
    assert head is not None
    table = head["name"].strip("`")
    ine = "IF NOT EXISTS " if head["ine"] else ""
    rest = statement[head.end() :]
    if not rest.startswith("("):
        raise ClusterDDLError(f"{table}: expected single-node `CREATE TABLE name (columns) ENGINE = ...`")
    columns_end = _paren_end(rest, 0)
    columns, rest = rest[:columns_end], rest[columns_end:]
    engine = _ENGINE.match(rest)
    if engine is None:
        raise ClusterDDLError(f"{table}: only MergeTree-family engines can be replicated")
    name = engine["engine"]
    if name.lower().startswith("replicated"):
        raise ClusterDDLError(f"{table}: write the single-node engine; cluster mode adds Replicated itself")
    if not _HAS_PROJECT_ID.search(columns):
        raise ClusterDDLError(f"{table}: no project_id column to shard by")
    rest = rest[engine.end() :]
    args = ""
    if rest.lstrip().startswith("("):
        rest = rest.lstrip()
        args_end = _paren_end(rest, 0)
        args, rest = rest[1 : args_end - 1].strip(), rest[args_end:]
    if rest and not rest[0].isspace():
        rest = " " + rest
    local = local_name(table)
    replicated_args = ", ".join(filter(None, [f"'{_ZK_PATH.format(table=local)}'", "'{replica}'", args]))
    return [
        f"CREATE TABLE {ine}{local} ON CLUSTER {cluster}\n{columns}\n"
        f"ENGINE = Replicated{name}({replicated_args}){rest}",
        f"CREATE TABLE {ine}{table} ON CLUSTER {cluster} AS {local}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {SHARD_KEY})",
    ]


def _alter_table(statement: str, cluster: str) -> list[str]:
    head = _ALTER.match(statement)
    assert head is not None
    table = head["name"].strip("`")
    commands_text = head["commands"]
    if _ON_CLUSTER.match(commands_text):
        raise ClusterDDLError(f"{table}: write single-node ALTER TABLE; cluster mode adds ON CLUSTER itself")
    commands = _split_top_level(commands_text)
    column_commands = [c for c in commands if _COLUMN_COMMAND.match(c)]
    local = f"ALTER TABLE {local_name(table)} ON CLUSTER {cluster} {', '.join(commands)}"
    if not column_commands:  # indexes, TTL, projections, settings: the data lives in the local table only
        return [local]
    verbs = {m["verb"].upper() for c in column_commands if (m := _COLUMN_COMMAND.match(c))}
    if "DROP" in verbs and len(verbs) > 1:
        raise ClusterDDLError(f"{table}: put DROP COLUMN in its own ALTER TABLE statement")
    distributed = f"ALTER TABLE {table} ON CLUSTER {cluster} {', '.join(column_commands)}"
    # The distributed table must never name a column its shards lack: add below it first, drop above it first.
    return [distributed, local] if verbs == {"DROP"} else [local, distributed]


def _quote_end(text: str, start: int) -> int:
    """Index just past the quoted string or identifier opening at ``start`` (backslash and doubled quotes)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise ClusterDDLError(f"unterminated {quote} quote")


def _paren_end(text: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at ``start``."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            i = _quote_end(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ClusterDDLError("unbalanced parentheses")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside parentheses and quotes."""
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            i = _quote_end(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]
