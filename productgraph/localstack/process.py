"""A started server process and the helpers every launcher shares (free ports, readiness waits)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerProcess", "free_port", "wait_for_port", "wait_until"]


@dataclass
class ServerProcess:
    """One running server.  ``url`` is what clients connect to; ``stop`` ends the process group."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the process group, wait, then SIGKILL what is left.  Safe to call twice."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, self.stop_signal)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: ServerProcess | None = None) -> None:
    """Poll ``check`` until true; fail early if ``proc`` died, with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}{_log_tail(proc)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s{_log_tail(proc)}")


def wait_for_port(host: str, port: int, timeout: float, what: str, proc: ServerProcess | None = None) -> None:
    wait_until(lambda: port_open(host, port), timeout, what, proc)


def _log_tail(proc: ServerProcess | None, lines: int = 20) -> str:
    if proc is None or proc.log_path is None or not proc.log_path.exists():
        return ""
    tail = proc.log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(proc.log_path) + " ---\n" + "\n".join(tail)


def spawn(name: str, args: list[str], log_path: Path, url: str, **popen_kwargs: object) -> ServerProcess:
    """Start ``args`` in its own session (so its whole group can be signalled), output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    popen = subprocess.Popen(  # type: ignore[call-overload]
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **popen_kwargs
    )
    log.close()
    return ServerProcess(name=name, url=url, popen=popen, log_path=log_path)
