"""Candidate sources as streams: real files in each format, written here from real MP structures
(MP-style summary lists and JSON lines, Alexandria entries, OPTIMADE responses, extended XYZ),
one malformed record failing alone, part files of the screening flow, ``screen FILE.json.gz``."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest
from jobflow import run_locally
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.optimade import OptimadeStructureAdapter
from typer.testing import CliRunner

from atomate2_gmt.candidates import as_candidates, candidates_from_collection
from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.sources import SourceSlice, detect_collection, split_source
from atomate2_gmt.stores import candidate_store
from tests.screening.conftest import SmallModelPredictMaker
from tests.structures import NACL, ZNO

DATA = Path(__file__).parents[2] / "src/atomate2_gmt/data/datasets/mp_legacy_dielectric.json.gz"


def mp_summaries(n: int) -> list[dict]:
    """``n`` MP-API-style summary documents of real MP crystals (the shipped dielectric set:
    its DFT gap under emmet's ``band_gap``; no energy above the hull, which it does not give)."""
    with gzip.open(DATA, "rt") as fh:
        records = json.load(fh)[:n]
    return [
        {
            "material_id": r["material_id"],
            "formula_pretty": r["formula"],
            "structure": r["structure"],
            "band_gap": r["band_gap_eV"],
        }
        for r in records
    ]


def by_source(cands):
    return {c.source: c for c in cands}


def test_gzipped_mp_summary_list_streams_with_one_bad_record(tmp_path):
    docs = mp_summaries(12)
    docs[4]["band_gap"] = -0.5  # out of range: this record fails, not the file
    docs[7]["structure"] = {"lattice": "no"}
    path = tmp_path / "summary.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(docs, fh)
    assert detect_collection(path) == "json-list"
    cands = as_candidates(path)
    assert [c.source for c in cands] == [d["material_id"] for d in docs]
    failed = {c.source: c.error for c in cands if c.state == "failed"}
    assert failed.keys() == {docs[4]["material_id"], docs[7]["material_id"]}
    assert failed[docs[4]["material_id"]].startswith("record 4 of summary.json.gz: source field")
    assert "band_gap" in failed[docs[4]["material_id"]]
    assert failed[docs[7]["material_id"]].startswith("record 7 of summary.json.gz: 'structure'")
    good = cands[0]
    assert good.source_properties == {
        "material_id": docs[0]["material_id"],
        "band_gap": docs[0]["band_gap"],
    }  # no energy above the hull given: absent, not invented
    assert good.structure.composition.reduced_formula == docs[0]["formula_pretty"]
    assert good.provenance == {"file": str(path), "record": 0}


def test_broken_json_keeps_the_records_before_it(tmp_path):
    docs = mp_summaries(5)
    text = json.dumps(docs)
    cut = text.index(docs[3]["material_id"]) + 4  # in the middle of record 3
    path = tmp_path / "cut.json"
    path.write_text(text[:cut] + "}}]")
    cands = as_candidates(path)
    assert [c.state for c in cands[:3]] == ["successful"] * 3
    assert len(cands) == 4
    assert "not valid JSON after record 3" in cands[3].error
    assert cands[3].source == "cut.json#3"


def test_json_lines_plain_and_gzipped(tmp_path):
    docs = mp_summaries(6)
    lines = [json.dumps(d) for d in docs]
    lines.insert(2, "{not json")
    lines.insert(4, "")  # blank lines are no records
    for name, opener in (("a.jsonl", open), ("b.jsonl.gz", gzip.open), ("c.json", open)):
        path = tmp_path / name
        with opener(path, "wt") as fh:
            fh.write("\n".join(lines) + "\n")
        assert detect_collection(path) == "jsonl"
        cands = as_candidates(path)
        assert len(cands) == 7
        assert cands[2].state == "failed"
        assert cands[2].error.startswith(f"record 2 of {name}: not valid JSON")
        assert [c.source for c in cands if c.state == "successful"] == [
            d["material_id"] for d in docs
        ]


def test_alexandria_entries(tmp_path):
    """``{"entries": [ComputedStructureEntry dicts]}`` as Alexandria publishes them (bz2)."""
    entries = [
        ComputedStructureEntry(
            ZNO,
            -18.2,
            entry_id="agm002153984",
            data={
                "mat_id": "agm002153984",
                "e_above_hull": 0.0,
                "e_form": -1.72,
                "band_gap_ind": 0.73,
                "band_gap_dir": 0.73,
                "spg": 186,
            },
        ).as_dict(),
        ComputedStructureEntry(  # only a direct gap: not the band gap, so no band_gap
            NACL, -6.5, entry_id="agm-nacl", data={"band_gap_dir": 5.0, "e_above_hull": 0.02}
        ).as_dict(),
        {"@class": "ComputedStructureEntry", "energy": 1.0, "data": {}},  # no structure
    ]
    path = tmp_path / "alexandria_000.json.bz2"
    with bz2.open(path, "wt") as fh:
        json.dump({"@module": "x", "entries": entries}, fh)
    assert detect_collection(path) == "entries"
    cands = list(candidates_from_collection(path))
    assert cands[0].source == "agm002153984"
    assert cands[0].source_properties == {
        "material_id": "agm002153984",
        "energy_above_hull": 0.0,
        "formation_energy_per_atom": -1.72,
        "band_gap": 0.73,
    }
    assert cands[0].structure.matches(ZNO)
    assert cands[1].source_properties == {"material_id": "agm-nacl", "energy_above_hull": 0.02}
    assert cands[2].state == "failed"
    assert cands[2].error.startswith("record 2 of alexandria_000.json.bz2: record has no")


def test_optimade_structures_response(tmp_path):
    zno = OptimadeStructureAdapter.get_optimade_structure(ZNO)
    attrs = zno["attributes"]
    # a provider names its species as it likes (Zn1, O1): mapped to the chemical symbols
    names = {"Zn": "Zn1", "O": "O1"}
    attrs["species_at_sites"] = [names[s] for s in attrs["species_at_sites"]]
    for sp in attrs["species"]:
        sp["name"] = names[sp["name"]]
    attrs["_alexandria_band_gap"] = 0.73
    attrs["_alexandria_hull_distance"] = 0.0
    zno["id"] = "agm002153984"
    nacl = OptimadeStructureAdapter.get_optimade_structure(NACL)
    nacl["id"] = "nacl-1"
    disordered = json.loads(json.dumps(nacl))
    disordered["id"] = "mixed"
    disordered["attributes"]["species"][0]["chemical_symbols"] = ["Na", "K"]
    disordered["attributes"]["species"][0]["concentration"] = [0.5, 0.5]
    response = {"data": [zno, nacl, disordered], "meta": {"api_version": "1.1.0"}}
    path = tmp_path / "optimade.json"
    path.write_text(json.dumps(response))
    assert detect_collection(path) == "optimade"
    cands = by_source(as_candidates(path))
    assert cands["agm002153984"].structure.matches(ZNO)
    assert cands["agm002153984"].source_properties == {
        "material_id": "agm002153984",
        "band_gap": 0.73,
        "energy_above_hull": 0.0,
    }
    assert cands["nacl-1"].source_properties == {"material_id": "nacl-1"}
    assert cands["nacl-1"].structure.matches(NACL)
    assert cands["mixed"].state == "failed"
    assert "disordered" in cands["mixed"].error


def test_extended_xyz_through_ase(tmp_path):
    from ase import Atoms
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    zno = AseAtomsAdaptor.get_atoms(ZNO)
    zno.info = {"material_id": "zno-w", "band_gap": 3.3}
    nacl = AseAtomsAdaptor.get_atoms(NACL)
    nacl.info = {}
    molecule = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])  # not a crystal
    path = tmp_path / "frames.extxyz.gz"
    with gzip.open(path, "wt") as fh:
        write(fh, [zno, molecule, nacl], format="extxyz")
    assert detect_collection(path) == "extxyz"
    cands = as_candidates(path)
    assert [c.source for c in cands] == ["zno-w", "frames.extxyz.gz#1", "frames.extxyz.gz#2"]
    assert cands[0].source_properties == {"material_id": "zno-w", "band_gap": 3.3}
    assert cands[0].structure.matches(ZNO)
    assert "not periodic" in cands[1].error
    assert cands[2].source_properties == {}
    assert cands[2].structure.matches(NACL)


