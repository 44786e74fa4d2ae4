"""The likely-metal rule on real formulas, its place in the prediction documents (schema 3,
migration of older documents) and in queries (left out of dielectric/piezo by default)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure
from tests.stores.gmt_store_docs import STRUCTURES, make_doc
from typer.testing import CliRunner

from atomate2_gmt.query import CandidateQuery, query_candidates
from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
from atomate2_gmt.schemas.metallicity import likely_metal
from atomate2_gmt.schemas.prediction import migrate_prediction_dict
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions


def _fe_pt_n2() -> Structure:
    """FePtN2 as the demo makes it: MgMoN2 (mp-864954, P6_3/mmc) with Mg → Fe, Mo → Pt."""
    from atomate2_gmt.substitution import generate_substitution_candidates

    for cand in generate_substitution_candidates(n=300, seed=0):
        if cand.source == "substitution:mp-864954:FePtN2":
            assert cand.structure is not None
            return cand.structure
    raise AssertionError("the demo's generator no longer makes FePtN2")


@pytest.fixture(scope="module")
def fe_pt_n2() -> Structure:
    return _fe_pt_n2()


def _batio3() -> Structure:
    return Structure(
        Lattice.cubic(4.0),
        ["Ba", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def test_fe_pt_n2_is_flagged_with_the_open_shell_reason(fe_pt_n2):
    check = likely_metal(fe_pt_n2)
    assert check.likely_metal is True
    assert check.reason == ("open-shell transition metal in a nitride: Fe2+ (d6), Pt4+ (d6)")


@pytest.mark.parametrize("name", ["NaCl", "ZnO", "GaAs", "PbTiO3", "TiO2", "CdS"])
def test_insulators_are_not_flagged(name):
    check = likely_metal(STRUCTURES[name])
    assert check.likely_metal is False
    assert check.reason is None


def test_batio3_is_not_flagged():
    check = likely_metal(_batio3())
    assert check.likely_metal is False
    assert check.reason is None


def test_the_other_parts_of_the_rule():
    cu = Structure(
        Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    assert likely_metal(cu).reason == "no anion: metallic elements only"
    ti_al = Structure(Lattice.tetragonal(2.83, 4.07), ["Ti", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert likely_metal(ti_al).reason == "no charge-balanced oxidation states"
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert likely_metal(si).likely_metal is False  # no anion, but no metal either
    tin = Structure(Lattice.cubic(4.24), ["Ti", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert likely_metal(tin).reason == "open-shell transition metal in a nitride: Ti3+ (d1)"
    gan = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.19, 5.19),
        ["Ga", "N"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]],
    )
    assert likely_metal(gan).likely_metal is False  # d10 Ga: the semiconducting nitrides


def test_odd_electron_count_without_a_magnetic_ion_is_flagged():
    # SnSb (rocksalt, MP mp-10635): Sn2+ Sb2- balances, 101 electrons per primitive cell
    snsb = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(6.13), ["Sn", "Sb"], [[0, 0, 0], [0.5] * 3]
    )
    check = likely_metal(snsb)
    assert check.likely_metal is True
    assert check.reason == "odd number of electrons (101) per primitive cell, no magnetic ion"
    # the conventional cell (4 formula units, 404 electrons) gives the same answer
    assert likely_metal(snsb.get_primitive_structure()).reason == check.reason


def test_documents_carry_the_flag(fe_pt_n2):
    doc = make_doc("FePtN2", structure=fe_pt_n2, source="FePtN2.cif")
    assert doc.likely_metal is True
    assert doc.likely_metal_reason.startswith("open-shell transition metal in a nitride")
    assert doc.schema_version == PREDICTION_SCHEMA_VERSION
    zno = make_doc("ZnO")
    assert zno.likely_metal is False
    assert zno.likely_metal_reason is None


def test_an_older_document_gains_the_flag_on_migration(fe_pt_n2):
    old = make_doc("FePtN2", structure=fe_pt_n2, source="FePtN2.cif").to_store_dict()
    old["schema_version"] = 2
    del old["likely_metal"], old["likely_metal_reason"]
    old["dfpt"] = {"state": "accepted"}
    migrated = migrate_prediction_dict(old)
    assert migrated["schema_version"] == PREDICTION_SCHEMA_VERSION
    assert migrated["likely_metal"] is True
    assert migrated["likely_metal_reason"].startswith("open-shell transition metal")
    assert migrated["dfpt"] == {"state": "accepted"}


@pytest.fixture
def store(tmp_path, fe_pt_n2):
    s = EmbeddedStore(str(tmp_path / "p.sqlite"), "preds", key="prediction_id")
    s.connect()
    upsert_predictions(
        s,
        [
            make_doc("FePtN2", structure=fe_pt_n2, source="FePtN2.cif", eps=(20.0, 20.0, 24.0)),
            make_doc("ZnO", eps=(4.0, 4.0, 5.0), e_max=1.0),
            make_doc("NaCl", eps=(2.0, 2.0, 2.0)),
        ],
    )
    return s


def test_query_leaves_likely_metals_out_of_dielectric_and_piezo_by_default(store):
    rows = query_candidates(store, "dielectric")
    assert [r["formula"] for r in rows] == ["ZnO", "NaCl"]
    assert all(r["likely_metal"] is False for r in rows)
    assert "FePtN2" not in [r["formula"] for r in query_candidates(store, "dielectric_total")]
    piezo = query_candidates(store, "piezo")
    assert "FePtN2" not in [r["formula"] for r in piezo]


def test_include_metals_brings_them_back(store):
    rows = query_candidates(store, "dielectric", include_metals=True)
    assert [r["formula"] for r in rows] == ["FePtN2", "ZnO", "NaCl"]
    assert rows[0]["likely_metal"] is True


def test_elastic_keeps_metals_unless_asked(store):
    assert "FePtN2" in [r["formula"] for r in query_candidates(store, "elastic")]
    strict = query_candidates(store, "elastic", include_metals=False)
    assert "FePtN2" not in [r["formula"] for r in strict]


def test_include_metals_must_be_a_plain_bool():
    assert "$and" in CandidateQuery(prop="dielectric").criteria()
    assert "$and" not in CandidateQuery(prop="dielectric", include_metals=True).criteria()
    assert "$and" not in CandidateQuery(prop="elastic").criteria()
    with pytest.raises(ValueError, match="include_metals"):
        CandidateQuery.build(prop="dielectric", include_metals={"$ne": None})


def test_a_source_band_gap_overrules_the_likely_metal_heuristic(tmp_path, fe_pt_n2):
    """The heuristic decides only where the source gives no band gap (and no is_metal): a
    flagged crystal with a source gap > 0 is kept, a source gap of 0 or is_metal=True is a
    metal whatever the heuristic says."""
    s = EmbeddedStore(str(tmp_path / "gap.sqlite"), "preds", key="prediction_id")
    s.connect()

    def fe_pt_n2_scaled(factor: float) -> Structure:  # another crystal, flagged alike
        s = fe_pt_n2.copy()
        s.scale_lattice(s.volume * factor)
        return s

    eps = (20.0, 20.0, 24.0)
    docs = [
        make_doc("FePtN2", structure=fe_pt_n2, source="gapped.cif", band_gap=1.2, eps=eps),
        make_doc("FePtN2", structure=fe_pt_n2_scaled(1.05), source="flagged.cif", eps=eps),
        make_doc(
            "FePtN2",
            structure=fe_pt_n2_scaled(1.1),
            source="not-metal.cif",
            is_metal=False,
            eps=eps,
        ),
        make_doc("ZnO", source="zero-gap.cif", band_gap=0.0, eps=(4.0, 4.0, 5.0)),
        make_doc("NaCl", source="metal.cif", is_metal=True, eps=(2.0, 2.0, 2.0)),
        make_doc("GaAs", source="plain.cif", eps=(2.0, 2.0, 2.0)),
    ]
    assert [d.likely_metal for d in docs] == [True, True, True, False, False, False]
    upsert_predictions(s, docs)
    sources = {r["source"] for r in query_candidates(s, "dielectric", top=10)}
    assert sources == {"gapped.cif", "not-metal.cif", "plain.cif"}
    everything = {
        r["source"] for r in query_candidates(s, "dielectric", top=10, include_metals=True)
    }
    assert len(everything) == 6


def test_query_cli_include_metals_switch(store, tmp_path, monkeypatch):
    from atomate2_gmt.cli.app import app

    project = tmp_path / "project"
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(project))
    monkeypatch.setenv("HOME", str(tmp_path))
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import candidate_store

    target = candidate_store(GMTSettings())
    target.connect()
    target.update(list(store.query({})), key="prediction_id")
    target.close()
    args = ["query", "--property", "dielectric", "--format", "csv"]
    default = CliRunner().invoke(app, args)
    assert default.exit_code == 0, default.output
    assert "FePtN2" not in default.stdout
    assert "ZnO" in default.stdout
    both = CliRunner().invoke(app, [*args, "--include-metals"])
    assert both.exit_code == 0, both.output
    assert "FePtN2" in both.stdout
    assert "ZnO" in both.stdout


def test_show_says_a_document_is_a_likely_metal(store, tmp_path, monkeypatch):
    from atomate2_gmt.cli.app import app
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import candidate_store

    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("HOME", str(tmp_path))
    target = candidate_store(GMTSettings())
    target.connect()
    target.update(list(store.query({})), key="prediction_id")
    target.close()
    pic = str(tmp_path / "p.png")
    metal = CliRunner().invoke(app, ["show", "FePtN2.cif", "--picture", pic])
    assert metal.exit_code == 0, metal.output
    assert (
        "likely metal (open-shell transition metal in a nitride: Fe2+ (d6), Pt4+ (d6)): its ε "
        "and e predictions, made as for an insulator, mean little" in metal.stdout
    )
    insulator = CliRunner().invoke(app, ["show", "ZnO.cif", "--picture", pic])
    assert insulator.exit_code == 0, insulator.output
    assert "likely metal" not in insulator.stdout
    # d = e·S from the document's own e and C (pC/N), frame-free: the longitudinal maximum
    import numpy as np

    from atomate2_gmt.schemas.stored import expand_prediction_dict
    from atomate2_gmt.tensors.properties import (
        compliance_from_elastic,
        piezo_d_from_e,
        piezo_longitudinal_max,
    )

    doc = expand_prediction_dict(next(store.query({"source": "ZnO.cif"})))  # the read form
    e = np.asarray(doc["predictions"]["piezo"]["tensor"])
    c = np.asarray(doc["predictions"]["elastic"]["tensor"])
    d_long = piezo_longitudinal_max(piezo_d_from_e(e, compliance_from_elastic(c)))[0]
    assert d_long > 0
    assert f"largest longitudinal d = {d_long:.4g} pC/N" in insulator.stdout


def test_a_document_costs_one_spglib_search_metallicity_included(monkeypatch):
    """The screening worker's symmetry facts (key, IEEE frame, metallicity) come from one
    SymmetryAnalysis: one spglib dataset per structure, no search of the metallicity rule's
    own, and the same flag as the rule run alone."""
    import spglib

    from atomate2_gmt.schemas.prediction import GMTPredictionDoc, symmetry_facts
    from atomate2_gmt.tensors.symmetry import point_group_info

    snsb = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(6.13), ["Sn", "Sb"], [[0, 0, 0], [0.5] * 3]
    )
    alone = likely_metal(snsb)
    calls: list[str] = []
    for name in ("get_symmetry_dataset", "standardize_cell", "find_primitive"):
        original = getattr(spglib, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(spglib, name, counted)
    facts = symmetry_facts(snsb, 0.01)
    doc = GMTPredictionDoc.from_predictions(
        snsb,
        {"dielectric": {"state": "failed", "error": "not predicted", "tensor": None}},
        source="SnSb",
        structure_key=facts["structure_key"],
        ieee_rotation=facts["ieee_rotation"],
        metallicity=facts["metallicity"],
        point_group_info=point_group_info(snsb, 0.01),
    )
    assert calls == ["get_symmetry_dataset"]
    assert (doc.likely_metal, doc.likely_metal_reason) == (alone.likely_metal, alone.reason)
    assert (
        doc.likely_metal_reason
        == "odd number of electrons (101) per primitive cell, no magnetic ion"
    )


def test_oxidation_states_are_searched_once_per_composition(monkeypatch):
    """pymatgen's oxidation-state search runs once per reduced composition: a supercell or
    another polymorph reuses it, another composition (or oxidation-decorated species) does
    not."""
    from pymatgen.core import Composition

    from atomate2_gmt.schemas import metallicity

    metallicity._guess.cache_clear()
    calls: list[str] = []
    real = Composition.oxi_state_guesses

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(self.reduced_formula)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Composition, "oxi_state_guesses", counting)
    first = metallicity._oxidation_states(Composition("Fe2O3"))
    first["Fe"] = 99.0  # a caller's change never reaches the cache
    assert metallicity._oxidation_states(Composition("Fe4O6")) == {"Fe": 3.0, "O": -2.0}
    assert metallicity._oxidation_states(Composition("FeO")) == {"Fe": 2.0, "O": -2.0}
    decorated = Composition({"Fe3+": 2, "O2-": 3})
    metallicity._oxidation_states(decorated)
    assert calls == ["Fe2O3", "FeO", decorated.reduced_formula]
