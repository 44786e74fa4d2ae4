"""ABINIT input files for a q = Γ DFPT calculation (ground state, DDK, E-field, phonon, strain).

The structure is written as it is given: ``rprim`` = the lattice rows in Bohr, ``acell 3*1``,
reduced coordinates ``xred``. ABINIT keeps this Cartesian frame (it never reorients the cell),
so the tensors anaddb prints are in the frame of the input structure.

Datasets: 1 ground state; 2 DDK (d/dk wavefunctions, only with an electric field); 3 the
response (``rfelfd 3``, ``rfphon 1``, ``rfstrs 3`` as needed), all at q = Γ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt.dfpt.abinit.settings import AbinitDFPTSettings, Perturbations

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from atomate2_gmt.dfpt.abinit.pseudos import Pseudo

__all__ = [
    "ABINIT_INPUT",
    "BOHR_TO_ANG",
    "FCC_SHIFTS",
    "OUT_PREFIX",
    "AbinitInput",
    "get_variable",
    "k_shifts",
    "make_dfpt_input",
    "set_variable",
]

BOHR_TO_ANG = 0.529177210903
"""CODATA 2018 Bohr radius in Å (ABINIT 9 uses the same value)."""

ABINIT_INPUT = "run.abi"
"""Input file name; ABINIT writes ``run.abo`` next to it and ``out_DS<n>_*`` data files."""
OUT_PREFIX = "out"


@dataclass(frozen=True)
class AbinitInput:
    """Rendered input text and the datasets it contains (``gs``, ``ddk``, ``response``)."""

    text: str
    datasets: dict[str, int]
    ngkpt: tuple[int, int, int]

    def write(self, directory: str | Path) -> Path:
        """Write ``run.abi`` into ``directory`` and return its path."""
        path = Path(directory) / ABINIT_INPUT
        path.write_text(self.text)
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.16g}".replace("e", "d")
    return " ".join(_fmt(v) for v in value)


def make_dfpt_input(
    structure: Structure,
    pseudos: dict[str, Pseudo],
    perturbations: Perturbations,
    settings: AbinitDFPTSettings,
) -> AbinitInput:
    """The multi-dataset ABINIT input for ``perturbations`` on ``structure`` (frame kept)."""
    recip = structure.lattice.reciprocal_lattice.abc  # 1/Å, 2π included
    ngkpt = settings.ngkpt((recip[0], recip[1], recip[2]))
    lines = ["# atomate2-gmt ABINIT DFPT input (q = Gamma)"]
    common = _global_variables(structure, pseudos, settings, ngkpt)
    for name, value in common.items():
        lines.append(f"{name} {_fmt(value)}")
    lines += _geometry_lines(structure)
    datasets, ds = _datasets(perturbations, settings, len(structure))
    lines.append(f"ndtset {len(ds)}")
    for idx, variables in ds.items():
        lines += [f"{name}{idx} {_fmt(value)}" for name, value in variables.items()]
    return AbinitInput(text="\n".join(lines) + "\n", datasets=datasets, ngkpt=ngkpt)


def _global_variables(
    structure: Structure,
    pseudos: dict[str, Pseudo],
    settings: AbinitDFPTSettings,
    ngkpt: tuple[int, int, int],
) -> dict[str, Any]:
    """Variables shared by all datasets (cell, k-grid, SCF, I/O), then ``settings.extra``."""
    elements = list(dict.fromkeys(site.specie.symbol for site in structure))
    typat = [elements.index(site.specie.symbol) + 1 for site in structure]
    znucl = [_z(el) for el in elements]
    nelect = sum(pseudos[site.specie.symbol].z_valence for site in structure)
    shifts = k_shifts(structure)
    common: dict[str, Any] = {
        "acell": "3*1.0",
        "natom": len(structure),
        "ntypat": len(elements),
        "typat": typat,
        "znucl": znucl,
        "ecut": float(settings.ecut),
        "kptopt": 1,
        "ngkpt": list(ngkpt),
        "nshiftk": len(shifts),
        "shiftk": "  ".join(shifts),
        "occopt": 1,
        "nband": round(nelect / 2),
        "nstep": settings.nstep,
        "diemac": float(settings.diemac),
        "iscf": 7,
        "chkprim": 0,
        "tolsym": settings.tolsym,
        "paral_kgb": 0,
        "optforces": 1,
        "prtwf": 1,
        "prtden": 0,
        "prteig": 0,
        "outdata_prefix": f'"{OUT_PREFIX}"',
        "indata_prefix": '"in"',
        "tmpdata_prefix": '"tmp"',
        "pp_dirpath": f'"{Path(next(iter(pseudos.values())).path).parent}/"',
        "pseudos": '"' + ", ".join(pseudos[el].path.name for el in elements) + '"',
    }
    common.update(settings.extra)
    return common


def _geometry_lines(structure: Structure) -> list[str]:
    """``rprim`` (lattice rows in Bohr) and ``xred`` (reduced coordinates) blocks."""
    rprim = np.asarray(structure.lattice.matrix) / BOHR_TO_ANG
    lines = ["rprim"]
    lines += ["    " + " ".join(f"{x:.15f}" for x in row) for row in rprim]
    lines.append("xred")
    lines += ["    " + " ".join(f"{x:.15f}" for x in row) for row in structure.frac_coords]
    return lines


def _datasets(
    perturbations: Perturbations, settings: AbinitDFPTSettings, natom: int
) -> tuple[dict[str, int], dict[int, dict[str, Any]]]:
    """Dataset indices by role (``gs``, ``ddk``, ``response``) and each dataset's variables."""
    datasets = {"gs": 1}
    ds: dict[int, dict[str, Any]] = {1: {"tolvrs": settings.tolvrs_gs}}
    if perturbations.ddk:
        datasets["ddk"] = len(ds) + 1
        ds[datasets["ddk"]] = {
            "getwfk": 1,
            "iscf": -3,
            "kptopt": 2,
            "nqpt": 1,
            "qpt": "0 0 0",
            "rfelfd": 2,
            "rfdir": "1 1 1",
            "tolwfr": settings.tolwfr_ddk,
        }
    if perturbations.any_response:
        datasets["response"] = n = len(ds) + 1
        resp: dict[str, Any] = {
            "getwfk": 1,
            "kptopt": 2,
            "nqpt": 1,
            "qpt": "0 0 0",
            "rfdir": "1 1 1",
            "tolvrs": settings.tolvrs_rf,
        }
        if perturbations.ddk:
            resp["getddk"] = datasets["ddk"]
        if perturbations.efield:
            resp["rfelfd"] = 3
        if perturbations.phonon:
            resp["rfphon"] = 1
            resp["rfatpol"] = f"1 {natom}"
        if perturbations.strain:
            resp["rfstrs"] = 3
        ds[n] = resp
    return datasets, ds


