"""``atomate2-gmt mongo start|status|stop``: a real local SecantusDB server, used through the
printed ATOMATE2_GMT_MONGO_URI by the candidate store."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from maggma.stores import MongoStore
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.mongo_local import (
    LocalMongoError,
    find_server_executable,
    server_dir,
    status,
    stop_server,
)
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with no settings from the environment; its server is stopped after."""
    try:
        find_server_executable()
    except LocalMongoError:
        pytest.skip("secantusdb is not installed (pip install -e '.[mongo]')")
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_CANDIDATE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    folder = tmp_path / "proj"
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(folder))
    yield folder
    with contextlib.suppress(LocalMongoError):
        stop_server(folder)


def _mongo(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["mongo", *args])
    return result.exit_code, result.output


def test_start_write_read_stop(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _mongo("status")
    assert code == 3
    assert out.startswith("stopped: no local MongoDB server")

    port = _free_port()
    code, out = _mongo("start", "--port", str(port))
    assert code == 0, out
    match = re.search(r"export ATOMATE2_GMT_MONGO_URI=(\S+)", out)
    assert match is not None, out
    uri = match.group(1)
    assert uri == f"mongodb://127.0.0.1:{port}/"
    assert "for trying and tests only (no authentication); production uses a real MongoDB" in out
    assert str(server_dir(project) / "data") in out
    assert (server_dir(project) / "data").is_dir()

    code, out = _mongo("status")
    assert code == 0
    assert out.startswith(f"running: {uri}")

    # a real write and read through the settings' candidate store, with the printed URI
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", uri)
    store = candidate_store(GMTSettings())
    assert isinstance(store, MongoStore)
    store.connect()
    try:
        store.update([{"prediction_id": "sk1-test:v1", "formula": "AlP", "e_ij_max": 0.42}])
        doc = store.query_one({"prediction_id": "sk1-test:v1"})
    finally:
        store.close()
    assert doc is not None
    assert (doc["formula"], doc["e_ij_max"]) == ("AlP", 0.42)

    code, out = _mongo("stop")
    assert code == 0, out
    assert out.startswith(f"stopped the local MongoDB server at {uri}")
    code, out = _mongo("status")
    assert code == 3
    assert out.startswith("stopped:")
    assert status(project) is None

    # the data stay in the project folder: a new server reads the document back
    code, out = _mongo("start", "--port", str(port))
    assert code == 0, out
    store = candidate_store(GMTSettings())
    store.connect()
    try:
        assert store.query_one({"prediction_id": "sk1-test:v1"})["formula"] == "AlP"
    finally:
        store.close()


def test_start_twice_and_stop_twice_are_refused(project: Path) -> None:
    port = _free_port()
    assert _mongo("start", "--port", str(port))[0] == 0
    code, out = _mongo("start", "--port", str(_free_port()))
    assert code == 1
    assert f"already runs for this project at mongodb://127.0.0.1:{port}/" in out
    assert _mongo("stop")[0] == 0
    code, out = _mongo("stop")
    assert code == 1
    assert "no local MongoDB server runs for this project" in out


def test_port_in_use_is_refused(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, out = _mongo("start", "--port", str(port))
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in out
    assert status(project) is None


def test_dead_server_reads_as_stopped(project: Path) -> None:
    """A server that died (killed) is reported stopped, and stop says it does not run."""
    assert _mongo("start", "--port", str(_free_port()))[0] == 0
    info = status(project)
    assert info is not None
    assert info.running
    os.kill(info.pid, signal.SIGKILL)
    for _ in range(50):
        current = status(project)
        if current is not None and not current.running:
            break
        time.sleep(0.1)
    code, out = _mongo("status")
    assert code == 3
    assert f"the local server recorded at {info.uri} (pid {info.pid}) does not run" in out
    code, out = _mongo("stop")
    assert code == 1
    assert "no local MongoDB server runs" in out
