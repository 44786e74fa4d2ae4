"""The GMTNet JARVIS loader on small pickles written here in the benchmark's schema, the
restricted unpickler against malicious pickles, hash checks and the download function."""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymatgen.core import Structure

from atomate2_gmt.data import jarvis as jarvis_mod
from atomate2_gmt.data.jarvis import (
    GMTNET_JARVIS_FILES,
    FileHashes,
    RestrictedUnpickler,
    fetch_gmtnet_jarvis,
    git_blob_sha1,
    jarvis_atoms_to_structure,
    load_gmtnet_jarvis,
    safe_load_pickle,
)
from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.tensors.symmetry import symmetrize

# VASP's Voigt order, written out here independently of the conventions module
VASP_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))


def _to_vasp_piezo(e: np.ndarray) -> list[list[float]]:
    return [[float(e[i, a, b]) for a, b in VASP_PAIRS] for i in range(3)]


def _to_vasp_elastic_kbar(c_gpa: np.ndarray) -> list[list[float]]:
    return [[10.0 * float(c_gpa[a, b, c, d]) for c, d in VASP_PAIRS] for a, b in VASP_PAIRS]


def _atoms_dict(structure: Structure, cartesian: bool = False, ordered: bool = False) -> Any:
    """What jarvis-tools ``Atoms.to_dict()`` holds (lists, floats, strings)."""
    coords = structure.cart_coords if cartesian else structure.frac_coords
    d = {
        "lattice_mat": structure.lattice.matrix.tolist(),
        "coords": coords.tolist(),
        "elements": [site.specie.symbol for site in structure],
        "abc": list(structure.lattice.abc),
        "angles": list(structure.lattice.angles),
        "cartesian": cartesian,
        "props": [""] * len(structure),
    }
    return OrderedDict(d) if ordered else d


def _eps_for(structure: Structure, scale: float = 1.0) -> list[list[float]]:
    """A realistic ε∞ (5–7) that respects the structure's point group."""
    eps = symmetrize(np.diag([5.0, 6.0, 7.0]) * scale, structure, "dielectric")
    return eps.tolist()


@pytest.fixture(scope="module")
def piezo_records() -> list:
    # wurtzite GaN first, then other small real structures with their real piezo tensors
    recs = load_mp("piezo").records
    gan = next(r for r in recs if r.id == "mp-804")
    return [gan, *[r for r in recs if len(r.structure) <= 12 and r.id != "mp-804"][:18]]


@pytest.fixture(scope="module")
def elastic_records() -> list:
    # diamond Si first, then other small real structures with their real elastic tensors
    recs = load_mp("elastic").records
    si = next(r for r in recs if r.id == "mp-149")
    return [si, *[r for r in recs if len(r.structure) <= 8 and r.id != "mp-149"][:11]]


@pytest.fixture
def diele_piezo_pkl(tmp_path: Path, piezo_records: list) -> tuple[Path, list[dict]]:
    entries: list[dict] = []
    for k, rec in enumerate(piezo_records):
        entries.append(
            {
                "JARVIS_ID": f"JVASP-{1000 + k}",
                "atoms": _atoms_dict(rec.structure, cartesian=k % 2 == 1, ordered=k % 3 == 0),
                "dielectric": _eps_for(rec.structure, 1.0 + 0.05 * k),
                "dielectric_ionic": _eps_for(rec.structure, 0.2),
                "piezoelectric_C_m2": _to_vasp_piezo(rec.tensor),
                "elastic_total_kbar": "na",
            }
        )
    gan = piezo_records[0].structure
    # a dielectric outlier (max|ε| = 150 ≥ 100) with a fine piezo tensor
    entries.append(
        {
            "JARVIS_ID": "JVASP-DIEL-OUTLIER",
            "atoms": _atoms_dict(gan),
            "dielectric": _eps_for(gan, 150.0 / 7.0),
            "dielectric_ionic": _eps_for(gan, 0.2),
            "piezoelectric_C_m2": _to_vasp_piezo(piezo_records[0].tensor),
        }
    )
    # a piezo outlier (max|e| = 120 ≥ 100) and one without a piezo tensor
    entries.append(
        {
            "JARVIS_ID": "JVASP-PIEZO-OUTLIER",
            "atoms": _atoms_dict(gan),
            "dielectric": _eps_for(gan),
            "dielectric_ionic": _eps_for(gan, 0.2),
            "piezoelectric_C_m2": _to_vasp_piezo(
                piezo_records[0].tensor * 120.0 / np.abs(piezo_records[0].tensor).max()
            ),
        }
    )
    entries.append(
        {
            "JARVIS_ID": "JVASP-NO-PIEZO",
            "atoms": _atoms_dict(gan),
            "dielectric": _eps_for(gan),
            "dielectric_ionic": "na",
            "piezoelectric_C_m2": "na",
        }
    )
    path = tmp_path / "diele_piezo_test.pkl"
    path.write_bytes(pickle.dumps(entries, protocol=4))
    return path, entries


