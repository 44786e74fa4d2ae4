"""Hostile inputs that used to sink a whole screening run or be silently mis-read: symlink
loops, absurd or degenerate cells, truncated POSCARs, folders named like files, foreign documents
under a real ``prediction_id``. Each fails (or is replaced) alone, with its reason, in bounded
time."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from atomate2_gmt import progress
from atomate2_gmt.candidates import as_candidates, candidates_from_files, candidates_from_folder
from atomate2_gmt.cli.app import app
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.stores import candidate_store
from tests.model.conftest import mp_by_system
from tests.screening.conftest import small_model
from tests.structures import NACL, ZNO

runner = CliRunner()

SKEWED = [[4, 0, 0], [0, 4, 0], [400, 400, 0.01]]  # volume 0.16 Å³: passes a zero-volume check


def _zno_poscar(counts: str = "2 2") -> str:
    """Wurtzite ZnO as a VASP 5 POSCAR with the given counts line (4 coordinate lines)."""
    zno = ZNO
    lines = ["ZnO", "1.0"]
    lines += [" ".join(f"{x:.8f}" for x in row) for row in zno.lattice.matrix]
    lines += ["Zn O", counts, "Direct"]
    order = sorted(range(len(zno)), key=lambda i: zno[i].specie.symbol != "Zn")
    lines += [" ".join(f"{x:.8f}" for x in zno[i].frac_coords) for i in order]
    return "\n".join(lines) + "\n"


@pytest.fixture
def small_models(tmp_path, monkeypatch):
    paths = {}
    for task in ("dielectric", "piezo"):
        paths[task] = tmp_path / f"{task}.pt"
        save_checkpoint(paths[task], small_model(task), metadata={"version": "geometry-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps({t: str(p) for t, p in paths.items()}))
    return paths


def _no_neighbour_list(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a neighbour list was computed for a cell out of bounds")

    monkeypatch.setattr(Structure, "get_neighbor_list", refuse)


# --------------------------------------------------------------------------------------------
# geometric bounds: checked on the 3x3 lattice before any neighbour list
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_absurd_and_degenerate_cells_are_refused_before_any_neighbour_list(monkeypatch):
    from atomate2_gmt.model.graph import (
        MAX_SKEWNESS,
        MIN_CELL_HEIGHT,
        cell_geometry,
        structure_problem,
    )

    cases = {
        "1e30 Å": (Structure(Lattice(np.eye(3) * 1e30), ["Zn", "O"], [[0] * 3, [0.5] * 3]), "long"),
        "1e4 Å": (Structure(Lattice(np.eye(3) * 1e4), ["Zn", "O"], [[0] * 3, [0.5] * 3]), "long"),
        "skewed": (Structure(Lattice(SKEWED), ["Zn", "O"], [[0] * 3, [0.5] * 3]), "long"),
        "flat": (
            Structure(
                Lattice([[4, 0, 0], [0, 4, 0], [60, 60, 0.01]]), ["Zn", "O"], [[0] * 3, [0.5] * 3]
            ),
            "cell height along",
        ),
        "empty": (
            Structure(Lattice.cubic(60.0), ["Na"] * 8, [[i / 8, i / 8, i / 8] for i in range(8)]),
            "sites per Å³",
        ),
    }
    _no_neighbour_list(monkeypatch)
    for name, (structure, reason) in cases.items():
        t0 = time.perf_counter()
        problem = structure_problem(structure)
        assert time.perf_counter() - t0 < 0.5, name
        assert problem is not None, name
        assert reason in problem, (name, problem)
    # two nearly parallel 100 Å vectors: every height >= 0.5 Å, but a·b·c/V = 199
    sheared = Structure(
        Lattice([[100, 0, 0], [99.5, 0.5, 0], [0, 0, 5]]), ["Zn", "O"], [[0] * 3, [0.5] * 3]
    )
    _, _, heights, skew = cell_geometry(sheared.lattice.matrix)
    assert heights.min() > MIN_CELL_HEIGHT
    assert skew > MAX_SKEWNESS
    assert "cell skewness a·b·c/volume is 199" in structure_problem(sheared)


def test_the_bounds_keep_every_shipped_training_crystal_with_a_margin():
    """The bounds are far outside the 3,377 shipped MP crystals (see the constants)."""
    from atomate2_gmt.model.graph import (
        MAX_LATTICE_LENGTH,
        MAX_SKEWNESS,
        MIN_CELL_HEIGHT,
        MIN_SITE_DENSITY,
        cell_geometry,
        structure_problem,
    )

    groups = mp_by_system(6)
    for structures in groups.values():
        for s in structures:
            lengths, volume, heights, skew = cell_geometry(s.lattice.matrix)
            assert lengths.max() < MAX_LATTICE_LENGTH / 5
            assert heights.min() > 2 * MIN_CELL_HEIGHT
            assert skew < MAX_SKEWNESS / 2
            assert len(s) / volume > 3 * MIN_SITE_DENSITY
            assert structure_problem(s) is None


# --------------------------------------------------------------------------------------------
# files: every step of one input fails that input alone
# --------------------------------------------------------------------------------------------


def test_a_symlink_loop_fails_alone_in_every_reading_path(tmp_path):
    folder = tmp_path / "loop"
    folder.mkdir()
    NACL.to(filename=str(folder / "good.cif"))
    (folder / "a.cif").symlink_to(folder / "b.cif")
    (folder / "b.cif").symlink_to(folder / "a.cif")
    cands = {c.source: c for c in candidates_from_folder(folder)}
    assert cands["good.cif"].state == "successful"
    for name in ("a.cif", "b.cif"):
        assert cands[name].state == "failed"
        assert "symlink loop" in cands[name].error or "Too many levels" in cands[name].error
    # the prediction jobs get paths and read them on the worker: the same isolation
    paths = as_candidates(str(folder), read_files=False)
    read = {c.source: c for p in paths for c in candidates_from_files([p])}
    assert read["good.cif"].state == "successful"
    assert read["a.cif"].state == "failed"


def test_a_poscar_whose_counts_cover_only_some_coordinate_lines_is_refused(tmp_path):
    good = tmp_path / "ZnO_POSCAR"
    good.write_text(_zno_poscar("2 2"))
    short = tmp_path / "short_POSCAR"
    short.write_text(_zno_poscar("1 1"))  # covers 2 of the 4 coordinate lines
    with_velocities = tmp_path / "CONTCAR"
    with_velocities.write_text(_zno_poscar("2 2") + "\n" + "0.0 0.0 0.0\n" * 4)
    cands = {c.source: c for c in candidates_from_files([good, short, with_velocities])}
    assert cands["ZnO_POSCAR"].state == "successful"
    assert len(cands["ZnO_POSCAR"].structure) == 4
    assert cands["CONTCAR"].state == "successful"
    assert cands["short_POSCAR"].state == "failed"
    assert "counts line sums to 2 sites but 4 coordinate lines" in cands["short_POSCAR"].error


def test_a_folder_named_like_a_structure_file_is_listed_as_failed(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    NACL.to(filename=str(folder / "good.cif"))
    (folder / "x.cif").mkdir()
    (folder / "notes").mkdir()  # a plain subfolder is not a candidate
    cands = {c.source: c for c in candidates_from_folder(folder)}
    assert set(cands) == {"good.cif", "x.cif"}
    assert "a folder named like a structure file" in cands["x.cif"].error
    paths = as_candidates(str(folder), read_files=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["good.cif", "x.cif"]


def test_progress_never_shows_more_done_than_the_total(tmp_path):
    """A two-block CIF is one input but two structures: the total grows, never '3/2'."""
    from atomate2_gmt.jobs.predict import predict_documents
    from tests.screening.conftest import SmallModelPredictMaker
    from tests.screening.test_hostile_inputs import _two_block_cif

    two = _two_block_cif(tmp_path)
    NACL.to(filename=str(tmp_path / "NaCl.cif"))
    stream = io.StringIO()
    with progress.reporting(mode="lines", stream=stream):
        docs = predict_documents(
            SmallModelPredictMaker(tasks=("dielectric",), workers=0, model_workers=0),
            [str(two), str(tmp_path / "NaCl.cif")],
        ).documents
    assert len(docs) == 3
    counts = [
        tuple(int(x) for x in line.split(": ")[1].split()[0].split("/"))
        for line in stream.getvalue().splitlines()
        if line.startswith("predicting: ")
    ]
    assert counts, stream.getvalue()
    assert all(done <= total for done, total in counts), stream.getvalue()
    assert counts[-1] == (3, 3), stream.getvalue()


# --------------------------------------------------------------------------------------------
# the store: merged names, and stored documents verified before they are skipped
# --------------------------------------------------------------------------------------------


def test_a_merged_duplicate_keeps_the_provenance_of_its_source(tmp_path, small_models):
    folder = tmp_path / "twins"
    folder.mkdir()
    NACL.to(filename=str(folder / "a_first.cif"))
    NACL.to(filename=str(folder / "b_second.cif"))
    result = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric", "-q"])
    assert result.exit_code == 0, result.output
    store = candidate_store()
    store.connect()
    (doc,) = list(store.query({}))
    assert doc["source"] == "a_first.cif"
    assert doc["provenance"]["file"].endswith("a_first.cif")
    assert doc["sources"] == ["a_first.cif", "b_second.cif"]


def test_a_foreign_document_under_a_real_prediction_id_is_replaced_and_reported(
    tmp_path, small_models
):
    folder = tmp_path / "c"
    folder.mkdir()
    NACL.to(filename=str(folder / "NaCl.cif"))
    first = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric", "-q"])
    assert first.exit_code == 0, first.output
    store = candidate_store()
    store.connect()
    (real,) = list(store.query({}))
    fake = {k: v for k, v in real.items() if k != "_id"}
    fake.update(formula_pretty="FAKE1", dielectric_mean=999.0)
    store.update([fake], key="prediction_id")
    store.close()

    again = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric", "-q"])
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert f"replaced stored document {real['prediction_id']}" in text
    store.connect()
    (doc,) = list(store.query({}))
    assert doc["formula_pretty"] == "NaCl"
    assert doc["dielectric_mean"] == pytest.approx(real["dielectric_mean"])
    # a hash-consistent edit of the content is caught too: the tensor no longer matches
    edited = {k: v for k, v in doc.items() if k != "_id"}
    edited["dielectric_mean"] = 999.0
    store.update([edited], key="prediction_id")
    store.close()
    third = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric", "-q"])
    assert "does not match its content_hash" in " ".join(third.output.split())
    # an untouched document is skipped, not predicted again
    fourth = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric", "-q"])
    assert "replaced" not in fourth.output


# --------------------------------------------------------------------------------------------
# a whole batch, and a batch where nothing could be predicted
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_forty_good_structures_are_stored_beside_the_hostile_ones_in_bounded_time(
    tmp_path, small_models
):
    folder = tmp_path / "batch"
    folder.mkdir()
    good = [s for structures in mp_by_system(6).values() for s in structures][:40]
    assert len(good) == 40
    names = []
    for i, s in enumerate(good):
        names.append(f"g{i:02d}_{s.composition.reduced_formula}.cif")
        s.to(filename=str(folder / names[-1]))
    (folder / "loop_a.cif").symlink_to(folder / "loop_b.cif")
    (folder / "loop_b.cif").symlink_to(folder / "loop_a.cif")
    zno = ["Zn", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    (folder / "huge.json").write_text(
        json.dumps(Structure(Lattice(np.eye(3) * 1e30), *zno).as_dict())
    )
    (folder / "skewed.json").write_text(json.dumps(Structure(Lattice(SKEWED), *zno).as_dict()))
    (folder / "truncated_POSCAR").write_text(_zno_poscar("1 1"))
    bad = {
        "loop_a.cif": "symlink loop",
        "loop_b.cif": "symlink loop",
        "huge.json": "more than 200 Å",
        "skewed.json": "more than 200 Å",
        "truncated_POSCAR": "counts line sums to 2",
    }
    t0 = time.perf_counter()
    result = runner.invoke(
        app, ["screen", str(folder), "--tasks", "dielectric,piezo", "--chunk-size", "16"]
    )
    elapsed = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    print(f"40 good + {len(bad)} hostile inputs screened in {elapsed:.1f} s")
    assert elapsed < 300
    store = candidate_store()
    store.connect()
    by_name = {name: d for d in store.query({}) for name in d["sources"]}
    for name in names:
        assert by_name[name]["state"] == "successful", name
    text = " ".join(result.output.split())
    for name, reason in bad.items():
        assert by_name[name]["state"] == "failed", name
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
        assert f"failed: {name}:" in text or len(bad) > 10


def test_a_run_where_nothing_could_be_predicted_exits_non_zero(tmp_path, small_models):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "truncated_POSCAR").write_text(_zno_poscar("1 1"))
    skewed = Structure(Lattice(SKEWED), ["Zn", "O"], [[0] * 3, [0.5] * 3])
    (folder / "skewed.json").write_text(json.dumps(skewed.as_dict()))
    result = runner.invoke(app, ["screen", str(folder), "--tasks", "dielectric"])
    assert result.exit_code == 1, result.output
    assert "nothing could be predicted: all 2 inputs failed" in " ".join(result.output.split())
