"""Study presets select exactly what the published rules say, on documents with and without
the candidate source's band gap and energy above the hull; the figures of merit are computed
from the stored tensors; what a preset cannot decide is counted, never silently dropped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from gmt_store_docs import STRUCTURES, make_doc
from typer.testing import CliRunner

from atomate2_gmt.cli.query import register
from atomate2_gmt.jobs.select import SelectionPolicy, select_candidates
from atomate2_gmt.query import CandidateQuery, missing_values, query_candidates
from atomate2_gmt.schemas.stored import expand_prediction_dict
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import EmbeddedStore, MatchCount, candidate_store, upsert_predictions


def _scaled(name: str, factor: float):
    s = STRUCTURES[name].copy()
    s.scale_lattice(s.volume * factor)
    return s


def _store(tmp_path, docs, name="s.sqlite"):
    s = EmbeddedStore(str(tmp_path / name), "preds", key="prediction_id")
    s.connect()
    assert upsert_predictions(s, docs) == len(docs)
    return s


# --------------------------------------------------------------------------------------------
# Materials Project piezo rule (de Jong et al. 2015)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def piezo_docs():
    return [
        make_doc("ZnO", e_max=1.0, band_gap=3.3, material_id="mp-2133"),
        make_doc("CdS", e_max=0.4, band_gap=0.05),  # gap too small: a (semi)metal in MP's rule
        make_doc("GaAs", e_max=0.15, band_gap=1.4),
        make_doc("NaCl", e_max=0.0, band_gap=5.0),  # centrosymmetric
        make_doc("PbTiO3", e_max=3.5),  # the source gave no band gap: cannot be decided
        make_doc("TiO2", e_max=0.0, band_gap=1.8),  # centrosymmetric
    ]


def test_mp_piezo_preset_is_the_published_rule(tmp_path, piezo_docs):
    store = _store(tmp_path, piezo_docs)
    query = CandidateQuery(preset="mp-piezo", top=10)
    rows = query_candidates(store, query)
    # non-centrosymmetric, source DFT gap > 0.1 eV, ranked by e_ij_max
    assert [r["formula"] for r in rows] == ["ZnO", "GaAs"]
    assert [r["e_ij_max"] for r in rows] == pytest.approx([1.0, 0.15])
    assert rows[0]["band_gap"] == 3.3
    assert rows[0]["material_id"] == "mp-2133"
    assert rows[0]["energy_above_hull"] is None  # not given by the source, never invented
    # PbTiO3 (the largest response) lacks the band gap: said, not silently dropped or passed
    assert missing_values(store, query) == {"the source's band gap": MatchCount(1)}
    # the same preset in the selection policy picks the same crystals
    picks = select_candidates(store, SelectionPolicy(query="mp-piezo", top_k=5, max_sites=None))
    assert [d["formula_pretty"] for d in picks] == ["ZnO", "GaAs"]


def test_min_band_gap_filters_on_the_source_value(tmp_path, piezo_docs):
    store = _store(tmp_path, piezo_docs)
    query = CandidateQuery(prop="piezo", min_band_gap=1.5, top=10)
    rows = query_candidates(store, query)
    assert rows[0]["formula"] == "ZnO"  # then the two centrosymmetric crystals (e_ij_max 0)
    assert {r["formula"] for r in rows[1:]} == {"TiO2", "NaCl"}
    assert missing_values(store, query) == {"the source's band gap": MatchCount(1)}
    without = CandidateQuery(prop="piezo", top=10)
    assert len(query_candidates(store, without)) == 6
    assert missing_values(store, without) == {}


def test_a_preset_refuses_options_that_contradict_it():
    with pytest.raises(ValueError, match="preset 'mp-piezo' sets non_centrosymmetric=True"):
        CandidateQuery.build(preset="mp-piezo", non_centrosymmetric=False)
    narrowed = CandidateQuery.build(preset="mp-piezo", exclude_elements="Pb")
    assert narrowed.criteria()["elements"] == {"$nin": ["Pb"]}
    assert narrowed.prop == "piezo"
    assert narrowed.non_centrosymmetric is True


# --------------------------------------------------------------------------------------------
# JARVIS thresholds (Choudhary et al. 2020)
# --------------------------------------------------------------------------------------------


def test_jarvis_piezo_is_max_abs_component_at_least_half_a_coulomb(tmp_path, piezo_docs):
    store = _store(tmp_path, piezo_docs)
    rows = query_candidates(store, CandidateQuery(preset="jarvis-piezo", top=10))
    # the rule on the stored tensors, computed here independently
    expected = {}
    for stored in store.query({}):
        doc = expand_prediction_dict(stored)  # the IEEE-frame form, computed on read
        voigt = np.asarray(doc["predictions"]["piezo"]["voigt_ieee"])
        if np.abs(voigt).max() >= 0.5:
            expected[doc["formula_pretty"]] = float(np.abs(voigt).max())
    assert expected  # the rule selects something here, and not everything
    assert len(expected) < len(piezo_docs)
    assert {r["formula"]: r["e_ij_abs_max"] for r in rows} == pytest.approx(expected)
    assert [r["e_ij_abs_max"] for r in rows] == sorted(expected.values(), reverse=True)


def test_jarvis_dielectric_is_mean_total_at_least_twenty(tmp_path):
    docs = [  # ε0 = 2 ε∞ in these documents: mean ε0 = 2 · mean(eps)
        make_doc("GaAs", eps=(10.0, 10.0, 10.0)),  # 20: a hit (≥)
        make_doc("NaCl", eps=(9.0, 9.0, 9.0)),  # 18
        make_doc("TiO2", eps=(12.0, 12.0, 15.0)),  # 26
    ]
    store = _store(tmp_path, docs)
    rows = query_candidates(store, CandidateQuery(preset="jarvis-dielectric", top=10))
    assert [r["formula"] for r in rows] == ["TiO2", "GaAs"]
    assert [r["dielectric_total_mean"] for r in rows] == pytest.approx([26.0, 20.0])


# --------------------------------------------------------------------------------------------
# the dielectric figure of merit Φ = Eg·ε̄_total (Riebesell et al. 2024)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def dielectric_docs():
    return [
        # Φ = 3.0 · 120 = 360, σ_Φ = 3 · 10 = 30 → rank value 330
        make_doc(
            "GaAs",
            eps=(60.0, 60.0, 60.0),
            band_gap=3.0,
            energy_above_hull=0.0,
            uncertainty={"dielectric_total_mean": 10.0},
        ),
        # Φ = 3.3 · 106.7 = 352, σ_Φ = 3.3 → rank value 348.7: first despite the smaller Φ
        make_doc(
            "TiO2",
            eps=(50.0, 50.0, 60.0),
            band_gap=3.3,
            energy_above_hull=0.02,
            uncertainty={"dielectric_total_mean": 1.0},
        ),
        make_doc("NaCl", eps=(70.0, 70.0, 70.0), band_gap=2.0, energy_above_hull=0.2),  # hull
        make_doc("CdS", eps=(120.0, 120.0, 120.0), band_gap=3.0, energy_above_hull=0.0),  # ε∞>100
        make_doc("ZnO", eps=(40.0, 40.0, 40.0), band_gap=2.5, energy_above_hull=0.0),  # Φ 200
        make_doc("PbTiO3", eps=(60.0, 60.0, 60.0), energy_above_hull=0.0),  # no band gap
        make_doc("GaAs", structure=_scaled("GaAs", 1.1), eps=(60.0, 60.0, 60.0), band_gap=3.0),
    ]


def test_riebesell_figure_of_merit_from_the_stored_tensor(tmp_path, dielectric_docs):
    store = _store(tmp_path, dielectric_docs)
    query = CandidateQuery(preset="riebesell-dielectric", top=10)
    rows = query_candidates(store, query, include_tensors=True)
    assert [r["formula"] for r in rows] == ["TiO2", "GaAs"]
    for row in rows:  # Φ = Eg · mean eigenvalue of the stored ε_total
        eps_bar = np.linalg.eigvalsh(np.asarray(row["tensor"])).mean()
        assert row["phi"] == pytest.approx(row["band_gap"] * eps_bar)
        assert row["phi"] > 240
    assert rows[1]["phi"] == pytest.approx(360.0)
    assert rows[1]["uncertainty"]["phi"] == pytest.approx(30.0)  # Eg · σ(ε̄)
    assert rows[0]["uncertainty"]["phi"] == pytest.approx(3.3)
    assert rows[0]["phi"] < rows[1]["phi"]  # ranked on Φ − σ_Φ: the surer candidate first
    assert missing_values(store, query) == {
        "the source's band gap": MatchCount(1),
        "the source's energy_above_hull": MatchCount(1),
    }


def test_riebesell_needs_the_predicted_electronic_part(tmp_path):
    docs = [
        make_doc(
            "GaAs",
            tasks=("dielectric_total",),
            eps=(60.0, 60.0, 60.0),
            band_gap=3.0,
            energy_above_hull=0.0,
        )
    ]
    store = _store(tmp_path, docs)
    query = CandidateQuery(preset="riebesell-dielectric")
    assert query_candidates(store, query) == []
    assert missing_values(store, query) == {"the predicted ε∞ (task dielectric)": MatchCount(1)}


def test_selection_policy_uses_the_figure_and_its_sigma(tmp_path, dielectric_docs):
    store = _store(tmp_path, dielectric_docs)
    exploit = SelectionPolicy(query="riebesell-dielectric", top_k=2, max_sites=None)
    assert [d["formula_pretty"] for d in select_candidates(store, exploit)] == ["TiO2", "GaAs"]
    # ucb: Φ + κ σ_Φ puts the uncertain GaAs first (360 + 30 > 352 + 3.3)
    ucb = SelectionPolicy(query="riebesell-dielectric", top_k=2, max_sites=None, strategy="ucb")
    assert [d["formula_pretty"] for d in select_candidates(store, ucb)] == ["GaAs", "TiO2"]


# --------------------------------------------------------------------------------------------
# the command line: presets, source filters, σ, units, JSON rows
# --------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch, dielectric_docs, piezo_docs):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_CANDIDATE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "proj"))
    store = candidate_store(GMTSettings())
    upsert_predictions(store, dielectric_docs)
    store.close()
    return tmp_path / "proj"


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.command()
    def other() -> None:
        """Placeholder."""

    return application


def test_cli_preset_table_shows_sigma_units_and_what_was_left_out(app, project):
    result = CliRunner().invoke(app, ["query", "--preset", "riebesell-dielectric"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "preset riebesell-dielectric" in out
    assert "Riebesell" in out
    assert "phi (eV)" in out
    assert "band_gap (eV)" in out
    assert "energy_above_hull" in out
    assert "352 ± 3.3" in out
    assert "360 ± 30" in out
    assert "left out, lacking a value this query needs: 1 without the source's band gap" in out


def test_cli_json_rows_carry_the_source_values(app, project):
    result = CliRunner().invoke(
        app, ["query", "-p", "dielectric_total", "--format", "json", "--min-band-gap", "2.6"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["formula"] for r in rows} == {"GaAs", "TiO2", "CdS"}
    for row in rows:
        assert {"band_gap", "energy_above_hull", "material_id", "uncertainty"} <= set(row)
        assert row["band_gap"] >= 2.6
    scaled = [r for r in rows if r["energy_above_hull"] is None]
    assert len(scaled) == 1  # the source gave no energy above the hull: None, not invented
    single = next(r for r in rows if r["formula"] == "CdS")
    assert single["uncertainty"] == {}
    assert single["uncertainty_note"] == "σ n/a (single model)"
    assert "1 without the source's band gap" in result.stderr


def test_cli_single_model_rows_say_sigma_is_missing(app, project):
    result = CliRunner().invoke(app, ["query", "-p", "dielectric_total", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "(σ n/a)" in result.output
    assert "σ n/a: predicted by a single model" in result.output
    assert "dielectric_total_mean" in result.output


def test_cli_refuses_a_contradicting_preset(app, project):
    result = CliRunner().invoke(app, ["query", "--preset", "mp-piezo", "-p", "elastic"])
    assert result.exit_code == 2
    assert "preset 'mp-piezo' sets prop='piezo'" in result.output
