"""Parsers for ABINIT (``run.abo``) and anaddb (``anaddb.abo``) text output.

anaddb prints, in the Cartesian frame of the input cell:

- ``Electronic dielectric tensor`` (ε∞) and ``Relaxed ion dielectric tensor`` (ε0), 3×3;
- ``Elastic Tensor (clamped ion)`` / ``(relaxed ion)`` in units of 10² GPa, 6×6 Voigt in the
  standard order xx, yy, zz, yz, xz, xy (tensor components, no factors of 2);
- ``Proper piezoelectric constants (clamped ion)`` / ``(relaxed ion)`` in C/m², as 6 rows
  (Voigt strain index J) × 3 columns (field direction i), i.e. the transpose of e_iJ;
- Born effective charges (``Effective charge tensors after imposition of the charge
  neutrality``): rows = atom and displacement direction β, columns = field direction α, i.e.
  Z*_{κ,αβ} = dP_α/du_κβ is the transpose of each printed 3×3 block.

All numbers are read from the text (Fortran ``D`` exponents accepted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atomate2_gmt.tensors.conventions import voigt_to_full

__all__ = [
    "AbinitRunSummary",
    "AnaddbResults",
    "parse_abinit_dielectric",
    "parse_abinit_output",
    "parse_anaddb_output",
]

_NUM = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"


def _floats(line: str) -> list[float]:
    return [float(x.replace("D", "E").replace("d", "e")) for x in re.findall(_NUM, line)]


def _block_after(lines: list[str], header: str, nrows: int, ncols: int) -> np.ndarray | None:
    """The first ``nrows`` lines with exactly ``ncols`` numbers after the line holding
    ``header`` (blank and comment lines skipped), or None if the header is absent."""
    for i, line in enumerate(lines):
        if header in line:
            rows: list[list[float]] = []
            for nxt in lines[i + 1 :]:
                vals = _floats(nxt)
                if len(vals) == ncols and not nxt.strip().startswith("("):
                    rows.append(vals)
                    if len(rows) == nrows:
                        return np.array(rows)
                elif rows:
                    return None
            return None
    return None


@dataclass
class AnaddbResults:
    """Tensors from one anaddb output, full Cartesian in the input cell's frame, project units
    (dielectric dimensionless, piezo e_ijk C/m², elastic C_ijkl GPa, Born charges e)."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    born_charges: np.ndarray | None = None


def parse_anaddb_output(path: str | Path) -> AnaddbResults:
    """Read ε∞, ε0, clamped/relaxed-ion e and C, and Born charges from ``anaddb.abo``."""
    lines = Path(path).read_text(errors="replace").splitlines()
    out = AnaddbResults()
    eps_inf = _block_after(lines, "Electronic dielectric tensor", 3, 3)
    eps_0 = _block_after(lines, "Relaxed ion dielectric tensor", 3, 3)
    if eps_inf is not None:
        out.tensors["dielectric_electronic"] = eps_inf
        if eps_0 is not None:
            out.tensors["dielectric_total"] = eps_0
            out.tensors["dielectric_ionic"] = eps_0 - eps_inf
    for tag, part in (("clamped ion", "elastic_clamped"), ("relaxed ion", "elastic_relaxed")):
        block = _block_after(lines, f"Elastic Tensor ({tag}) (unit:10^2GP)", 6, 6)
        if block is not None:
            out.tensors[part] = voigt_to_full(100.0 * block, "elastic")
    for tag, part in (("clamped ion", "piezo_electronic"), ("relaxed ion", "piezo_total")):
        block = _block_after(lines, f"Proper piezoelectric constants ({tag}) (unit:c/m^2)", 6, 3)
        if block is not None:
            out.tensors[part] = voigt_to_full(block.T, "piezo")
    if "piezo_electronic" in out.tensors and "piezo_total" in out.tensors:
        out.tensors["piezo_ionic"] = out.tensors["piezo_total"] - out.tensors["piezo_electronic"]
    out.born_charges = _born_charges(lines)
    return out


def _born_charges(lines: list[str]) -> np.ndarray | None:
    """Z*_{κ,αβ} (field α, displacement β) after the charge-neutrality correction."""
    for i, line in enumerate(lines):
        if "imposition of the charge neutrality" in line:
            rows: dict[tuple[int, int], list[float]] = {}
            for nxt in lines[i + 1 :]:
                vals = _floats(nxt)
                if len(vals) == 5:
                    rows[(int(vals[0]), int(vals[1]))] = vals[2:]
                elif rows and nxt.strip():
                    break
            if not rows:
                return None
            natom = max(k[0] for k in rows)
            z = np.zeros((natom, 3, 3))
            for (atom, disp), vals in rows.items():
                z[atom - 1, :, disp - 1] = vals  # printed row = displacement β, columns = α
            return z
    return None


@dataclass
class AbinitRunSummary:
    """What a finished ``run.abo``/log says: completion, SCF failures, version, wall time (s)."""

    completed: bool
    unconverged: list[str]
    errors: list[str]
    version: str | None
    wall_time_s: float | None


_NOT_CONVERGED = re.compile(r"nstep\s*=\s*(\d+)\s+was not enough SCF cycles to converge")


def parse_abinit_output(abo: str | Path, log: str | Path | None = None) -> AbinitRunSummary:
    """Summarise an ABINIT run from its main output (and log, for ``--- !ERROR`` blocks).

    ``unconverged`` lists each "nstep=N was not enough SCF cycles to converge" message (ground
    state and each DFPT perturbation report it separately).
    """
    text = Path(abo).read_text(errors="replace") if Path(abo).exists() else ""
    log_text = Path(log).read_text(errors="replace") if log and Path(log).exists() else ""
    unconverged = [m.group(0) for m in _NOT_CONVERGED.finditer(text)]
    errors = []
    for blob in (text, log_text):
        for m in re.finditer(r"--- !ERROR\n(.*?)\n\.\.\.", blob, flags=re.DOTALL):
            msg = re.search(r"message: \|\n(.*)", m.group(1), flags=re.DOTALL)
            errors.append(" ".join((msg.group(1) if msg else m.group(1)).split()))
    version = re.search(r"\.Version\s+(\S+)\s+of ABINIT", text)
    wall = re.search(r"Overall time at end \(sec\) : cpu=\s*\S+\s+wall=\s*(\S+)", text)
    return AbinitRunSummary(
        completed="Calculation completed." in text,
        unconverged=unconverged,
        errors=list(dict.fromkeys(errors)),
        version=version.group(1) if version else None,
        wall_time_s=float(wall.group(1)) if wall else None,
    )


def parse_abinit_dielectric(abo: str | Path) -> np.ndarray | None:
    """ε∞ (3×3, Cartesian, input frame) from ABINIT's own "Dielectric tensor, in cartesian
    coordinates" block of the E-field response dataset (rows ``dir1 pert1 dir2 pert2 re im``).

    anaddb prints ε∞ only when the DDB also holds Γ phonons, so an E-field-only run reads it
    here; with phonons both agree.
    """
    lines = Path(abo).read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if "Dielectric tensor, in cartesian coordinates" in line:
            eps = np.full((3, 3), np.nan)
            started = False
            for nxt in lines[i + 3 : i + 30]:  # skip the two column-header lines
                vals = _floats(nxt)
                if len(vals) == 6 and vals[1] == vals[3]:
                    eps[int(vals[0]) - 1, int(vals[2]) - 1] = vals[4]
                    started = True
                elif started and nxt.strip():
                    break
            return None if np.isnan(eps).any() else eps
    return None