FCC_SHIFTS = ("0.5 0.5 0.5", "0.5 0 0", "0 0.5 0", "0 0 0.5")
"""ABINIT's symmetric shifted grid for fcc primitive vectors (four shifts)."""


def k_shifts(structure: Structure) -> tuple[str, ...]:
    """k-grid shifts that keep the lattice symmetry: the four fcc shifts for an fcc primitive
    cell (equal lengths, 60° angles; any orientation), otherwise a Γ-centred grid."""
    a, b, c = structure.lattice.abc
    angles = np.asarray(structure.lattice.angles)
    if np.allclose([b / a, c / a], 1.0, atol=1e-4) and np.allclose(angles, 60.0, atol=1e-2):
        return FCC_SHIFTS
    return ("0 0 0",)


def _z(element: str) -> int:
    from pymatgen.core import Element

    return int(Element(element).Z)


def get_variable(text: str, name: str) -> str | None:
    """Value (as written) of a global variable ``name`` in an input text, or None."""
    m = re.search(rf"^\s*{re.escape(name)}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return None if m is None else m.group(1)


def set_variable(text: str, name: str, value: Any) -> str:
    """Set the global variable ``name`` (replace its line or append one)."""
    line = f"{name} {_fmt(value)}"
    pattern = rf"^\s*{re.escape(name)}\s+.+?$"
    if re.search(pattern, text, flags=re.MULTILINE):
        return re.sub(pattern, line, text, count=1, flags=re.MULTILINE)
    return text.rstrip("\n") + "\n" + line + "\n"
