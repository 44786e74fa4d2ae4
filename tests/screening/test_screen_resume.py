"""A screening run of many chunks: done markers (a re-run reads no finished chunk), job outputs
that do not grow with the inputs, and a real ``atomate2-gmt screen`` killed with SIGKILL and run
again (every crystal stored once, only the unfinished chunks predicted again)."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.schemas.run import PredictionRunDoc
from tests.screening.conftest import small_model

ROOT = Path(__file__).resolve().parents[2]


def _distinct_crystals(structures, n: int) -> list[dict]:
    """``n`` distinct crystals: the structures under isotropic strains of 0, ±0.3 %, ±0.6 %..."""
    out = []
    for i in range(n):
        s = structures[i % len(structures)].copy()
        copy = i // len(structures)
        eps = 0.003 * ((copy + 1) // 2) * (1 if copy % 2 else -1)
        s.scale_lattice(s.volume * (1 + eps) ** 3)
        out.append({"material_id": f"t-{i}", "structure": s.as_dict()})
    return out


def _write_collection(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt") as fh:
        json.dump(records, fh)
    return path


@pytest.fixture
def small_models(tmp_path, monkeypatch):
    models = {}
    for task in ("dielectric", "piezo"):
        models[task] = str(tmp_path / f"{task}.pt")
        save_checkpoint(models[task], small_model(task), metadata={"version": "resume-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps(models))
    return models


def _store_docs(project: Path) -> list[dict]:
    from atomate2_gmt.settings import resolve_settings
    from atomate2_gmt.stores import candidate_store

    store = candidate_store(resolve_settings(project))
    store.connect()
    try:
        return list(store.query({}, properties=["source", "structure_key", "state"]))
    finally:
        store.close()


def _open_files_under(folder: Path) -> list[str]:
    """The files under ``folder`` this process holds open (Linux: ``/proc/self/fd``)."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while listed (the listing's own descriptor)
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_chunk_jobs_close_their_store(tmp_path, project, small_models, good_structures):
    """Each chunk job closes the store connection it opened: a screen of N chunks does not end
    holding N SQLite connections (each with its page cache and a file descriptor)."""
    from atomate2_gmt.cli.screen import run_screening

    source = _write_collection(tmp_path / "c.json.gz", _distinct_crystals(good_structures, 24))
    before = _open_files_under(project)
    out = run_screening(source, ("dielectric",), chunk_size=4, top=3)
    assert out["n_documents"] == 24
    assert len(list((project / "sources" / "done").glob("chunk-*.json"))) == 6
    assert _open_files_under(project) == before == []


def test_rerun_reads_no_finished_chunk_and_outputs_hold_no_keys(
    tmp_path, project, small_models, good_structures
):
    from atomate2_gmt.cli.screen import run_screening
    from atomate2_gmt.jobs.rank import distinct_documents

    n = 60
    source = _write_collection(tmp_path / "c.json.gz", _distinct_crystals(good_structures, n))
    first = run_screening(source, ("dielectric", "piezo"), chunk_size=20, top=3)
    assert first["n"] == n
    assert first["n_documents"] == n
    assert first["n_skipped"] == 0
    markers = sorted((project / "sources" / "done").glob("chunk-*.json"))
    assert len(markers) == 3  # one per chunk of 20
    stamps = {m: m.stat().st_mtime_ns for m in markers}
    for m in markers:  # the marker holds the chunk's keys; the job output leaves them out
        doc = PredictionRunDoc.model_validate_json(m.read_text())
        assert len(set(doc.prediction_ids)) == 20
        assert doc.ids_file is None
    again = run_screening(source, ("dielectric", "piezo"), chunk_size=20, top=3)
    assert again["n"] == n
    assert again["n_skipped"] == n
    assert again["n_documents"] == n
    assert {m: m.stat().st_mtime_ns for m in markers} == stamps  # no chunk was run again
    assert again["ranking"] == first["ranking"]

    # a marker is not trusted without its documents: the chunk whose documents are gone is
    # predicted again, the others are not
    from atomate2_gmt.settings import resolve_settings
    from atomate2_gmt.stores import candidate_store

    lost = PredictionRunDoc.model_validate_json(markers[1].read_text()).prediction_ids[:5]
    store = candidate_store(resolve_settings(project))
    store.connect()
    store.remove_docs({"prediction_id": {"$in": lost}})
    store.close()
    third = run_screening(source, ("dielectric", "piezo"), chunk_size=20, top=3)
    assert third["n_skipped"] == n - 5  # the 15 stored ones of that chunk skipped by key
    assert third["n_documents"] == n
    assert markers[1].stat().st_mtime_ns != stamps[markers[1]]
    assert markers[0].stat().st_mtime_ns == stamps[markers[0]]
    docs = _store_docs(project)
    assert len(docs) == n
    assert len({d["structure_key"] for d in docs}) == n

    summaries = [
        PredictionRunDoc.model_validate_json(m.read_text()).model_copy(
            update={"prediction_ids": [], "ids_file": str(m)}
        )
        for m in markers
    ]
    assert distinct_documents(summaries) == (n, 0)
    assert distinct_documents([*summaries, summaries[0]]) == (n, 0)  # counted once


