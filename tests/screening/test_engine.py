"""The inference engine without jobflow: plain EngineSettings + inputs → the documents the
prediction Maker makes; checkpoint specs loaded by registry.loading; clear errors."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.engine import EngineSettings, predict_documents
from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.jobs.predict import predict_documents as maker_documents
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.ensemble import ensemble_info
from atomate2_gmt.registry.loading import load_members
from tests.screening.conftest import small_model

#: Fields that record when or how long, not what was predicted.
VOLATILE = {"last_updated", "timings", "time_s"}


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in VOLATILE}
    out["predictions"] = {
        task: {k: v for k, v in pred.items() if k not in VOLATILE}
        for task, pred in doc["predictions"].items()
    }
    return out


@pytest.fixture(scope="module")
def shipped() -> list[Any]:
    """Five structures of the shipped MP piezo data."""
    return [r.structure for r in load_mp("piezo").records[:5]]


@pytest.fixture
def checkpoints(tmp_path: Path) -> dict[str, str]:
    """Small dielectric and piezo models saved as checkpoint files (task → path)."""
    out = {}
    for task in ("dielectric", "piezo"):
        path = tmp_path / f"{task}.pt"
        save_checkpoint(path, small_model(task), metadata={"version": f"small-{task}"})
        out[task] = str(path)
    return out


@pytest.fixture
def preloaded(checkpoints: dict[str, str]) -> Any:
    """A model loader for predict_documents(load=...) whose models are loaded (and validated)
    once, before the test counts what a run does."""
    loaded = {(t, (p,)): load_members(t, (p,)) for t, p in checkpoints.items()}

    def load(task: str, specs: tuple[str, ...]) -> Any:
        return loaded[task, specs]

    return load


def test_engine_documents_equal_the_makers(shipped, checkpoints, tmp_path) -> None:
    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif")
    inputs = [*shipped, str(broken)]
    settings = EngineSettings(
        tasks=("dielectric", "piezo"),
        models={task: (path,) for task, path in checkpoints.items()},
        device="cpu",
        batch_size=4,
        workers=0,
        model_workers=0,
    )
    docs = predict_documents(settings, inputs).documents
    maker = GMTPredictMaker(
        tasks=("dielectric", "piezo"), models=checkpoints, device="cpu", batch_size=4, workers=0,
        model_workers=0,
    )  # fmt: skip
    assert maker.engine_settings() == settings
    expected = maker_documents(maker, inputs).documents
    assert [d["source"] for d in docs] == [*(f"structure-{i}" for i in range(5)), "broken.cif"]
    assert [d["state"] for d in docs] == ["successful"] * 5 + ["failed"]
    assert "unreadable structure file" in docs[-1]["error"]
    assert [_comparable(d) for d in docs] == [_comparable(d) for d in expected]
    assert {d["model_version"] for d in docs[:5]} == {docs[0]["model_version"]}
    # the checkpoints' own version labels name the models of the documents
    for task in ("dielectric", "piezo"):
        assert docs[0]["predictions"][task]["model"]["version"] == f"small-{task}"


def test_engine_summary_with_a_store_and_skipping(shipped, checkpoints, tmp_path) -> None:
    from atomate2_gmt.stores import EmbeddedStore

    store = EmbeddedStore(str(tmp_path / "p.sqlite"), "predictions", key="prediction_id")
    store.connect()
    settings = EngineSettings(
        tasks=("piezo",),
        models={"piezo": (checkpoints["piezo"],)},
        batch_size=2,
        part_size=2,
        workers=0,
        model_workers=0,
        return_documents=False,
    )
    first = predict_documents(settings, shipped[:3], store=store)
    assert (first.n, first.n_successful, first.written, first.n_skipped) == (3, 3, 3, 0)
    assert first.documents == []  # return_documents=False: counts, keys and failures only
    assert store.count() == 3
    again = predict_documents(settings, shipped[:4], store=store)  # 3 stored: only 1 predicted
    assert (again.n, again.n_skipped, again.written) == (4, 3, 1)
    assert sorted(again.prediction_ids[1:]) == sorted(first.prediction_ids)


def test_ensemble_specs_give_mean_and_spread(shipped, checkpoints, tmp_path) -> None:
    import torch

    other = small_model("piezo")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.05)
    path = tmp_path / "piezo-b.pt"
    save_checkpoint(path, other, metadata={"version": "small-b"})
    specs = (checkpoints["piezo"], str(path))
    settings = EngineSettings(tasks=("piezo",), models={"piezo": specs}, workers=0)
    docs = predict_documents(settings, shipped[:3]).documents
    members = [net for net, _ in load_members("piezo", specs)]
    from atomate2_gmt.model.predict import predict

    single = [predict(shipped[:3], "piezo", model=m) for m in members]
    for i, doc in enumerate(docs):
        mean = (np.asarray(single[0][i]["tensor"]) + np.asarray(single[1][i]["tensor"])) / 2
        np.testing.assert_allclose(doc["predictions"]["piezo"]["tensor"], mean, atol=1e-9)
        assert doc["model_version"].startswith("ens2-")
        assert "e_ij_max" in doc["uncertainty"]
    # a calibration factor multiplies every stored σ, is named in the model spec and changes
    # the version
    scaled = EngineSettings(
        tasks=("piezo",), models={"piezo": specs}, workers=0, spread_scale={"piezo": 4.0}
    )
    docs4 = predict_documents(scaled, shipped[:3]).documents
    for raw, cal in zip(docs, docs4, strict=True):
        np.testing.assert_allclose(
            cal["predictions"]["piezo"]["tensor"], raw["predictions"]["piezo"]["tensor"]
        )
        for field_name, sigma in raw["uncertainty"].items():
            assert cal["uncertainty"][field_name] == pytest.approx(4.0 * sigma)
        assert cal["model_version"] != raw["model_version"]
        assert cal["predictions"]["piezo"]["model"]["spec"].endswith("; uncertainty = spread × 4")
    # the factor's Python type does not change the version (stored documents stay valid)
    members = load_members("piezo", specs)
    versions = {ensemble_info("piezo", members, s)["version"] for s in (4, 4.0, np.float64(4.0))}
    assert len(versions) == 1
    assert ensemble_info("piezo", members, 1.0) == ensemble_info("piezo", members)
    for bad in (0.0, float("inf")):
        with pytest.raises(ValueError, match="spread_scale of 'piezo' must be positive"):
            EngineSettings(tasks=("piezo",), models={"piezo": specs}, spread_scale={"piezo": bad})
    with pytest.raises(ValueError, match="not predicted by an ensemble"):
        EngineSettings(tasks=("piezo",), models={"piezo": specs[:1]}, spread_scale={"piezo": 2})


def test_settings_and_loading_errors(checkpoints, tmp_path) -> None:
    with pytest.raises(ValueError, match="at least one task"):
        EngineSettings(tasks=())
    with pytest.raises(ValueError, match="must be resolved"):
        EngineSettings(tasks=("piezo",), device="auto")
    with pytest.raises(ValueError, match="part_size must be >= 1, got 0"):
        EngineSettings(tasks=("piezo",), part_size=0)
    with pytest.raises(ValueError, match="no model spec for task 'piezo'"):
        predict_documents(EngineSettings(tasks=("piezo",)), [])
    missing = str(tmp_path / "none.pt")
    with pytest.raises(ValueError, match=r"model for task 'piezo': checkpoint .*none.pt"):
        predict_documents(EngineSettings(tasks=("piezo",), models={"piezo": (missing,)}), [])


def test_engine_runs_where_jobflow_cannot_be_imported(checkpoints, tmp_path) -> None:
    """A fresh interpreter in which ``import jobflow`` fails predicts with the engine."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["jobflow"] = None  # any import of jobflow now raises ImportError
        from atomate2_gmt.data.mp import load_mp
        from atomate2_gmt.engine import EngineSettings, predict_documents
        structures = [r.structure for r in load_mp("piezo").records[:2]]
        settings = EngineSettings(
            tasks=("dielectric",), models={{"dielectric": ({checkpoints["dielectric"]!r},)}},
            workers=0, model_workers=0,
        )
        docs = predict_documents(settings, structures).documents
        print([d["state"] for d in docs], "atomate2_gmt.jobs.predict" in sys.modules)
        """
    )
    env = {"ATOMATE2_GMT_PROJECT_DIR": str(tmp_path / "project"), "HOME": str(tmp_path)}
    import os

    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=Path(__file__).parents[2],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['successful', 'successful'] False"


def test_engine_reads_inputs_with_its_limits_and_no_settings(
    shipped, checkpoints, tmp_path, monkeypatch
) -> None:
    """The engine takes the input limits from EngineSettings: it never reads the settings
    (once per file, that was 13 % of a CIF file's reading time), and its limits decide."""
    import atomate2_gmt.settings as settings_module
    from atomate2_gmt.candidates import InputLimits

    files = []
    for i, structure in enumerate(shipped):
        path = tmp_path / f"s{i}.cif"
        structure.to(filename=str(path))
        files.append(str(path))
    built = []
    original = settings_module.GMTSettings.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(settings_module.GMTSettings, "__init__", counting)
    sites = [len(s) for s in shipped]
    limit = sorted(sites)[len(sites) // 2]
    settings = EngineSettings(
        tasks=("dielectric",),
        models={"dielectric": (checkpoints["dielectric"],)},
        workers=0,
        model_workers=0,
        limits=InputLimits(max_sites=limit),
    )
    out = predict_documents(settings, files)
    assert built == []
    by_source = {d["source"]: d for d in out.documents}
    for i, n in enumerate(sites):
        doc = by_source[f"s{i}.cif"]
        if n > limit:
            assert doc["state"] == "failed"
            assert f"at most {limit}" in doc["error"]
        else:
            assert doc["state"] == "successful", doc["error"]


def test_runs_collect_cycles_less_often_and_restore_the_collector(
    shipped, checkpoints, monkeypatch
) -> None:
    """A prediction run freezes the objects alive at its start and raises the collector's
    first threshold (engine.fewer_gc_passes); both are restored after it, also when it fails,
    and cyclic garbage made during the block is still collected."""
    import gc
    import weakref

    from atomate2_gmt import engine

    before = gc.get_threshold()
    seen: list[tuple[tuple[int, int, int], int]] = []
    real = engine._Run.predict

    def spy(self, parts, futures):  # type: ignore[no-untyped-def]
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return real(self, parts, futures)

    monkeypatch.setattr(engine._Run, "predict", spy)
    settings = EngineSettings(
        tasks=("dielectric",), models={"dielectric": (checkpoints["dielectric"],)}
    )
    run = predict_documents(settings, shipped[:2])
    assert run.n_successful == 2
    [(threshold, frozen)] = seen
    assert threshold[0] == engine.GC_THRESHOLD > before[0]
    assert frozen > 1000  # the modules and models alive when the run started
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

    refs: list[Any] = []

    def failing_block() -> None:
        with engine.fewer_gc_passes():
            refs.append(weakref.ref(_Cyclic([])))  # a cycle made in the block
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_block()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert refs[0]() is None


class _Cyclic:
    def __init__(self, other: Any) -> None:
        self.me = self
        self.other = other


def test_each_structure_is_checked_once_and_given_candidates_still_are(
    shipped, checkpoints, preloaded, monkeypatch
) -> None:
    """Structures the engine reads are checked once (as_candidates), not again before the
    graph is built; a Candidate handed in as it is was never checked, so the model checks it."""
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt.candidates import Candidate
    from atomate2_gmt.model import graph

    calls: list[int] = []
    real = graph.structure_problem

    def counting(structure, max_sites=2000):  # type: ignore[no-untyped-def]
        calls.append(len(structure))
        return real(structure, max_sites)

    monkeypatch.setattr(graph, "structure_problem", counting)
    settings = EngineSettings(
        tasks=("dielectric", "piezo"),
        models={task: (path,) for task, path in checkpoints.items()},
        workers=0,
        model_workers=0,
    )
    run = predict_documents(settings, shipped[:3], load=preloaded)
    assert run.n_successful == 3
    assert len(calls) == 3  # one check per structure, shared by both models

    crushed = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    calls.clear()
    given = [Candidate(source="given", structure=crushed)]
    run = predict_documents(settings, given, load=preloaded)
    assert run.n_failed == 1
    assert "apart" in run.failures[0][1]
    assert len(calls) == 1  # the model's own check


def test_models_reuse_the_point_group_of_the_readers_symmetry_search(
    shipped, checkpoints, preloaded, monkeypatch
) -> None:
    """The reader's spglib search (structure key) gives the models the point group, so the
    model side searches no more where that dataset is the one its search would find; the
    documents carry the same point groups as a search of their own."""
    from atomate2_gmt.model import batch

    settings = EngineSettings(
        tasks=("dielectric", "piezo"),
        models={task: (path,) for task, path in checkpoints.items()},
        workers=0,
        model_workers=0,
    )
    searches: list[int] = []
    real = batch.point_group_info

    def counting(structure, *args, **kwargs):  # type: ignore[no-untyped-def]
        searches.append(len(structure))
        return real(structure, *args, **kwargs)

    monkeypatch.setattr(batch, "point_group_info", counting)
    run = predict_documents(settings, shipped, load=preloaded)
    assert run.n_successful == len(shipped)
    assert searches == []
    for doc, structure in zip(run.documents, shipped, strict=True):
        own = real(structure, 0.01, 5.0)
        assert doc["symmetry"]["point_group"] == own.point_group
        assert doc["symmetry"]["number"] == own.space_group_number


def test_a_point_group_found_at_other_tolerances_is_refused(shipped) -> None:
    from atomate2_gmt.model.batch import prepare_structure
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.tensors.symmetry import point_group_info

    config = GMTNetConfig()
    loose = point_group_info(shipped[0], 0.1, 5.0)
    with pytest.raises(ValueError, match=r"symprec 0\.1.*the model needs 0\.01"):
        prepare_structure(shipped[0], config, point_group=loose)
    same = point_group_info(shipped[0], config.symprec, config.angle_tolerance)
    _, info = prepare_structure(shipped[0], config, point_group=same)
    assert info is same


def test_gc_settings_of_the_host_survive_nested_and_threaded_runs() -> None:
    """fewer_gc_passes nests and overlaps in threads (the last block to end restores the
    collector), leaves objects the host froze frozen, keeps a larger threshold and keeps a
    switched-off collector off."""
    import gc
    import threading

    from atomate2_gmt import engine

    before = gc.get_threshold()
    try:
        gc.freeze()  # the host's own freeze (a pre-fork server does this)
        host_frozen = gc.get_freeze_count()
        with engine.fewer_gc_passes():
            # nothing more frozen, nothing thawed (frozen objects may still be freed)
            assert host_frozen // 2 < gc.get_freeze_count() <= host_frozen
            with engine.fewer_gc_passes():
                assert gc.get_threshold()[0] == engine.GC_THRESHOLD
            assert gc.get_threshold()[0] == engine.GC_THRESHOLD  # the outer block still runs
        assert host_frozen // 2 < gc.get_freeze_count() <= host_frozen
        assert gc.get_threshold() == before
        gc.unfreeze()

        inside, leave = threading.Event(), threading.Event()

        def other_run() -> None:
            with engine.fewer_gc_passes():
                inside.set()
                leave.wait(10)

        thread = threading.Thread(target=other_run)
        thread.start()
        inside.wait(10)
        with engine.fewer_gc_passes():
            pass
        assert gc.get_threshold()[0] == engine.GC_THRESHOLD  # the other run still runs
        leave.set()
        thread.join(10)
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0

        gc.set_threshold(50_000, *before[1:])
        with engine.fewer_gc_passes():
            assert gc.get_threshold()[0] == 50_000
        gc.set_threshold(0, *before[1:])
        with engine.fewer_gc_passes():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_readers_point_group_moves_predictions_by_round_off_only(shipped, checkpoints) -> None:
    """Tensors predicted with the point groups of the reader's spglib search equal those of the
    model's own search to float64 round-off (the same groups; operations in another order)."""
    from atomate2_gmt.model.predict import predict_many
    from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis

    models = {task: path for task, path in checkpoints.items()}
    found = [SymmetryAnalysis(s, 0.01).point_group_of_dataset for s in shipped]
    assert all(g is not None for g in found)
    own = predict_many(shipped, models)
    given = predict_many(shipped, models, found_point_groups=found)
    for task in models:
        for a, b in zip(own.results[task], given.results[task], strict=True):
            assert a["point_group"] == b["point_group"]
            ta, tb = np.asarray(a["tensor"]), np.asarray(b["tensor"])
            assert np.abs(ta - tb).max() <= 1e-7 * max(np.abs(ta).max(), 1e-12)


def test_predict_many_names_a_bad_hint(shipped, checkpoints) -> None:
    from atomate2_gmt.model.predict import predict_many

    models = {"dielectric": checkpoints["dielectric"]}
    with pytest.raises(ValueError, match="must be PointGroupInfos or None, got a str"):
        predict_many(shipped[:1], models, found_point_groups=["m-3m"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="checked_sites must give one entry per structure"):
        predict_many(shipped[:2], models, checked_sites=[2000])


@pytest.fixture
def one_reader(checkpoints: dict[str, str]) -> EngineSettings:
    """Settings of a dielectric run with one reading worker, parts of two structures and the
    models in-process."""
    return EngineSettings(
        tasks=("dielectric",),
        models={"dielectric": (checkpoints["dielectric"],)},
        workers=1,
        model_workers=0,
        part_size=2,
    )


def test_runs_of_one_process_share_one_reader(shipped, one_reader, preloaded) -> None:
    """The file-reading worker outlives a run: the next run of the process (a screen's next
    chunk job) uses the same worker process instead of forking one; after a run that fails the
    next one still reads and predicts."""
    from atomate2_gmt import engine

    engine.close_reader_pool()
    load = preloaded
    settings = one_reader
    try:
        first = predict_documents(settings, shipped, load=load)
        pool = engine._READERS["pool"]
        assert pool is not None
        workers = set(pool._processes)
        assert len(workers) == 1
        second = predict_documents(settings, shipped, load=load)
        assert engine._READERS["pool"] is pool
        assert set(pool._processes) == workers
        assert first.n_successful == second.n_successful == len(shipped)

        def broken(task: str, specs: tuple[str, ...]) -> Any:
            raise RuntimeError("no model today")

        with pytest.raises(RuntimeError, match="no model today"):
            predict_documents(settings, shipped * 4, load=broken)
        again = predict_documents(settings, shipped, load=load)
        assert again.n_successful == len(shipped)
    finally:
        engine.close_reader_pool()
    assert engine._READERS["pool"] is None


def _cif_files(structures: list[Any], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, s in enumerate(structures):
        path = folder / f"s{n}.cif"
        s.to(filename=str(path))
        paths.append(str(path))
    return paths


@pytest.fixture
def two_file_runs(shipped, one_reader, tmp_path) -> tuple[list[str], list[str], EngineSettings]:
    """Two runs' inputs (CIF files of shipped structures, one in common) and their settings."""
    settings = one_reader
    first = _cif_files(shipped[:3], tmp_path / "a")
    return first, _cif_files(shipped[2:], tmp_path / "b"), settings


def test_a_run_reads_the_next_runs_files_ahead(
    shipped, preloaded, two_file_runs, monkeypatch
) -> None:
    """With ``read_ahead`` the reading workers read the next run's files once this run's are
    queued; the next run over the same files reads nothing itself and gives the documents of
    a run without read-ahead. A run over other files, or over a file changed since, drops what
    was read ahead and reads its own."""
    from atomate2_gmt import engine

    engine.close_reader_pool()
    first, second, settings = two_file_runs
    reads: list[list[Any]] = []
    read = engine._read

    def counting(pool: Any, parts: list[Any], s: EngineSettings) -> list[Any]:
        reads.append([item for _, part in parts for item in part])
        return read(pool, parts, s)

    monkeypatch.setattr(engine, "_read", counting)
    try:
        expected = [_comparable(d) for d in predict_documents(settings, second).documents]
        reads.clear()
        predict_documents(settings, first, load=preloaded, read_ahead=second)
        assert reads == [first, second]  # its own files, then the next run's
        assert engine._AHEAD["key"] is not None
        got = predict_documents(settings, second, load=preloaded)
        assert len(reads) == 2  # nothing read again
        assert engine._AHEAD["key"] is None
        assert [_comparable(d) for d in got.documents] == expected

        # read ahead for `second`, but the next run is over `first`: dropped, first read
        predict_documents(settings, first, load=preloaded, read_ahead=second)
        reads.clear()
        predict_documents(settings, first, load=preloaded)
        assert reads == [first]
        assert engine._AHEAD["key"] is None

        # read ahead, then one of the files is rewritten (another crystal): read again
        predict_documents(settings, first, load=preloaded, read_ahead=second)
        shipped[0].to(filename=second[0])
        reads.clear()
        changed = predict_documents(settings, second, load=preloaded)
        assert reads == [second]
        assert changed.documents[0]["formula_pretty"] == shipped[0].composition.reduced_formula
        # read ahead with other reading settings (parts of another size): read again
        predict_documents(settings, first, load=preloaded, read_ahead=second)
        reads.clear()
        other = EngineSettings(**{**settings.__dict__, "part_size": 1})
        predict_documents(other, second, load=preloaded)
        assert reads == [second]
    finally:
        engine.close_reader_pool()
    assert engine._AHEAD["key"] is None


def test_a_read_ahead_whose_reader_died_is_read_again(
    preloaded, two_file_runs, monkeypatch
) -> None:
    """The reading worker is killed after it was given the next run's files: the next run
    reads them again with a new worker instead of failing on the dead one's parts."""
    import os
    import signal

    from atomate2_gmt import engine

    engine.close_reader_pool()
    first, second, settings = two_file_runs
    read = engine._read

    def slow_ahead(pool: Any, parts: list[Any], s: EngineSettings) -> list[Any]:
        if str(parts[0][1][0]) == second[0]:  # the worker is busy when the next files queue
            pool.submit(time.sleep, 5)
        return read(pool, parts, s)

    monkeypatch.setattr(engine, "_read", slow_ahead)
    try:
        expected = [_comparable(d) for d in predict_documents(settings, second).documents]
        predict_documents(settings, first, load=preloaded, read_ahead=second)
        pool = engine._READERS["pool"]
        futures = engine._AHEAD["futures"]
        for pid in list(pool._processes):
            os.kill(pid, signal.SIGKILL)
        for f in futures:
            with contextlib.suppress(Exception):
                f.result(timeout=30)
        assert all(f.exception() is not None for f in futures)  # the dead worker's parts
        got = predict_documents(settings, second, load=preloaded)
        assert engine._READERS["pool"] is not pool
        assert [_comparable(d) for d in got.documents] == expected
    finally:
        engine.close_reader_pool()


def test_read_ahead_is_dropped_for_inputs_that_are_not_files(
    shipped, one_reader, preloaded
) -> None:
    """Structures in memory are never read ahead (their identity cannot be checked)."""
    from atomate2_gmt import engine

    settings = one_reader
    try:
        predict_documents(settings, shipped, load=preloaded, read_ahead=shipped)
        assert engine._AHEAD["key"] is None
        engine.start_read_ahead(settings, shipped)
        assert engine._AHEAD["key"] is None
    finally:
        engine.close_reader_pool()


def _collector_state() -> tuple[int, tuple[int, ...]]:
    import gc

    return gc.get_freeze_count(), gc.get_threshold()


def test_a_reader_forked_outside_a_run_freezes_what_it_inherits(shipped, tmp_path) -> None:
    """A reading worker started outside :func:`fewer_gc_passes` (reading ahead between two
    runs) still leaves the heap it inherits to the operating system's shared pages: frozen,
    with the larger first threshold."""
    import gc

    from atomate2_gmt import engine

    engine.close_reader_pool()
    settings = EngineSettings(tasks=("dielectric",), workers=1, part_size=2)
    assert gc.get_freeze_count() == 0
    try:
        engine.start_read_ahead(settings, _cif_files(shipped[:3], tmp_path / "a"))
        frozen, threshold = engine._READERS["pool"].submit(_collector_state).result()
    finally:
        engine.close_reader_pool()
    assert frozen > 10_000  # modules, pymatgen, torch: everything the worker started with
    assert threshold[0] == engine.GC_THRESHOLD
