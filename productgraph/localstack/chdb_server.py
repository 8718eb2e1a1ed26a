"""A dev-only ClickHouse HTTP endpoint backed by chDB (embedded ClickHouse).  Never use it in production.

One process owns one chDB data directory and serves the part of ClickHouse's HTTP interface that
clickhouse-connect uses, so every local service (each its own OS process) reaches the same data with an
unmodified ``clickhouse_connect.get_client(host=..., port=..., compress=False)``:

* ``GET|POST /`` with SQL in the ``query`` parameter and/or the body (form-data fields too), ``database``,
  ``param_<name>`` values for ``{name:Type}``, ``default_format``, ``query_id``; other URL parameters that
  name a ClickHouse setting are applied to that query, unknown ones are ignored.
* ``INSERT ... FORMAT <fmt>`` followed by data (URL or body) is streamed into chDB's streaming insert.
* Errors are HTTP 500 with ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body.
* ``/ping`` answers ``Ok.``.

Every request runs on its own chDB connection (cheap: they share the engine, which runs queries in parallel),
so per-request settings and the default database never leak between requests.  Consequence: HTTP sessions
are not emulated; ``SET``, ``USE`` and temporary tables last for one request only.  No authentication.

Run: ``python -m productgraph.localstack.chdb_server --path DATA_DIR --host 127.0.0.1 --port 8123``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("productgraph.chdb_server")

CHUNK = 1 << 20
MAX_INSERT_HEAD = 1 << 20
# HTTP interface parameters (some are also chDB setting names) and settings that only steer ClickHouse's
# HTTP transport: accepted, never forwarded to chDB as settings.
TRANSPORT_SETTINGS = frozenset(
    {"query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check"}
    | {"user", "password", "quota_key", "compress", "decompress", "buffer_size", "wait_end_of_query"}
    | {"client_protocol_version", "send_progress_in_http_headers", "http_headers_progress_interval_ms"}
    | {
        "enable_http_compression",
        "http_zlib_compression_level",
        "cancel_http_readonly_queries_on_client_close",
    }
    | {"http_response_buffer_size", "http_wait_end_of_query"}
)
_COMMENTS = rb"(?:\s+|--[^\n]*\n|/\*.*?\*/)*"
INSERT_RE = re.compile(_COMMENTS + rb"INSERT\b", re.I | re.S)
TOKEN_RE = re.compile(rb"""\s+|--[^\n]*|/\*.*?\*/|`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\w+|.""", re.S)
# ClickHouse's rule: the data starts after the format name, blanks, and at most one newline.
FORMAT_NAME_RE = re.compile(rb"\s+([A-Za-z_]\w*)[ \t\f]*(?:\r?\n)?")
RESULT_RE = re.compile(_COMMENTS + rb"\(*\s*(?:SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b", re.I | re.S)
TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z_]\w*)\s*;?\s*$", re.I)
CODE_RE = re.compile(r"Code: (\d+)\.")
CONTENT_TYPES = {
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "Parquet": "application/octet-stream",
    "JSON": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}


class QueryError(Exception):
    """A failure reported to the client as ClickHouse does: HTTP 500, ``Code: N. DB::Exception: ...``."""

    def __init__(self, message: str, code: int | None = None) -> None:
        text = message[message.find("Code: ") :] if "Code: " in message else message
        found = CODE_RE.search(text)
        self.code = code if code is not None else int(found.group(1)) if found else 1001
        if not text.startswith("Code: "):
            text = f"Code: {self.code}. DB::Exception: {text}"
        super().__init__(text.strip())


class Body:
    """The request body as a stream: Content-Length or chunked, optionally gzip/deflate encoded."""

    def __init__(self, rfile: io.BufferedIOBase, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._left = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self._eof = not self._chunked and self._left == 0
        encoding = headers.get("Content-Encoding", "identity").lower()
        self._inflate: Any = None
        if encoding in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
        elif encoding not in ("", "identity"):
            raise QueryError(f"Content-Encoding {encoding} is not supported here: use compress=False", 48)

    def _raw(self, size: int) -> bytes:
        if self._eof:
            return b""
        if self._chunked and self._left == 0:
            self._left = int(self._rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if self._left == 0:
                while self._rfile.readline(1024).strip():  # trailers, then the empty line
                    pass
                self._eof = True
                return b""
        data = self._rfile.read(min(size, self._left))
        self._left -= len(data)
        if not data:
            self._eof = True
        elif self._chunked and self._left == 0:
            self._rfile.readline(16)
        elif not self._chunked and self._left == 0:
            self._eof = True
        return data

    def read(self, size: int = CHUNK) -> bytes:
        while True:
            raw = self._raw(size)
            if self._inflate is None:
                return raw
            out: bytes = self._inflate.decompress(raw) if raw else self._inflate.flush()
            if out or not raw:
                return out

    def read_all(self) -> bytes:
        return b"".join(iter(self.read, b""))

    def drain(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while self._raw(CHUNK):
                pass


def insert_format(sql: bytes) -> tuple[int, re.Match[bytes]] | None:
    """Where ``FORMAT name`` of an ``INSERT`` starts, and its match (data follows); None for VALUES/SELECT."""
    pos = 0
    while (token := TOKEN_RE.match(sql, pos)) is not None:
        word = token.group().upper()
        if word in (b"VALUES", b"SELECT", b"WITH"):
            return None
        if word == b"FORMAT":
            name = FORMAT_NAME_RE.match(sql, token.end())
            return None if name is None else (token.start(), name)
        pos = token.end()
    return None


def chdb_connect(path: str) -> Any:
    """A chDB connection to the engine at ``path`` (chDB is imported lazily: after the timezone is set)."""
    import chdb

    connect: Callable[[str], Any] = chdb.connect
    return connect(path)


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_form(content_type: str, data: bytes) -> dict[str, str]:
    """Fields of a multipart/form-data body (clickhouse-connect sends long parameters this way)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        if part.get_filename():
            raise QueryError("external data (file fields) is not supported by the dev chDB server", 48)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode()
    return fields


class ChdbHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], path: str, anchor: Any) -> None:
        super().__init__(address, Handler)
        self.path = path
        self.anchor = anchor  # keeps the engine open between requests; closed last, which flushes it
        info = anchor.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split()
        self.version, self.timezone = info[0], info[1]
        names = anchor.query("SELECT name FROM system.settings", "TabSeparated").bytes().decode().split()
        self.known_settings = frozenset(names) - TRANSPORT_SETTINGS
        self.display_name = socket.gethostname()
        self.stopping = False
        self.busy = 0
        self.idle = threading.Condition()

    @contextlib.contextmanager
    def connection(self, database: str, settings: dict[str, str]) -> Iterator[Any]:
        """A fresh chDB connection with this request's settings and default database applied."""
        conn = chdb_connect(self.path)
        try:
            if settings:
                conn.query("SET " + ", ".join(f"{k} = {quote(v)}" for k, v in settings.items()), "TSV")
            if database and database != "default":
                try:
                    conn.query(f"USE `{database.replace('`', '``')}`", "TSV")
                except RuntimeError as exc:  # a database created later, e.g. by this very request
                    if "(UNKNOWN_DATABASE)" not in str(exc):
                        raise
            yield conn
        finally:
            conn.close()

    def wait_idle(self, timeout: float) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0, timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms per query on a kept-alive connection).  TCP_NODELAY, as ClickHouse itself sets.
    disable_nagle_algorithm = True
    server: ChdbHTTPServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is logged by handle_request, with its duration

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        start, url = time.monotonic(), urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        status, note = 200, params.get("query", "")[:100].replace("\n", " ")
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and self.command == "GET" and not params):
            self.reply(200, b"Ok.\n", {})
        elif url.path != "/" or self.server.stopping:
            status = 404 if url.path != "/" else 503
            self.reply(status, b"Not found\n" if status == 404 else b"Shutting down\n", {}, close=True)
        else:
            with self.server.idle:
                self.server.busy += 1
            try:
                error = self.run_query(params)
            finally:
                with self.server.idle:
                    self.server.busy -= 1
                    self.server.idle.notify_all()
            if error is not None:
                status, note = 500, f"{note} -> {error}"
        log.debug("%s %s %s %d %.1fms %s", self.client_address[0], self.command, url.path, status, _ms(start), note)

    def run_query(self, params: dict[str, str]) -> QueryError | None:
        """Execute one query request and reply; a failure is replied as ClickHouse does, and returned."""
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            body = Body(self.rfile, self.headers)
        except QueryError as unusable:  # an unusable body: answer without reading it, then hang up
            self.reply(500, f"{unusable}\n".encode(), self.error_headers(unusable, query_id), close=True)
            return unusable
        try:
            self.execute(params, body, query_id)
            return None
        except Exception as exc:
            error = exc if isinstance(exc, QueryError) else QueryError(str(exc))
            body.drain()  # the client is still sending: read it all so that it reads the answer
            self.reply(500, f"{error}\n".encode(), self.error_headers(error, query_id))
            return error

    def execute(self, params: dict[str, str], body: Body, query_id: str) -> None:
        head, content_type = b"", self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            fields = parse_form(content_type, body.read_all())
            params = {**params, **fields}
        else:
            head = body.read()
        sql = params.get("query", "").encode()
        if sql and head:
            sql += b"\n"
        sql += head
        database = params.get("database") or self.headers.get("X-ClickHouse-Database") or ""
        settings = {k: v for k, v in params.items() if k in self.server.known_settings}
        if INSERT_RE.match(sql):
            found = insert_format(sql)
            while (found is None or found[1].end() == len(sql)) and len(sql) < MAX_INSERT_HEAD:
                more = body.read()
                if not more:
                    break
                sql += more
                found = insert_format(sql)
            if found is not None:
                with self.server.connection(database, settings) as conn:
                    return self.insert(sql, found, body, conn, query_id)
        sql += body.read_all()
        if not sql.strip():
            raise QueryError("Empty query", 62)
        text = sql.decode()
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        trailing = TRAILING_FORMAT_RE.search(text)
        fmt = trailing.group(1) if trailing else params.get("default_format") or "TabSeparated"
        with self.server.connection(database, settings) as conn:
            result = conn.query(text, fmt, params=query_params)
            buffer = result.get_memview() if result.size() else None
            view = buffer.view() if buffer is not None else memoryview(b"")
            summary = {
                "read_rows": result.rows_read(),
                "read_bytes": result.bytes_read(),
                "written_rows": result.rows_written(),
                "written_bytes": result.bytes_written(),
                "result_bytes": len(view),
                "elapsed_ns": int(result.elapsed() * 1e9),
            }
            headers = self.common_headers(query_id, summary)
            if RESULT_RE.match(sql):
                headers["X-ClickHouse-Format"] = fmt
                headers["Content-Type"] = CONTENT_TYPES.get(fmt, "text/plain; charset=UTF-8")
            self.reply(200, view, headers)

    def insert(self, sql: bytes, found: tuple[int, re.Match[bytes]], body: Body, conn: Any, qid: str) -> None:
        """Stream ``INSERT ... FORMAT fmt`` data into chDB chunk by chunk."""
        statement, fmt = sql[: found[0]].decode().rstrip(), found[1].group(1).decode()
        data = sql[found[1].end() :]
        inserter = conn.send_insert(statement, fmt)
        try:
            while data:
                inserter.append(data)
                data = body.read()
            result = inserter.finish()
        finally:
            inserter.cancel()  # no-op once finished
        written = {"written_rows": result.rows_written, "written_bytes": result.bytes_written}
        summary = {**written, "elapsed_ns": int(result.elapsed * 1e9)}
        self.reply(200, b"", self.common_headers(qid, summary))

    def common_headers(self, query_id: str, summary: dict[str, int]) -> dict[str, str]:
        return {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.timezone,
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
            "X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in summary.items()}),
        }

    def error_headers(self, error: QueryError, query_id: str) -> dict[str, str]:
        return {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
        }

    def reply(self, status: int, payload: bytes | memoryview, headers: dict[str, str], close: bool = False) -> None:
        try:
            self.send_response(status)
            headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for offset in range(0, len(payload), CHUNK):
                self.wfile.write(payload[offset : offset + CHUNK])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", required=True, help="chDB data directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--timezone", default="UTC", help="server timezone, as ClickHouse's <timezone>")
    parser.add_argument("--log-level", default=os.environ.get("PG_CHDB_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ["TZ"] = args.timezone  # chDB takes the server timezone from the process
    time.tzset()
    start = time.monotonic()
    path = os.path.abspath(args.path)
    os.makedirs(path, exist_ok=True)
    anchor = chdb_connect(path)
    try:
        server = ChdbHTTPServer((args.host, args.port), path, anchor)
    except BaseException:
        anchor.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    address = f"http://{args.host}:{args.port}"
    log.info("chDB %s on %s serving %s, ready in %.0fms", server.version, path, address, _ms(start))
    while not stop.wait(0.5):
        pass
    log.info("stopping")
    server.stopping = True
    server.shutdown()
    server.server_close()
    server.wait_idle(timeout=10)
    anchor.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