def _screen(source: Path, project: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "atomate2_gmt.cli.app", "screen", str(source)]
    cmd += ["--chunk-size", str(CHUNK), "--tasks", "dielectric,piezo"]
    cmd += ["--project-dir", str(project)]
    return subprocess.Popen(
        cmd,
        stdout=log.with_suffix(".out").open("w"),
        stderr=log.open("w"),
        env=env,
        start_new_session=True,  # its own process group: the kill reaches every worker
    )


CHUNK = 20
DONE = re.compile(r"screening: (\d+)/(\d+) structures")


def test_screen_killed_with_sigkill_resumes_without_duplicates(
    tmp_path, project, small_models, good_structures
):
    n = 160
    source = _write_collection(tmp_path / "c.json.gz", _distinct_crystals(good_structures, n))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    log = tmp_path / "first.log"
    proc = _screen(source, project, log, env)
    deadline = time.monotonic() + 300
    done = 0
    while proc.poll() is None and time.monotonic() < deadline:
        found = DONE.findall(log.read_text())
        done = int(found[-1][0]) if found else 0
        if done >= n // 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + log.read_text()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done < n
    stored = _store_docs(project)
    assert 0 < len(stored) < n
    n_missing = n - sum(d["state"] == "successful" for d in stored)
    markers = {m: m.stat().st_mtime_ns for m in (project / "sources" / "done").glob("chunk-*.json")}
    assert 0 < len(markers) < n // CHUNK

    again = _screen(source, project, tmp_path / "again.log", env)
    assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()
    out = (tmp_path / "again.out").read_text()
    m = re.search(r"screened (\d+) candidates: (\d+) predicted \((\d+) of them already", out)
    assert m is not None, out
    assert int(m[1]) == n
    assert int(m[2]) == n
    predicted_again = n - int(m[3])
    assert 0 < predicted_again <= n_missing  # only what was not stored at the kill
    docs = _store_docs(project)
    assert len(docs) == n  # every crystal exactly once
    assert len({d["structure_key"] for d in docs}) == n
    assert sorted(d["source"] for d in docs) == sorted(f"t-{i}" for i in range(n))
    assert all(d["state"] == "successful" for d in docs)
    for marker, stamp in markers.items():  # the chunks finished before the kill: not redone
        assert marker.stat().st_mtime_ns == stamp
    assert len(list((project / "sources" / "done").glob("chunk-*.json"))) == n // CHUNK
    lines = DONE.findall((tmp_path / "again.log").read_text())
    assert [int(d) for d, _ in lines] == sorted(int(d) for d, _ in lines)
    assert lines[-1] == (str(n), str(n))


def test_each_chunk_is_read_while_the_one_before_is_predicted(
    tmp_path, project, small_models, good_structures, monkeypatch
):
    """``atomate2-gmt screen`` (``run_locally``, one process): a chunk job queues the next
    chunk's records on the reading worker before it ends, so the next job's models start on
    records read already; no chunk is read twice. A chunk whose done marker is there is not
    read ahead."""
    from atomate2_gmt import engine
    from atomate2_gmt.cli.screen import run_screening

    events: list[tuple[str, int]] = []
    read, run = engine._read, engine._predict_documents

    def reading(pool, parts, settings):
        events.append(("read", parts[0][1][0].index))
        return read(pool, parts, settings)

    def running(settings, candidates, *args, **kwargs):
        first = candidates[0].first_index
        events.append(("start", first))
        try:
            return run(settings, candidates, *args, **kwargs)
        finally:
            events.append(("end", first))

    monkeypatch.setattr(engine, "_read", reading)
    monkeypatch.setattr(engine, "_predict_documents", running)
    source = _write_collection(tmp_path / "c.json.gz", _distinct_crystals(good_structures, 100))
    try:
        out = run_screening(source, ("dielectric",), chunk_size=40, top=3)
        assert out["n_documents"] == 100
        # chunks of 40, 40, 20; a chunk of one part (the last: 20 < 32 + 1) is read in-process
        assert events == [
            ("start", 0),
            ("read", 0),
            ("read", 40),  # chunk 1, queued during chunk 0
            ("end", 0),
            ("start", 40),
            ("end", 40),
            ("start", 80),
            ("end", 80),
        ]
        # chunk 0 runs again (its marker gone); chunks 1 and 2 finished: not read ahead
        first_marker = min(
            (project / "sources" / "done").glob("chunk-*.json"), key=lambda m: m.stat().st_mtime_ns
        )
        first_marker.unlink()
        events.clear()
        again = run_screening(source, ("dielectric",), chunk_size=40, top=3)
        assert again["n_skipped"] == 100
        assert events == [("start", 0), ("read", 0), ("end", 0)]
        assert engine._AHEAD["key"] is None
    finally:
        engine.close_reader_pool()
