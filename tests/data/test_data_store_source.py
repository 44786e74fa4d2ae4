"""Training records from a store of TrainingDocs, and `train --data store|mp+store`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.jobs.conftest import vasp_dfpt_doc

from atomate2_gmt.data.records import records_hash
from atomate2_gmt.data.store_source import record_from_training_dict, records_from_store
from atomate2_gmt.jobs.feedback import write_training_docs
from atomate2_gmt.schemas.training import TrainingDoc
from atomate2_gmt.stores import EmbeddedStore, training_store
from atomate2_gmt.training.run import load_records


def _fill(store: EmbeddedStore) -> None:
    for case in ("Si_dielectric", "NaCl_phonons_dielectric", "Zn3P2S8_lepsilon_aiida-vasp"):
        write_training_docs(store, TrainingDoc.from_dfpt(vasp_dfpt_doc(case)))


def test_records_from_store(tmp_path: Path) -> None:
    store = EmbeddedStore(str(tmp_path / "t.sqlite"), "gmt_training", key="record_id")
    store.connect()
    _fill(store)
    recs, stats = records_from_store(store, "dielectric")
    assert {r.structure.composition.reduced_formula for r in recs} == {"Si", "NaCl", "Zn3(PS4)2"}
    assert stats["n_total"] == stats["n_kept"] == 3
    assert stats["by_source"] == {"dfpt_vasp": 3}
    assert [r.id for r in recs] == sorted(r.id for r in recs)
    nacl = next(r for r in recs if r.structure.composition.reduced_formula == "NaCl")
    np.testing.assert_allclose(nacl.tensor, 2.524485 * np.eye(3))
    assert nacl.units == "dimensionless"
    total, _ = records_from_store(store, "dielectric_total")  # Zn3P2S8 has no ionic part
    assert len(total) == 2
    piezo, _ = records_from_store(store, "piezo")
    assert len(piezo) == 2
    assert records_from_store(store, "elastic")[0] == []
    # a document that does not make a record is counted, not fatal
    store.update([{"record_id": "bad", "task": "dielectric", "units": "GPa", "tensor": [[1.0]]}])
    recs2, stats2 = records_from_store(store, "dielectric")
    assert records_hash(recs2) == records_hash(recs)
    assert stats2["n_invalid"] == 1
    assert "'bad'" in stats2["invalid"][0]
    with pytest.raises(ValueError, match="unknown task 'dielectrics'"):
        records_from_store(store, "dielectrics")


def test_record_from_training_dict_names_missing_fields() -> None:
    with pytest.raises(ValueError, match=r"training document 'x' lacks \['units', 'tensor'"):
        record_from_training_dict({"record_id": "x", "task": "piezo"})


def test_load_records_store_and_mp_plus_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "proj"))
    (tmp_path / "empty.yaml").write_text("{}\n")
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(tmp_path / "empty.yaml"))
    monkeypatch.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
    store = training_store()
    assert isinstance(store, EmbeddedStore)
    store.connect()
    _fill(store)
    store.close()
    recs, info = load_records("dielectric", "store")
    assert len(recs) == 3
    assert info["n_kept"] == 3
    mp, mp_info = load_records("dielectric", "mp")
    both, both_info = load_records("dielectric", "mp+store")
    assert len(both) == len(mp) + 3
    assert both_info["mp"] == mp_info
    assert both_info["store"]["n_kept"] == 3
    with pytest.raises(ValueError, match="available: mp, mp_newer, mp_all, store, mp\\+store"):
        load_records("dielectric", "jarvis+store")


def test_training_documents_from_a_smoke_run_are_never_read(tmp_path: Path) -> None:
    """A smoke-preset result that reached the training store (written before the rule, or by
    hand) is skipped with its reason, never returned as a record."""
    store = EmbeddedStore(str(tmp_path / "t.sqlite"), "gmt_training", key="record_id")
    store.connect()
    _fill(store)
    smoke = [
        d.model_copy(update={"record_id": f"smoke-{d.record_id}", "settings": {"preset": "smoke"}})
        for d in TrainingDoc.from_dfpt(vasp_dfpt_doc("Si_dielectric"))
    ]
    write_training_docs(store, smoke)
    recs, stats = records_from_store(store, "dielectric")
    assert len(recs) == 3
    assert not any(r.id.startswith("smoke-") for r in recs)
    assert stats["n_not_production"] == 1
    assert "'smoke' preset" in stats["not_production"][0]


def test_every_reader_refuses_a_smoke_training_document() -> None:
    from atomate2_gmt.data.store_source import NotProductionQualityError

    doc = TrainingDoc.from_dfpt(vasp_dfpt_doc("Si_dielectric"))[0]
    d = {**doc.model_dump(), "settings": {"preset": "smoke"}}
    with pytest.raises(NotProductionQualityError, match="'smoke' preset"):
        record_from_training_dict(d)