@pytest.fixture
def elastic_pkl(tmp_path: Path, elastic_records: list) -> tuple[Path, dict[str, np.ndarray]]:
    entries: list[dict] = []
    expected: dict[str, np.ndarray] = {}
    for k, rec in enumerate(elastic_records):
        c = symmetrize(rec.tensor, rec.structure, "elastic")  # exact zeros where forbidden
        jid = f"JVASP-E{k}"
        expected[jid] = c
        entries.append(
            {
                "JARVIS_ID": jid,
                "atoms": _atoms_dict(rec.structure),
                "elastic_total_kbar": _to_vasp_elastic_kbar(c),
            }
        )
    si = elastic_records[0]
    c_si = symmetrize(si.tensor, si.structure, "elastic")
    tiny = c_si.copy()
    tiny[0, 0, 1, 2] = tiny[0, 0, 2, 1] = tiny[1, 2, 0, 0] = tiny[2, 1, 0, 0] = 5e-5  # C14
    expected["JVASP-SI-TINY-C14"] = tiny
    bad = c_si.copy()
    bad[0, 0, 1, 2] = bad[0, 0, 2, 1] = bad[1, 2, 0, 0] = bad[2, 1, 0, 0] = 0.5  # C14, GPa
    stiff = c_si * (1600.0 / c_si.max())
    for jid, c in (
        ("JVASP-SI-TINY-C14", tiny),
        ("JVASP-SI-FORBIDDEN-C14", bad),
        ("JVASP-TOO-STIFF", stiff),
    ):
        entries.append(
            {
                "JARVIS_ID": jid,
                "atoms": _atoms_dict(si.structure),
                "elastic_total_kbar": _to_vasp_elastic_kbar(c),
            }
        )
    path = tmp_path / "elastic_test.pkl"
    path.write_bytes(pickle.dumps(entries, protocol=2))
    return path, expected


# ------------------------------------------------------------------------------ structures


def test_atoms_dict_to_structure_fractional_and_cartesian(piezo_records: list) -> None:
    ref = piezo_records[0].structure
    for cartesian in (False, True):
        s = jarvis_atoms_to_structure(_atoms_dict(ref, cartesian=cartesian))
        np.testing.assert_allclose(s.lattice.matrix, ref.lattice.matrix, atol=1e-12)
        np.testing.assert_allclose(s.cart_coords, ref.cart_coords, atol=1e-9)
        assert [site.specie.symbol for site in s] == [site.specie.symbol for site in ref]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lattice_mat": [[1, 0, 0], [0, 1, 0]]}, "lattice_mat must be 3x3"),
        ({"lattice_mat": [[1, 0, 0], [2, 0, 0], [0, 0, 1]]}, "singular"),
        ({"coords": [[0, 0, 0]]}, "does not match"),
        ({"cartesian": "no"}, "'cartesian' must be a bool"),
    ],
)
def test_bad_atoms_dict_is_refused(piezo_records: list, change: dict, message: str) -> None:
    atoms = {**_atoms_dict(piezo_records[0].structure), **change}
    with pytest.raises(ValueError, match=message):
        jarvis_atoms_to_structure(atoms)
    with pytest.raises(ValueError, match=r"lacks the keys \['elements'\]"):
        jarvis_atoms_to_structure({"lattice_mat": np.eye(3).tolist(), "coords": [[0, 0, 0]]})


# ------------------------------------------------------------------------------ loader


def test_piezo_loader_converts_vasp_order_and_filters(diele_piezo_pkl, piezo_records) -> None:
    path, entries = diele_piezo_pkl
    splits = load_gmtnet_jarvis(path, "piezo", verify=False)
    assert splits.n_total == len(entries) == 22
    assert set(splits.excluded) == {"JVASP-PIEZO-OUTLIER", "JVASP-NO-PIEZO"}
    assert "max|T| = 120" in splits.excluded["JVASP-PIEZO-OUTLIER"]
    assert "missing ('na')" in splits.excluded["JVASP-NO-PIEZO"]
    assert splits.n_kept == 20
    by_id = {r.id: r for r in splits.records}
    for k, mp_rec in enumerate(piezo_records):
        rec = by_id[f"JVASP-{1000 + k}"]
        np.testing.assert_allclose(rec.tensor, mp_rec.tensor, atol=1e-12)
        np.testing.assert_allclose(
            rec.structure.cart_coords, mp_rec.structure.cart_coords, atol=1e-9
        )
        assert rec.units == "C/m^2"
        assert rec.source == "gmtnet_jarvis"
        assert rec.provenance["voigt_order_in_file"].startswith("vasp")
    # e_15 of GaN sits in the xz column: standard Voigt column 4, VASP column 5
    gan = by_id["JVASP-1000"]
    assert gan.voigt[0, 4] == pytest.approx(entries[0]["piezoelectric_C_m2"][0][5])
    assert gan.voigt[0, 4] != pytest.approx(entries[0]["piezoelectric_C_m2"][0][4])


