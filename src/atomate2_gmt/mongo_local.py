"""A local MongoDB wire-protocol server (SecantusDB) for trying the MongoDB stores and for tests.

``start`` runs SecantusDB's ``secantusd-py`` (the ``mongo`` extra) detached, on 127.0.0.1, with
its WiredTiger files in ``PROJECT_DIR/mongo/data``; ``PROJECT_DIR/mongo/server.json`` records
its pid, port and URI, and ``PROJECT_DIR/mongo/server.log`` holds its log. Point the stores at it
with ``ATOMATE2_GMT_MONGO_URI=<uri>``. It has no authentication and listens on loopback only:
production uses a real MongoDB server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "DEFAULT_PORT",
    "HOST",
    "LocalMongoError",
    "LocalMongoStatus",
    "find_server_executable",
    "server_dir",
    "start_server",
    "status",
    "stop_server",
]

HOST = "127.0.0.1"
DEFAULT_PORT = 27018
"""Default port: next to MongoDB's 27017, so that a real ``mongod`` there is left alone."""

_EXECUTABLE = "secantusd-py"


class LocalMongoError(RuntimeError):
    """The local server cannot be started or stopped (already running, not running, ...)."""


@dataclass(frozen=True)
class LocalMongoStatus:
    """What ``server.json`` records about the local server, and whether it runs now."""

    pid: int
    host: str
    port: int
    storage: str
    started: str
    running: bool

    @property
    def uri(self) -> str:
        """The connection string for ``ATOMATE2_GMT_MONGO_URI``."""
        return f"mongodb://{self.host}:{self.port}/"


def server_dir(project_dir: str | Path) -> Path:
    """``PROJECT_DIR/mongo``: data, pid file and log of the local server (absolute path)."""
    return Path(project_dir).expanduser().resolve() / "mongo"


def find_server_executable() -> str:
    """Path of ``secantusd-py`` (on PATH or next to this Python), or a clear error."""
    exe = shutil.which(_EXECUTABLE) or str(Path(sys.executable).parent / _EXECUTABLE)
    if not Path(exe).exists():
        raise LocalMongoError(
            f"{_EXECUTABLE} not found: install the mongo extra (pip install -e '.[mongo]' in the "
            "clone, or pip install 'atomate2_gmt-<version>-py3-none-any.whl[mongo]')"
        )
    return exe


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, or a reaped one, is not)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_server_process(pid: int) -> bool:
    """Whether ``pid`` runs the server (guards against a recycled pid); True where /proc is
    missing (not Linux)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return _pid_alive(pid)
    with contextlib.suppress(OSError):
        return _EXECUTABLE.encode() in cmdline.read_bytes() and _pid_alive(pid)
    return False


def _port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _read_record(project_dir: str | Path) -> dict[str, object] | None:
    path = server_dir(project_dir) / "server.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def status(project_dir: str | Path) -> LocalMongoStatus | None:
    """The local server of ``project_dir``: None if it was never started (or was stopped),
    else its record with ``running`` = its process lives and its port accepts connections."""
    record = _read_record(project_dir)
    if record is None:
        return None
    try:
        pid, port = int(str(record["pid"])), int(str(record["port"]))
        host, storage, started = str(record["host"]), str(record["storage"]), str(record["started"])
    except (KeyError, ValueError):
        return None
    running = _is_server_process(pid) and _port_open(host, port)
    return LocalMongoStatus(pid, host, port, storage, started, running)


def _log_tail(path: Path, n: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def start_server(
    project_dir: str | Path, port: int = DEFAULT_PORT, timeout_s: float = 30.0
) -> LocalMongoStatus:
    """Start the local server of ``project_dir`` on ``127.0.0.1:port``, detached (it outlives
    this process), and wait until it accepts connections (``timeout_s`` seconds at most)."""
    if not 1 <= port <= 65535:
        raise LocalMongoError(f"port {port} is not in 1..65535")
    current = status(project_dir)
    if current is not None and current.running:
        raise LocalMongoError(
            f"a local MongoDB server already runs for this project at {current.uri} "
            f"(pid {current.pid}); stop it with `atomate2-gmt mongo stop`"
        )
    if _port_open(HOST, port):
        raise LocalMongoError(
            f"port {port} on {HOST} is already in use by another program; choose another "
            "with --port"
        )
    exe = find_server_executable()
    folder = server_dir(project_dir)
    storage = folder / "data"
    storage.mkdir(parents=True, exist_ok=True)
    config = folder / "secantusd.toml"  # an explicit (empty) config: no auto-discovered one
    if not config.exists():
        config.write_text("# settings of the local server; command-line flags override them\n")
    log = folder / "server.log"
    args = [exe, "--config", str(config), "--host", HOST, "--port", str(port),
            "--storage-path", str(storage), "--standalone", "--log-level", "WARNING"]  # fmt: skip
    # sh starts the server in the background and exits: the server is nobody's child here, so
    # it outlives this process and leaves no zombie behind.
    launcher = subprocess.run(
        ["/bin/sh", "-c", '"$@" >>"$LOG" 2>&1 </dev/null & echo $!', "sh", *args],
        env={**os.environ, "LOG": str(log)},
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    pid = int(launcher.stdout.strip())
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"pid": pid, "host": HOST, "port": port, "storage": str(storage), "started": started}
    (folder / "server.json").write_text(json.dumps(record, indent=2) + "\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            (folder / "server.json").unlink(missing_ok=True)
            raise LocalMongoError(f"{_EXECUTABLE} exited at start; its log:\n{_log_tail(log)}")
        if _port_open(HOST, port):
            return LocalMongoStatus(**record, running=True)  # type: ignore[arg-type]
        time.sleep(0.1)
    _terminate(pid, timeout_s=10.0)
    (folder / "server.json").unlink(missing_ok=True)
    raise LocalMongoError(
        f"{_EXECUTABLE} did not accept connections on {HOST}:{port} within {timeout_s:.0f} s; "
        f"its log:\n{_log_tail(log)}"
    )


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM ``pid`` (the server flushes its data), SIGKILL after ``timeout_s`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_server(project_dir: str | Path, timeout_s: float = 15.0) -> LocalMongoStatus:
    """Stop the local server of ``project_dir`` (its data stay); returns what was stopped."""
    current = status(project_dir)
    record_path = server_dir(project_dir) / "server.json"
    if current is None or not _is_server_process(current.pid):
        record_path.unlink(missing_ok=True)  # a stale record of a server that died
        raise LocalMongoError(
            "no local MongoDB server runs for this project (start one with "
            "`atomate2-gmt mongo start`)"
        )
    _terminate(current.pid, timeout_s)
    record_path.unlink(missing_ok=True)
    return LocalMongoStatus(**{**asdict(current), "running": False})
