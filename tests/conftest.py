"""Project-wide fixtures: a real MongoDB wire-protocol server (SecantusDB) for store tests.

``mongo_server`` (session scope) is shared by all tests: do not stop it. Tests that stop and
restart a server (mid-write failures) take their own from ``mongo_server_factory``.
The server is the ``secantusd-py`` daemon of the ``secantusdb`` package (dev/mongo extras), run
as a subprocess on a free local port with its WiredTiger files in a temporary folder, so that
stopping it is a real server going away and restarting it reopens the same data.

With ``ATOMATE2_GMT_TEST_MONGOD`` set to the path of a ``mongod`` executable the same fixtures
run a real MongoDB server instead (docs/benchmarks.md says where one comes from), so the store
tests can be run against the production server: ``ATOMATE2_GMT_TEST_MONGOD=/opt/mongod/bin/mongod
pytest tests/stores``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the server if the test process dies (no orphan servers in CI)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class MongoServer:
    """A SecantusDB (or ``mongod``) server subprocess with ``start``/``stop``/``kill``/``restart``.

    ``host``, ``port`` and ``uri`` stay the same across restarts; the data folder persists.
    """

    def __init__(self, storage: Path, port: int | None = None) -> None:
        mongod = os.environ.get("ATOMATE2_GMT_TEST_MONGOD")
        if mongod:  # a path, or a name on PATH
            mongod = shutil.which(mongod) or mongod
        exe = (
            mongod
            or shutil.which("secantusd-py")
            or str(Path(sys.executable).parent / "secantusd-py")
        )
        if not Path(exe).exists():
            if mongod:
                raise FileNotFoundError(f"ATOMATE2_GMT_TEST_MONGOD: {mongod} does not exist")
            pytest.skip("secantusdb is not installed (pip install -e '.[dev]')")
        self.executable = exe
        self.real_mongod = bool(mongod)
        self.storage = storage
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        if self.running:
            return
        if self.real_mongod:
            self.storage.mkdir(parents=True, exist_ok=True)
            args = ["--bind_ip", self.host, "--port", str(self.port), "--dbpath", str(self.storage)]
            args += ["--nounixsocket", "--quiet", "--logappend"]
            args += ["--logpath", str(self.storage / "mongod.log")]
        else:
            args = ["--host", self.host, "--port", str(self.port)]
            args += ["--storage-path", str(self.storage), "--standalone", "--log-level", "WARNING"]
        self._proc = subprocess.Popen(
            [self.executable, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                name = Path(self.executable).name
                raise RuntimeError(f"{name} exited with code {self._proc.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        name = Path(self.executable).name
        raise RuntimeError(f"{name} did not listen on port {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), as an administrator stopping the server would."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Abrupt death (SIGKILL), as a crash would be."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A running MongoDB-compatible server for the whole session (do not stop it)."""
    server = MongoServer(tmp_path_factory.mktemp("secantus-session"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mongo_server_factory(tmp_path: Path) -> Iterator[Callable[[], MongoServer]]:
    """Make private servers (started) that a test may stop, kill and restart."""
    servers: list[MongoServer] = []

    def make() -> MongoServer:
        server = MongoServer(tmp_path / f"secantus-{len(servers)}")
        server.start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """jobflow's ``run_locally(log=True)`` adds a stdout handler to the root logger; remove what
    a test added so that later CLI tests see only their own output."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