def test_dielectric_loader_filters_and_splits(diele_piezo_pkl) -> None:
    path, entries = diele_piezo_pkl
    splits = load_gmtnet_jarvis(path, "dielectric", verify=False)
    assert set(splits.excluded) == {"JVASP-DIEL-OUTLIER"}
    assert "150" in splits.excluded["JVASP-DIEL-OUTLIER"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (17, 2, 2)  # 21 kept
    for rec in splits.records:
        raw = next(e for e in entries if e["JARVIS_ID"] == rec.id)
        np.testing.assert_allclose(rec.tensor, raw["dielectric"], atol=1e-12)
        assert rec.units == "dimensionless"
    again = load_gmtnet_jarvis(path, "dielectric", verify=False)
    assert [r.id for r in again.test] == [r.id for r in splits.test]
    other = load_gmtnet_jarvis(path, "dielectric", verify=False, seed=33)
    assert [r.id for r in other.train] != [r.id for r in splits.train]


def test_elastic_loader_kbar_to_gpa_order_and_symmetry_filter(elastic_pkl) -> None:
    path, expected = elastic_pkl
    splits = load_gmtnet_jarvis(path, "elastic", verify=False)
    assert set(splits.excluded) == {"JVASP-SI-FORBIDDEN-C14", "JVASP-TOO-STIFF"}
    assert "symmetry-forbidden" in splits.excluded["JVASP-SI-FORBIDDEN-C14"]
    assert "1500" in splits.excluded["JVASP-TOO-STIFF"]
    by_id = {r.id: r for r in splits.records}
    assert set(by_id) == set(expected)
    for jid, c in expected.items():
        np.testing.assert_allclose(by_id[jid].tensor, c, atol=1e-9)  # GPa, standard frame
        assert by_id[jid].units == "GPa"
        assert by_id[jid].provenance["unit_conversion"] == "kbar -> GPa (x0.1)"
    si = by_id["JVASP-SI-TINY-C14"].voigt
    assert 100.0 < si[0, 0] < 200.0  # silicon C11 in GPa after ÷10


def test_folder_path_picks_the_task_file(tmp_path: Path, diele_piezo_pkl) -> None:
    path, _ = diele_piezo_pkl
    (tmp_path / "jarvis_diele_piezo.pkl").write_bytes(path.read_bytes())
    splits = load_gmtnet_jarvis(tmp_path, "piezo", verify=False)
    assert splits.n_kept == 20
    with pytest.raises(ValueError, match=r"jarvis_elastic\.pkl"):
        load_gmtnet_jarvis(tmp_path, "elastic", verify=False)


def test_loader_refuses_tasks_and_unknown_files(diele_piezo_pkl) -> None:
    path, _ = diele_piezo_pkl
    with pytest.raises(ValueError, match="not in the GMTNet JARVIS benchmark"):
        load_gmtnet_jarvis(path, "dielectric_total", verify=False)
    with pytest.raises(ValueError, match="not a known benchmark file"):
        load_gmtnet_jarvis(path, "piezo")


def test_verified_load_refuses_a_file_with_the_benchmark_name(tmp_path: Path, diele_piezo_pkl):
    path, _ = diele_piezo_pkl
    fake = tmp_path / "jarvis_diele_piezo.pkl"
    fake.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_gmtnet_jarvis(fake, "piezo")


# ------------------------------------------------------------------------------ unpickler


class _Payload:
    """Pickles to ``func(*args)``: what a malicious pickle asks the unpickler to call."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _write_sentinel_code(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('pwned')"


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_exec_payload_is_refused_without_running(tmp_path: Path, protocol: int) -> None:
    sentinel = tmp_path / "sentinel"
    blob = pickle.dumps(
        [
            {
                "JARVIS_ID": "JVASP-1",
                "atoms": _Payload(builtins.exec, _write_sentinel_code(sentinel)),
            }
        ],
        protocol=protocol,
    )
    path = tmp_path / "evil.pkl"
    path.write_bytes(blob)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refused global '(builtins|__builtin__)\.exec'"
    ):
        safe_load_pickle(path)
    assert not sentinel.exists()
    # control: the payload is live — the standard unpickler does run it
    pickle.loads(blob)  # deliberate, writes only into the temporary folder
    assert sentinel.read_text() == "pwned"


def test_os_system_and_eval_payloads_are_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel_system"
    path = tmp_path / "system.pkl"
    path.write_bytes(pickle.dumps(_Payload(os.system, f"touch {sentinel}")))
    with pytest.raises(pickle.UnpicklingError, match=r"refused global '(posix|nt|os)\.system'"):
        safe_load_pickle(path)
    assert not sentinel.exists()
    path.write_bytes(pickle.dumps(_Payload(builtins.eval, "__import__('os').getpid()")))
    with pytest.raises(
        pickle.UnpicklingError, match=r"refused global '(builtins|__builtin__)\.eval'"
    ):
        safe_load_pickle(path)


def test_numpy_arrays_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "numpy.pkl"
    path.write_bytes(pickle.dumps([{"dielectric": np.eye(3)}]))
    with pytest.raises(pickle.UnpicklingError, match=r"refused global 'numpy.*numpy objects"):
        safe_load_pickle(path)


def test_plain_values_and_ordered_dicts_load(tmp_path: Path) -> None:
    value = [
        {"a": [1, 2.5, "x", None, True], "b": (1, 2)},
        OrderedDict([("lattice_mat", [[1.0, 0, 0]]), ("cartesian", False)]),
    ]
    path = tmp_path / "plain.pkl"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        assert safe_load_pickle(path) == value


def test_restricted_unpickler_refuses_persistent_ids() -> None:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "external" if obj == "ref" else None

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(["ref"])
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        RestrictedUnpickler(io.BytesIO(buffer.getvalue())).load()


def test_hash_mismatch_is_refused_before_unpickling(tmp_path: Path, monkeypatch) -> None:
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(builtins.exec, _write_sentinel_code(sentinel))))
    calls: list[str] = []

    def spy_load(self: RestrictedUnpickler) -> Any:
        calls.append("load")
        raise AssertionError("unpickling started")

    monkeypatch.setattr(RestrictedUnpickler, "load", spy_load)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        safe_load_pickle(path, sha256="0" * 64)
    with pytest.raises(ValueError, match="git blob hash mismatch"):
        safe_load_pickle(path, git_blob="0" * 40)
    assert calls == []
    assert not sentinel.exists()


def test_matching_hashes_load(tmp_path: Path) -> None:
    data = pickle.dumps([{"JARVIS_ID": "JVASP-1"}])
    path = tmp_path / "ok.pkl"
    path.write_bytes(data)
    value = safe_load_pickle(
        path, sha256=hashlib.sha256(data).hexdigest().upper(), git_blob=git_blob_sha1(data)
    )
    assert value == [{"JARVIS_ID": "JVASP-1"}]


def test_git_blob_sha1_matches_git() -> None:
    # the ids git itself gives (`git hash-object`) for an empty file and for "hello\n"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_published_hashes_are_well_formed() -> None:
    assert set(GMTNET_JARVIS_FILES) == {"jarvis_diele_piezo.pkl", "jarvis_elastic.pkl"}
    for hashes in GMTNET_JARVIS_FILES.values():
        assert len(hashes.git_blob) == 40
        int(hashes.git_blob, 16)
    assert len(GMTNET_JARVIS_FILES["jarvis_diele_piezo.pkl"].sha256 or "") == 64


# ------------------------------------------------------------------------------ download


@pytest.fixture
def remote(tmp_path: Path) -> tuple[str, dict[str, bytes]]:
    """A local folder standing in for the repository, served through file:// URLs."""
    folder = tmp_path / "remote"
    folder.mkdir()
    sentinel = tmp_path / "sentinel"
    contents = {
        "jarvis_diele_piezo.pkl": pickle.dumps(
            _Payload(builtins.exec, _write_sentinel_code(sentinel))
        ),
        "jarvis_elastic.pkl": pickle.dumps([{"JARVIS_ID": "JVASP-E1"}]),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder.as_uri() + "/", contents


def _hashes_of(contents: dict[str, bytes]) -> dict[str, FileHashes]:
    return {
        name: FileHashes(git_blob=git_blob_sha1(data), sha256=hashlib.sha256(data).hexdigest())
        for name, data in contents.items()
    }


def test_fetch_downloads_and_verifies(tmp_path: Path, remote) -> None:
    url, contents = remote
    dest = tmp_path / "dest"
    paths = fetch_gmtnet_jarvis(dest, url, files=_hashes_of(contents))
    assert set(paths) == set(contents)
    for name, data in contents.items():
        assert paths[name] == dest / name
        assert paths[name].read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == sorted(contents)  # no partial files
    assert not (tmp_path / "sentinel").exists()  # fetching never unpickles


def test_fetch_refuses_files_that_do_not_match_the_published_hashes(tmp_path, remote) -> None:
    url, _ = remote
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match=r"jarvis_diele_piezo\.pkl from .*sha256 mismatch"):
        fetch_gmtnet_jarvis(dest, url)  # the real published hashes
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "sentinel").exists()