def test_folder_mixes_structure_files_and_collections(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    ZNO.to(filename=str(folder / "zno.cif"))
    (folder / "nacl.json").write_text(NACL.to_json())  # a Structure JSON: one structure
    with gzip.open(folder / "mp.json.gz", "wt") as fh:
        json.dump(mp_summaries(3), fh)
    inputs = as_candidates(folder, read_files=False)
    assert inputs[0] == SourceSlice(str((folder / "mp.json.gz").resolve()), "json-list")
    assert inputs[1:] == [str(folder / "nacl.json"), str(folder / "zno.cif")]
    cands = as_candidates(folder)
    assert len(cands) == 5
    assert all(c.state == "successful" for c in cands)
    # a list of paths: a collection among them is a slice too
    listed = as_candidates([str(folder / "zno.cif"), folder / "mp.json.gz"], read_files=False)
    assert listed == [str(folder / "zno.cif"), inputs[0]]


def test_json_lines_with_long_lines_and_one_object_files(tmp_path):
    doc = {**mp_summaries(1)[0], "note": "x" * 200_000}  # a first line longer than the sniff
    (tmp_path / "long.json").write_text(json.dumps(doc) + "\n" + json.dumps(doc) + "\n")
    (tmp_path / "one.json").write_text(json.dumps(doc))  # one summary document
    (tmp_path / "zno.json").write_text(ZNO.to_json())  # one Structure
    assert detect_collection(tmp_path / "long.json") == "jsonl"
    assert detect_collection(tmp_path / "one.json") == "json-list"
    assert detect_collection(tmp_path / "zno.json") is None
    assert [c.state for c in as_candidates(tmp_path / "long.json")] == ["successful"] * 2
    (one,) = as_candidates(tmp_path / "one.json")
    assert one.source_properties["band_gap"] == doc["band_gap"]


def test_split_source_writes_parts_once_with_the_original_indices(tmp_path):
    docs = mp_summaries(25)
    docs[13]["structure"] = None
    path = tmp_path / "big.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(docs, fh)
    whole = SourceSlice(str(path), "json-list")
    parts = split_source(whole, 10, tmp_path / "work")
    assert [(p.first_index, p.count) for p in parts] == [(0, 10), (10, 10), (20, 5)]
    assert all(p.origin == str(path.resolve()) for p in parts)
    records = [r for p in parts for r in p.records()]
    assert [r.index for r in records] == list(range(25))
    assert all(r.file == str(path.resolve()) for r in records)
    cands = as_candidates(parts[1:2])
    assert [c.source for c in cands] == [d["material_id"] for d in docs[10:20]]
    assert cands[3].error.startswith("record 13 of big.json.gz: record has no 'structure'")
    stamps = [Path(p.path).stat().st_mtime_ns for p in parts]
    again = split_source(whole, 10, tmp_path / "work")  # written once, reused
    assert again == parts
    assert [Path(p.path).stat().st_mtime_ns for p in again] == stamps
    # a file of at most one chunk is its own slice (nothing written)
    assert split_source(whole, 25, tmp_path / "work2") == [
        SourceSlice(str(path.resolve()), "json-list", count=25)
    ]
    assert not (tmp_path / "work2").exists()


def test_screen_flow_on_a_summary_file_stores_the_source_values(tmp_path, project):
    docs = mp_summaries(9)
    docs[2]["energy_above_hull"] = 0.05
    docs[5]["structure"]["lattice"]["matrix"] = [[0, 0, 0]] * 3  # a malformed record
    path = tmp_path / "mp.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(docs, fh)
    maker = GMTScreenMaker(
        predict_maker=SmallModelPredictMaker(tasks=("dielectric",)), chunk_size=4, top=3
    )
    flow = maker.make(str(path))
    chunks = [j.function_args[0] for j in flow.jobs[:-1]]
    # each job's input names a part of the file (never its records)
    assert [[type(x).__name__ for x in c] for c in chunks] == [["SourceSlice"]] * 3
    responses = run_locally(flow, ensure_success=True, log=False)
    out = responses[flow.jobs[-1].uuid][1].output
    assert out["n"] == 9
    assert out["n_failed"] == 1
    assert out["failures"][0][1].startswith("record 5 of mp.json.gz")
    store = candidate_store()
    store.connect()
    stored = {d["material_id"]: d for d in store.query({})}
    assert len(stored) == 9
    for d in docs:
        assert stored[d["material_id"]]["band_gap"] == pytest.approx(d["band_gap"])
    assert stored[docs[2]["material_id"]]["energy_above_hull"] == pytest.approx(0.05)
    assert stored[docs[0]["material_id"]]["energy_above_hull"] is None
    assert stored[docs[5]["material_id"]]["state"] == "failed"


def test_cli_screens_a_gzipped_summary_file(tmp_path, project, monkeypatch):
    from atomate2_gmt.cli.app import app
    from atomate2_gmt.model.checkpoint import save_checkpoint
    from tests.screening.conftest import small_model

    checkpoint = tmp_path / "dielectric.pt"
    save_checkpoint(checkpoint, small_model("dielectric"), metadata={"version": "src-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps({"dielectric": str(checkpoint)}))
    docs = mp_summaries(6)
    path = tmp_path / "summary.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(docs, fh)
    runner = CliRunner()
    result = runner.invoke(app, ["screen", str(path), "--tasks", "dielectric", "-q"])
    assert result.exit_code == 0, result.output
    assert "screened 6 candidates: 6 predicted, 0 failed" in result.output
    result = runner.invoke(
        app, ["query", "--property", "dielectric", "--format", "json", "--include-metals"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 6
    gaps = {d["material_id"]: d["band_gap"] for d in docs}
    for row in rows:
        assert row["band_gap"] == pytest.approx(gaps[row["material_id"]])
        assert row["energy_above_hull"] is None


def test_a_malformed_optimade_record_fails_alone(tmp_path):
    """Species given as a string (not species objects) fail that record, not the file."""
    good = OptimadeStructureAdapter.get_optimade_structure(NACL)
    good["id"] = "nacl-1"
    bad = json.loads(json.dumps(good))
    bad["id"] = "bad-species"
    bad["attributes"]["species"] = "ab"
    path = tmp_path / "optimade.json"
    path.write_text(json.dumps({"data": [bad, good]}))
    cands = by_source(as_candidates(path))
    assert cands["nacl-1"].structure.matches(NACL)
    assert cands["bad-species"].state == "failed"
    assert "'species' is not a list of species objects" in cands["bad-species"].error


def test_a_class_named_in_site_properties_is_never_imported(tmp_path):
    """pymatgen decodes site properties with monty, which imports the ``@module`` a value names:
    such properties are dropped before decoding, in collections and in single JSON files."""
    import sys

    module = "atomate2_gmt_never_imported_probe"
    (tmp_path / f"{module}.py").write_text("raise SystemExit('imported')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        raw = NACL.as_dict()
        raw["sites"][0]["properties"] = {"x": {"@module": module, "@class": "Anything"}}
        single = tmp_path / "nacl.json"
        single.write_text(json.dumps(raw))
        summary = tmp_path / "summary.json"
        summary.write_text(json.dumps([{"material_id": "mp-22862", "structure": raw}]))
        cands = by_source([*as_candidates(single), *as_candidates(summary)])
        assert module not in sys.modules
        assert cands["mp-22862"].structure.matches(NACL)
        assert cands["nacl.json"].structure.matches(NACL)
        assert cands["nacl.json"].structure[0].properties == {}
    finally:
        sys.path.remove(str(tmp_path))


def test_a_rescreen_from_a_summary_file_fills_in_the_source_values(tmp_path, project):
    """Crystals first screened from plain structure files, then from an MP summary file of the
    same crystals, are skipped (not predicted again) but gain the summary's band gap; a stored
    value is never overwritten."""
    docs = mp_summaries(3)
    folder = tmp_path / "cifs"
    folder.mkdir()
    for d in docs:
        (folder / f"{d['material_id']}.json").write_text(json.dumps(d["structure"]))
    maker = GMTScreenMaker(predict_maker=SmallModelPredictMaker(tasks=("dielectric",)), top=3)
    run_locally(maker.make(str(folder)), ensure_success=True, log=False)
    store = candidate_store()
    store.connect()
    assert {d["band_gap"] for d in store.query({})} == {None}
    path = tmp_path / "mp.json"
    docs[0]["energy_above_hull"] = 0.02
    path.write_text(json.dumps(docs))
    responses = run_locally(maker.make(str(path)), ensure_success=True, log=False)
    assert all(r[1].output is not None for r in responses.values())
    stored = list(store.query({}))
    assert len(stored) == 3
    by_file = {d["source"]: d for d in stored}
    for d in docs:
        again = by_file[f"{d['material_id']}.json"]
        assert again["band_gap"] == pytest.approx(d["band_gap"])
        assert f"{d['material_id']}" in again["sources"]
    assert by_file[f"{docs[0]['material_id']}.json"]["energy_above_hull"] == pytest.approx(0.02)
