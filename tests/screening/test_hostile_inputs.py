"""Hostile and careless inputs: each fails alone with its reason, every good one is stored, and
nothing blocks, hangs or leaves processes behind."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.core.operations import SymmOp
from typer.testing import CliRunner

from atomate2_gmt.candidates import InputLimits, candidates_from_files, candidates_from_store
from atomate2_gmt.cli.app import app
from atomate2_gmt.data.criteria import check_criteria
from atomate2_gmt.jobs.predict import predict_documents
from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.graph import MAX_VACUUM_GAP, structure_problem, vacuum_gaps
from atomate2_gmt.model.predict import predict
from atomate2_gmt.query import CandidateQuery, query_candidates
from atomate2_gmt.schemas.prediction import GMTPredictionDoc
from atomate2_gmt.stores import EmbeddedStore, candidate_store
from tests.screening.conftest import SmallModelPredictMaker, small_model

runner = CliRunner()

NACL = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)


def nacl_cluster_in_box(box: float = 40.0) -> Structure:
    """27 atoms of rock salt in a 40 Å cubic box: a molecule, not a crystal."""
    cart = [[i * 2.82, j * 2.82, k * 2.82] for i in range(3) for j in range(3) for k in range(3)]
    species = [
        "Na" if (i + j + k) % 2 == 0 else "Cl" for i in range(3) for j in range(3) for k in range(3)
    ]
    return Structure(Lattice.cubic(box), species, cart, coords_are_cartesian=True)


def argon_in_box() -> Structure:
    """Solid (fcc) argon placed in a 20 Å box."""
    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.26), ["Ar"], [[0, 0, 0]])
    return Structure(Lattice.cubic(20.0), fcc.species, fcc.cart_coords, coords_are_cartesian=True)


def close_pair() -> Structure:
    return Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.04, 0, 0]])  # 0.2 Å


@pytest.fixture
def small_models(tmp_path, monkeypatch):
    paths = {}
    for task in ("dielectric", "piezo"):
        paths[task] = tmp_path / f"{task}.pt"
        save_checkpoint(paths[task], small_model(task), metadata={"version": "hostile-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps({t: str(p) for t, p in paths.items()}))
    return paths


# --------------------------------------------------------------------------------------------
# one structure check, everywhere
# --------------------------------------------------------------------------------------------


def test_out_of_domain_structures_are_refused_with_the_reason():
    assert structure_problem(NACL) is None
    cluster = structure_problem(nacl_cluster_in_box())
    assert "vacuum gap wider than" in cluster
    assert "molecule or isolated atoms" in cluster
    assert "vacuum gap" in structure_problem(argon_in_box())
    slab = Structure(
        Lattice.tetragonal(5.64, 30.0),
        NACL.species,
        [[x, y, z * 5.64 / 30.0] for x, y, z in NACL.frac_coords],
    )
    assert "along c" in structure_problem(slab)
    assert "a slab" in structure_problem(slab)
    assert "0.200 Å apart" in structure_problem(close_pair())
    tiny = Structure(Lattice.cubic(0.4), ["Na"], [[0, 0, 0]])  # the atom's own periodic image
    assert "Å apart" in structure_problem(tiny)
    dummy = Structure(Lattice.cubic(5.6), ["Na", DummySpecies("X")], [[0, 0, 0], [0.5] * 3])
    assert "unknown element X " in structure_problem(dummy)
    # the vacuum measure is a property of the crystal, not of the file's orientation or cell
    op = SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0)
    rotated = Structure(
        Lattice(op.apply_rotation_only(NACL.lattice.matrix.T).T), NACL.species, NACL.frac_coords
    )
    assert np.allclose(vacuum_gaps(rotated), vacuum_gaps(NACL))
    assert vacuum_gaps(NACL).max() < MAX_VACUUM_GAP


def test_the_python_api_and_the_maker_use_the_same_check():
    model = small_model("dielectric")
    out = predict([NACL, close_pair(), argon_in_box()], "dielectric", model=model, device="cpu")
    assert [r["state"] for r in out] == ["successful", "failed", "failed"]
    assert "Å apart" in out[1]["error"]
    assert "vacuum gap" in out[2]["error"]
    maker = SmallModelPredictMaker(tasks=("dielectric",), workers=0, model_workers=0)
    docs = predict_documents(maker, [NACL, close_pair(), nacl_cluster_in_box()]).documents
    assert [d["state"] for d in docs] == ["successful", "failed", "failed"]
    assert "Å apart" in docs[1]["error"]
    assert "vacuum gap" in docs[2]["error"]


# --------------------------------------------------------------------------------------------
# files: type, size and line guards before parsing; multi-block CIFs
# --------------------------------------------------------------------------------------------


def _two_block_cif(tmp_path):
    zns = Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25] * 3]
    )
    a, b = tmp_path / "a.cif", tmp_path / "b.cif"
    NACL.to(filename=str(a))
    zns.to(filename=str(b))
    text = "data_global\n_publ_section_title 'two phases'\n\n"
    text += a.read_text().replace("data_NaCl", "data_rocksalt")
    text += "\n" + b.read_text().replace("data_ZnS", "data_zincblende")
    path = tmp_path / "two_phases.cif"
    path.write_text(text)
    return path


def test_file_guards_fail_one_file_before_parsing(tmp_path):
    limits = InputLimits(max_sites=50, max_file_bytes=200_000)
    good = tmp_path / "NaCl.cif"
    NACL.to(filename=str(good))
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)  # reading it would block forever
    big = tmp_path / "big.cif"
    big.write_text("# padding\n" * 30_000)  # 300 kB
    lines = tmp_path / "many_lines.cif"
    lines.write_text(good.read_text() + "# comment\n" * 1200)  # more lines than 50 sites need
    binary = tmp_path / "random.cif"
    binary.write_bytes(np.random.default_rng(0).bytes(4000) + b"\x00")
    json_file = tmp_path / "huge.json"
    json_file.write_text(json.dumps({"sites": [{"species": []}] * 60}))

    from atomate2_gmt.candidates import _read_one

    def reason(path):
        (cand,) = _read_one(path, path.name, limits)
        return cand.error

    assert reason(good) is None
    assert "not a regular file" in reason(fifo)
    assert "larger than the 0.2 MB limit (setting MAX_FILE_MB)" in reason(big)
    assert "more than a structure of at most 50 sites needs" in reason(lines)
    assert "binary file" in reason(binary)
    assert "60 sites" in reason(json_file)
    assert reason(tmp_path / "nowhere.cif").startswith("cannot read the file")
    with open("/dev/zero", "rb"):  # a device: never read
        assert "not a regular file" in reason(type(good)("/dev/zero"))


def test_every_block_of_a_multi_block_cif_is_a_candidate(tmp_path):
    cands = candidates_from_files([_two_block_cif(tmp_path)])
    assert [c.source for c in cands] == ["two_phases.cif#rocksalt", "two_phases.cif#zincblende"]
    assert [c.structure.composition.reduced_formula for c in cands] == ["NaCl", "ZnS"]
    assert cands[1].provenance["cif_block"] == "zincblende"


# --------------------------------------------------------------------------------------------
# a whole screening batch of good and bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_mixed_batch_stores_every_good_input_and_a_reason_for_every_bad_one(
    tmp_path, good_structures, small_models, project, monkeypatch
):
    monkeypatch.setenv("ATOMATE2_GMT_MAX_FILE_MB", "0.5")
    monkeypatch.setenv("ATOMATE2_GMT_MAX_SITES", "200")
    folder = tmp_path / "batch"
    folder.mkdir()
    good = {}
    for i, s in enumerate(good_structures * 2):  # 20 good files; "c05" and "c15" are one crystal
        name = f"c{i:02d}_{s.composition.reduced_formula}.cif"
        s.to(filename=str(folder / name))
        good[name] = s
    bad = {
        "c07_dummy.cif": "unknown element X",
        "c08_cluster.cif": "vacuum gap",
        "c09_argon.cif": "vacuum gap",
        "c10_close.cif": "Å apart",
        "c11_pipe.cif": "not a regular file",
        "c12_big.cif": "larger than the 0.5 MB limit",
        "c13_random.cif": "binary file",
        "c16_zero.cif": "not a regular file",  # a link to /dev/zero: never read
    }
    Structure(Lattice.cubic(5.6), ["Na", DummySpecies("X")], [[0, 0, 0], [0.5] * 3]).to(
        filename=str(folder / "c07_dummy.cif")
    )
    nacl_cluster_in_box().to(filename=str(folder / "c08_cluster.cif"))
    argon_in_box().to(filename=str(folder / "c09_argon.cif"))
    close_pair().to(filename=str(folder / "c10_close.cif"))
    os.mkfifo(folder / "c11_pipe.cif")
    (folder / "c12_big.cif").write_text("#\n" * 300_000)
    (folder / "c16_zero.cif").symlink_to("/dev/zero")
    (folder / "c13_random.cif").write_bytes(np.random.default_rng(1).bytes(2000) + b"\x00")
    two = _two_block_cif(tmp_path)
    (folder / "c14_two_phases.cif").write_text(two.read_text())

    result = runner.invoke(
        app, ["screen", str(folder), "--tasks", "dielectric,piezo", "--chunk-size", "8"]
    )
    assert result.exit_code == 0, result.output
    n_inputs = len(good) + len(bad) + 2  # the two-block CIF is two inputs
    # 20 good files of 10 crystals: the second file of each crystal finds it stored
    assert (
        f"screened {n_inputs} candidates: {len(good) + 2} predicted (10 of them already in the "
        f"store: not predicted again), {len(bad)} failed"
    ) in " ".join(result.output.split())
    # 20 good files are 10 crystals, the two phases are 2 more; each bad file is one document
    n_docs = 10 + 2 + len(bad)
    assert f"stored as {n_docs} documents: {n_inputs - n_docs} inputs are the same crystal" in (
        " ".join(result.output.split())
    )

    store = candidate_store()
    store.connect()
    docs = list(store.query({}))
    assert len(docs) == n_docs
    by_name = {name: d for d in docs for name in d["sources"]}
    for name in good:  # every good file is stored, under each of its names
        assert by_name[name]["state"] == "successful", name
    for name, reason in bad.items():
        assert by_name[name]["state"] == "failed"
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
    assert by_name["c14_two_phases.cif#zincblende"]["formula_pretty"] == "ZnS"
    twin = by_name["c15_" + good_structures[5].composition.reduced_formula + ".cif"]
    assert twin["source"].startswith("c05_")  # the first name stays the source

    # ``show`` finds a document by any of its names; a re-run keeps source and sources
    second = "c15_" + good_structures[5].composition.reduced_formula + ".cif"
    shown = runner.invoke(app, ["show", second, "--picture", str(tmp_path / "p.png")])
    assert shown.exit_code == 0, shown.output
    assert "source c05_" in shown.output
    again = runner.invoke(
        app, ["screen", str(folder), "--tasks", "dielectric,piezo", "--chunk-size", "8"]
    )
    assert again.exit_code == 0, again.output
    store = candidate_store()
    store.connect()
    assert store.count() == n_docs
    twin = store.query_one({"sources": second})
    assert twin["source"].startswith("c05_")
    assert len(twin["sources"]) == 2


def test_a_document_that_cannot_be_built_fails_alone(good_structures, monkeypatch):
    real = GMTPredictionDoc.from_predictions.__func__

    def flaky(cls, structure, predictions, *args, **kwargs):
        if kwargs["source"] == "structure-1":
            raise ValueError("'X' is not a valid Element")
        return real(cls, structure, predictions, *args, **kwargs)

    monkeypatch.setattr(GMTPredictionDoc, "from_predictions", classmethod(flaky))
    maker = SmallModelPredictMaker(tasks=("dielectric",), workers=0, model_workers=0)
    docs = predict_documents(maker, good_structures[:3]).documents
    assert [d["state"] for d in docs] == ["successful", "failed", "successful"]
    assert docs[1]["error"] == (
        "document could not be built (ValueError: 'X' is not a valid Element)"
    )
    assert docs[1]["formula_pretty"] == good_structures[1].composition.reduced_formula


def test_screen_names_the_failed_job_and_exits_1(tmp_path, good_structures, small_models):
    import atomate2_gmt.stores as stores

    folder = tmp_path / "c"
    folder.mkdir()
    for i, s in enumerate(good_structures[:6]):
        s.to(filename=str(folder / f"s{i}.cif"))
    real = stores.upsert_predictions
    calls = []

    def second_call_fails(store, docs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise stores.StoreWriteError("the server went away (simulated)")
        return real(store, docs, *args, **kwargs)

    stores.upsert_predictions = second_call_fails
    try:
        result = runner.invoke(
            app, ["screen", str(folder), "--tasks", "dielectric", "--chunk-size", "3"]
        )
    finally:
        stores.upsert_predictions = real
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert (
        "job gmt_predict_1 failed: atomate2_gmt.stores.StoreWriteError: the server went away"
        in (text)
        or "job gmt_predict_1 failed: StoreWriteError: the server went away" in text
    )
    assert "job gmt_rank failed: not run: a job it depends on failed" in text
    assert "3 inputs of failed jobs were not stored" in text
    assert "Flow did not finish running successfully" not in text


# --------------------------------------------------------------------------------------------
# processes and unphysical models
# --------------------------------------------------------------------------------------------


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import multiprocessing, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        sys.path.insert(0, {str(os.getcwd())!r})
        from atomate2_gmt.engine import _init_worker
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_init_worker, initargs=(1, os.getpid()))
        futures = [pool.submit(time.sleep, 0.5) for _ in range(4)]
        [f.result() for f in futures]
        print(" ".join(str(p) for p in pool._processes), flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2
        assert all(os.path.exists(f"/proc/{p}") for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_unphysical_outputs_fail_and_such_a_checkpoint_is_refused(tmp_path):
    from atomate2_gmt.model.validate import load_validated
    from atomate2_gmt.registry.loading import load_model_spec

    model = copy.deepcopy(small_model("piezo"))  # (small models are cached: never mutate one)
    model.target_scale.mul_(1e30)
    out = predict(
        [
            Structure.from_spacegroup(
                "P6_3mc",
                Lattice.hexagonal(3.25, 5.21),
                ["Zn", "O"],
                [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
            )
        ],
        "piezo",
        model=model,
        device="cpu",
    )[0]
    assert out["state"] == "failed"
    assert "prediction beyond physical bounds (piezo: a component of magnitude" in out["error"]
    assert "> 100 C/m²" in out["error"]
    path = tmp_path / "scaled.pt"
    save_checkpoint(path, model)
    loaded, _ = load_checkpoint(path, task="piezo")  # loading only loads: no forward pass
    assert float(loaded.target_scale) == float(model.target_scale)
    with pytest.raises(ValueError, match=r"wurtzite ZnO failed .*beyond physical bounds"):
        load_validated(path, task="piezo")
    # the model cache of a prediction process validates each file once, before first use
    with pytest.raises(ValueError, match=r"wurtzite ZnO failed .*beyond physical bounds"):
        load_model_spec("piezo", str(path))
    save_checkpoint(path, small_model("piezo"))
    load_validated(path, task="piezo")  # the same model, unscaled, passes
    assert load_model_spec("piezo", str(path))[1]["spec"] == str(path)


# --------------------------------------------------------------------------------------------
# the query API takes plain values; domain distance
# --------------------------------------------------------------------------------------------


def test_public_queries_refuse_operators(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "c", key="prediction_id")
    store.connect()
    for kwargs in (
        {"model_version": {"$ne": None}},
        {"crystal_system": {"$regex": "."}},
        {"max_e_above_hull": {"$gt": 0}},
        {"non_centrosymmetric": {"$exists": True}},
        {"sort": {"$where": "1"}},
        {"exclude_elements": [{"$ne": "Pb"}]},
    ):
        with pytest.raises(ValueError, match="filters take plain values, never query operators"):
            query_candidates(store, "piezo", **kwargs)
    with pytest.raises(ValueError, match="top must be an integer from 1 to"):
        query_candidates(store, "piezo", top=99999999999999999999999)
    with pytest.raises(ValueError, match=r"operator '\$where' in criteria is not allowed"):
        candidates_from_store(store, criteria={"$where": "sleep(100)"})
    with pytest.raises(ValueError, match=r"operator '\$regex' in criteria\.formula"):
        check_criteria({"formula": {"$regex": "^Pb"}})
    assert check_criteria({"$or": [{"a": {"$gt": 1}}, {"b": 2}]}) == {
        "$or": [{"a": {"$gt": 1}}, {"b": 2}]
    }
    query = CandidateQuery(prop="piezo", max_domain_distance=1.0)
    assert query.criteria()["domain_distance.piezo"] == {"$lte": 1.0}
    # a request value never becomes an operator: every operator is one the code wrote
    hostile = CandidateQuery.build(
        prop="piezo", model_version="$where", sort="e_ij_max", include_elements="O"
    )
    assert hostile.criteria()["model_version"] == "$where"  # compared as text, never run


def test_domain_distance_is_on_every_document_and_frame_free(good_structures):
    from atomate2_gmt.data.domain import domain_distances

    maker = SmallModelPredictMaker(tasks=("dielectric", "piezo"), workers=0, model_workers=0)
    docs = predict_documents(maker, [good_structures[0], argon_in_box().copy()]).documents
    assert set(docs[0]["domain_distance"]) == {"dielectric", "piezo"}
    assert docs[0]["domain_distance"]["piezo"] < 1.0
    fcc_ar = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.26), ["Ar"], [[0, 0, 0]])
    zno = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )
    d_ar, d_zno = domain_distances([fcc_ar, zno], "piezo")
    assert d_ar > 1.0 > d_zno  # a noble-gas solid is far from every MP piezoelectric
    supercell = zno.copy()
    supercell.make_supercell([2, 1, 1])
    assert domain_distances([supercell], "piezo")[0] == pytest.approx(d_zno)