def test_fetch_refuses_git_blob_mismatch(tmp_path: Path, remote) -> None:
    url, contents = remote
    hashes = _hashes_of(contents)
    hashes["jarvis_elastic.pkl"] = FileHashes(git_blob="1" * 40)
    with pytest.raises(ValueError, match="git blob hash mismatch"):
        fetch_gmtnet_jarvis(tmp_path / "dest", url, files=hashes)
    assert not (tmp_path / "dest" / "jarvis_elastic.pkl").exists()


def test_fetch_skips_verified_copies_and_replaces_corrupt_ones(tmp_path: Path, remote) -> None:
    url, contents = remote
    hashes = _hashes_of(contents)
    dest = tmp_path / "dest"
    fetch_gmtnet_jarvis(dest, url, files=hashes)

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("downloaded although a verified copy exists")

    fetch_gmtnet_jarvis(dest, url, files=hashes, opener=no_network)

    (dest / "jarvis_elastic.pkl").write_bytes(b"corrupt")
    opened: list[str] = []

    class _Response(io.BytesIO):
        pass

    def opener(target: str, timeout: float) -> _Response:
        opened.append(target)
        return _Response(contents[target.rsplit("/", 1)[1]])

    fetch_gmtnet_jarvis(dest, "https://example.invalid/data", files=hashes, opener=opener)
    assert opened == ["https://example.invalid/data/jarvis_elastic.pkl"]
    assert (dest / "jarvis_elastic.pkl").read_bytes() == contents["jarvis_elastic.pkl"]


