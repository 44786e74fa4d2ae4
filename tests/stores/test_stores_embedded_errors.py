"""The embedded store says what went wrong with its SQLite file: a lock held by another process
is not "damaged", and a file-size limit is not "cannot rollback"."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from atomate2_gmt.stores import EmbeddedStore, StoreConnectionError, StoreWriteError


def test_a_locked_file_is_reported_as_locked_not_damaged(tmp_path) -> None:
    path = tmp_path / "s.sqlite"
    EmbeddedStore(str(path), "c", key="k").connect()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-write
    try:
        store = EmbeddedStore(str(path), "other", key="k", timeout_s=0.2)
        with pytest.raises(StoreConnectionError) as info:
            store.connect()
        text = str(info.value)
        assert "database is locked" in text
        assert "another process holds a lock on the file" in text
        assert "damaged" not in text
        # a write that cannot get the lock says the same
        open_store = EmbeddedStore(str(path), "c", key="k", timeout_s=0.2)
        holder.execute("COMMIT")
        open_store.connect()
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreWriteError, match="another process holds a lock"):
            open_store.update([{"k": 1}])
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_file_size_limit_is_reported_as_such(tmp_path) -> None:
    """Under ``ulimit -f`` the write fails with SQLite's "disk I/O error"; the store reports it
    (and that nothing was kept) instead of the failed ROLLBACK that followed."""
    script = textwrap.dedent(
        f"""
        import resource, signal
        from atomate2_gmt.stores import EmbeddedStore, StoreWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        store = EmbeddedStore({str(tmp_path / "s.sqlite")!r}, "c", key="k")
        store.connect()
        store.update([{{"k": 0, "x": "small"}}])
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            store.update([{{"k": i, "x": "y" * 1000}} for i in range(1, 1000)])
        except StoreWriteError as exc:
            print("ERROR", exc)
        print("COUNT", store.count())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "ERROR" in out.stdout, out.stdout + out.stderr
    assert "cannot rollback" not in out.stdout
    assert "the disk is full or the file reached a size limit" in out.stdout
    assert "damaged" not in out.stdout
    assert "COUNT 1" in out.stdout  # the earlier document is intact, nothing half-written