def test_fetch_default_destination_follows_the_environment(tmp_path, remote, monkeypatch):
    url, contents = remote
    monkeypatch.setenv("ATOMATE2_GMT_DATA_DIR", str(tmp_path / "data_home"))
    paths = fetch_gmtnet_jarvis(None, url, files=_hashes_of(contents))
    assert paths["jarvis_elastic.pkl"].parent == tmp_path / "data_home" / "gmtnet_jarvis"
    assert jarvis_mod.default_jarvis_dir() == tmp_path / "data_home" / "gmtnet_jarvis"


def _billion_laughs(levels: int) -> bytes:
    """A pickle of ``levels`` nested lists, each holding its child twice: a few hundred bytes
    that expand to 2**levels strings when iterated."""
    value: Any = "lol"
    for _ in range(levels):
        value = [value, value]
    return pickle.dumps(value, protocol=2)


def test_billion_laughs_pickle_is_refused_fast(tmp_path: Path) -> None:
    import time

    blob = _billion_laughs(40)
    assert len(blob) < 300
    path = tmp_path / "laughs.pkl"
    path.write_bytes(blob)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"expands to more than 1,000,000 values through shared"):
        safe_load_pickle(path)
    # refused before any expansion: 2**40 shared references would never finish
    assert time.perf_counter() - start < 30.0


def test_shared_references_within_the_budget_load_and_cycles_are_refused(tmp_path: Path) -> None:
    lattice = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]
    value = [{"lattice_mat": lattice, "again": lattice}, {"lattice_mat": lattice}]
    path = tmp_path / "shared.pkl"
    path.write_bytes(pickle.dumps(value))
    assert safe_load_pickle(path) == value
    path.write_bytes(_billion_laughs(12))  # 8191 values: within the budget
    assert len(safe_load_pickle(path)) == 2
    cycle: list[Any] = [1]
    cycle.append(cycle)
    path.write_bytes(pickle.dumps(cycle))
    with pytest.raises(ValueError, match="reference cycle"):
        safe_load_pickle(path)
    deep: Any = 0
    for _ in range(70):
        deep = [deep]
    path.write_bytes(pickle.dumps(deep))
    with pytest.raises(ValueError, match="nests deeper than 64 levels"):
        safe_load_pickle(path)
