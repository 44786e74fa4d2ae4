"""VASP DFPT backend through atomate2: LEPSILON run (+ optional elastic flow) → DFPTResultDoc.

:class:`VaspDFPTMaker` runs atomate2's ``DielectricMaker`` (IBRION = 8, LEPSILON = True: ε∞, the
ionic dielectric part, the clamped-ion and internal-strain piezo parts and the Born charges,
all from one run) and, when given an ``elastic_maker`` (atomate2's ``ElasticMaker``), the
finite-strain elastic flow; the final job :func:`vasp_dfpt_result` converts the outputs into one
:class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`.

Conventions at this edge (see ``docs/dfpt.md``):

- The tensors are read from the run's OUTCAR with :func:`read_outcar_lepsilon` (the last
  "including local field effects" sections). pymatgen's ``Outcar.read_lepsilon`` misses the
  VASP 6 piezo header ``PIEZOELECTRIC TENSOR (including local field effects)`` and leaves zeros,
  and both pymatgen readers return zeros for absent sections; this parser raises instead.
- VASP prints Voigt columns as xx, yy, zz, xy, yz, zx; they are converted with
  :func:`~atomate2_gmt.tensors.conventions.vasp_voigt_to_standard` and stored as full Cartesian
  tensors. Units: dielectric dimensionless, piezo C/m² (as VASP prints), elastic GPa.
- Parts follow Materials Project (emmet ``DielectricDoc``/``PiezoelectricDoc``): the OUTCAR's
  "MACROSCOPIC STATIC DIELECTRIC TENSOR" is ε∞ (electronic), "... IONIC CONTRIBUTION" the ionic
  part; "PIEZOELECTRIC TENSOR" is the clamped-ion (electronic) e, "... IONIC CONTR" the ionic
  part; totals are the sums. Ionic parts exist only for IBRION = 5-8 runs.
- Frame: the structure is the calculation's input structure as parsed by atomate2 (vasprun.xml),
  i.e. the Cartesian frame VASP wrote its tensors in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jobflow import Flow, Maker, OnMissing, job
from monty.io import zopen

from atomate2_gmt.routing import declare_role, iter_jobs, job_role
from atomate2_gmt.schemas.dfpt import DFPTResultDoc
from atomate2_gmt.tensors.conventions import vasp_voigt_to_standard, voigt_to_full

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "VaspDFPTMaker",
    "dfpt_doc_from_vasp",
    "read_outcar_lepsilon",
    "vasp_dfpt_result",
]

_EPS_HEAD = re.compile(
    r"MACROSCOPIC STATIC DIELECTRIC TENSOR \(including local field effects in DFT\)"
)
_EPS_ION_HEAD = re.compile(r"MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC CONTRIBUTION")
_PIEZO_HEAD = re.compile(
    r"PIEZOELECTRIC TENSOR (?:\(including local field effects\) )?\s*for field in x, y, z\s+"
    r"\(C/m\^2\)"
)
_PIEZO_ION_HEAD = re.compile(
    r"PIEZOELECTRIC TENSOR IONIC CONTR\s+for field in x, y, z\s+\(C/m\^2\)"
)
_BORN_HEAD = re.compile(r"BORN EFFECTIVE CHARGES \(")

_SETTINGS_KEYS = (
    "ENCUT", "EDIFF", "PREC", "IBRION", "LEPSILON", "LPEAD", "KSPACING", "ISPIN", "ISMEAR",
    "SIGMA", "GGA", "METAGGA", "LASPH", "LREAL", "ALGO",
)  # fmt: skip


def _last_index(lines: list[str], pattern: re.Pattern[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        if pattern.search(lines[i]):
            return i
    return None


def _numbers(line: str) -> list[float] | None:
    tokens = line.split()
    if tokens[:1] in (["x"], ["y"], ["z"]):
        tokens = tokens[1:]
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def _rows_after(lines: list[str], start: int, ncols: int, what: str, path: Path) -> np.ndarray:
    """The 3 rows of ``ncols`` numbers after header line ``start`` (a row label x/y/z allowed)."""
    rows: list[list[float]] = []
    for line in lines[start + 1 : start + 8]:
        nums = _numbers(line)
        if nums is not None and len(nums) == ncols:
            rows.append(nums)
            if len(rows) == 3:
                return np.array(rows)
        elif rows:
            break
    raise ValueError(f"{path}: cannot read the {what} block (3 rows of {ncols} numbers)")


def _read_born(lines: list[str], start: int, nsites: int | None, path: Path) -> np.ndarray:
    """Born charges Z*_{k,ab} (e) of the block whose header is line ``start``."""
    charges: list[list[list[float]]] = []
    for line in lines[start + 2 :]:
        tokens = line.split()
        if tokens[:1] == ["ion"]:
            charges.append([])
        elif len(tokens) == 4 and tokens[0] in ("1", "2", "3") and charges:
            charges[-1].append([float(v) for v in tokens[1:]])
        else:
            break
    arr = np.array(charges, dtype=float)
    if arr.ndim != 3 or arr.shape[1:] != (3, 3) or (nsites is not None and len(arr) != nsites):
        raise ValueError(
            f"{path}: Born effective charges block has shape {arr.shape}, expected ({nsites}, 3, 3)"
        )
    return arr


def read_outcar_lepsilon(path: str | Path, nsites: int | None = None) -> dict[str, Any]:
    """Tensors of a LEPSILON OUTCAR (plain or compressed), converted to project conventions.

    Returns ``{"tensors": {part: full Cartesian array}, "born_charges": (nsites, 3, 3) | None}``
    with parts ``dielectric_electronic``, ``piezo_electronic`` and, when the OUTCAR has the ionic
    sections (IBRION = 5-8), ``dielectric_ionic``, ``piezo_ionic``, ``dielectric_total``,
    ``piezo_total``. Frame: VASP's Cartesian frame (the POSCAR's). Piezo in C/m², VASP's Voigt
    columns reordered. Raises ``ValueError`` naming the file if ε∞ or the piezo block is missing.

    Not pymatgen's ``Outcar.read_lepsilon``/``read_lepsilon_ionic`` (pymatgen 2026.10.24): they
    give the same numbers on VASP 5 OUTCARs, but report a zero piezo tensor for VASP 6's
    "PIEZOELECTRIC TENSOR (including local field effects)" header and zeros for absent ionic
    sections (tests/dfpt/test_vasp_dfpt.py), and ``Outcar`` parses the whole file first
    (0.60 s against 0.012 s here for the Zn3P2S8 OUTCAR).
    """
    path = Path(path)
    with zopen(path, "rt") as fh:
        lines = fh.read().splitlines()
    tensors: dict[str, np.ndarray] = {}
    blocks = (
        ("dielectric_electronic", _EPS_HEAD, 3, True),
        ("piezo_electronic", _PIEZO_HEAD, 6, True),
        ("dielectric_ionic", _EPS_ION_HEAD, 3, False),
        ("piezo_ionic", _PIEZO_ION_HEAD, 6, False),
    )
    for part, head, ncols, required in blocks:
        at = _last_index(lines, head)
        if at is None:
            if required:
                raise ValueError(
                    f"{path}: no '{head.pattern}' section: not a finished LEPSILON run"
                )
            continue
        rows = _rows_after(lines, at, ncols, part, path)
        if ncols == 6:
            tensors[part] = voigt_to_full(vasp_voigt_to_standard(rows, "piezo"), "piezo")
        else:
            tensors[part] = rows
    if "dielectric_ionic" in tensors:
        tensors["dielectric_total"] = tensors["dielectric_electronic"] + tensors["dielectric_ionic"]
    if "piezo_ionic" in tensors:
        tensors["piezo_total"] = tensors["piezo_electronic"] + tensors["piezo_ionic"]
    born_at = _last_index(lines, _BORN_HEAD)
    born = None if born_at is None else _read_born(lines, born_at, nsites, path)
    return {"tensors": tensors, "born_charges": born}


def _get(obj: Any, *path: str | int, default: Any = None) -> Any:
    """Walk attributes / keys / indices of a pydantic document or its dict form."""
    for step in path:
        if obj is None:
            return default
        if isinstance(step, int):
            try:
                obj = obj[step]
            except (IndexError, KeyError, TypeError):
                return default
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            obj = getattr(obj, step, None)
    return default if obj is None else obj


def _as_structure(value: Any) -> Structure:
    from pymatgen.core import Structure

    if isinstance(value, Structure):
        return value
    if isinstance(value, dict):
        return Structure.from_dict(value)
    raise ValueError(f"no structure in the VASP task document (got {type(value).__name__})")


def _local_dir(dir_name: str) -> Path:
    """atomate2's ``host:/path`` → ``/path``."""
    head, sep, tail = dir_name.partition(":")
    return Path(tail) if sep and tail.startswith("/") and "/" not in head else Path(dir_name)


def _outcar_path(directory: Path) -> Path:
    for name in ("OUTCAR", "OUTCAR.gz", "OUTCAR.bz2", "OUTCAR.xz"):
        if (directory / name).exists():
            return directory / name
    raise ValueError(f"no OUTCAR in the VASP calculation folder {directory}")


def _elastic_tensor(elastic_doc: Any, structure: Structure) -> np.ndarray:
    """Full C_ijkl (GPa) from atomate2's ElasticDocument, checked to belong to ``structure``."""
    raw = _get(elastic_doc, "elastic_tensor", "raw")
    if raw is None:
        raise ValueError("the elastic document has no elastic_tensor.raw")
    other = _get(elastic_doc, "structure")
    if other is not None:
        other = _as_structure(other)
        if not np.allclose(other.lattice.matrix, structure.lattice.matrix, atol=1e-2):
            raise ValueError(
                "the elastic tensor belongs to a different cell (lattice differs by "
                f"{np.abs(other.lattice.matrix - structure.lattice.matrix).max():.3g} Å): run "
                "the ElasticMaker with bulk_relax_maker=None on the same structure"
            )
    # atomate2 fits C in pymatgen's (= the standard) Voigt order, in GPa.
    return np.asarray(voigt_to_full(np.asarray(raw, dtype=float), "elastic"))


def _provenance(calc: Any) -> dict[str, Any]:
    incar = _get(calc, "input", "incar", default={})
    incar = dict(incar) if not isinstance(incar, dict) else incar
    settings: dict[str, Any] = {k: incar[k] for k in _SETTINGS_KEYS if k in incar}
    kpoints = _get(calc, "input", "kpoints")
    if kpoints is not None and hasattr(kpoints, "as_dict"):
        kpoints = kpoints.as_dict()
    if isinstance(kpoints, dict):
        settings["kpoints"] = {
            k: kpoints[k] for k in ("generation_style", "kpoints", "usershift") if k in kpoints
        }
    potcars: dict[str, Any] = {}
    for spec in _get(calc, "input", "potcar_spec", default=[]) or []:
        titel = str(_get(spec, "titel", default=""))
        parts = titel.split()
        if len(parts) >= 2:
            potcars[parts[1].split("_")[0]] = {"titel": titel, "hash": _get(spec, "hash")}
    run_type = _get(calc, "run_type")
    return {
        "code_version": _get(calc, "vasp_version"),
        "functional": None if run_type is None else str(getattr(run_type, "value", run_type)),
        "pseudopotentials": potcars,
        "settings": settings,
    }


def dfpt_doc_from_vasp(
    task_doc: Any,
    elastic_doc: Any = None,
    candidate_id: str | None = None,
    job_uuid: str | None = None,
    structure: Structure | None = None,
) -> DFPTResultDoc:
    """Convert an atomate2 VASP LEPSILON ``TaskDoc`` (object or dict) into a DFPTResultDoc.

    Reads the tensors from the run folder's OUTCAR (:func:`read_outcar_lepsilon`), the structure
    (the tensors' frame) and provenance from the task document. ``elastic_doc``: atomate2's
    ``ElasticDocument`` for the same cell (adds ``elastic_relaxed``). A missing or failed task
    document, or unreadable outputs, give a ``state="failed"`` document with the reason;
    ``structure`` (the requested one) is what a failed document records when the task document
    has none.
    """
    calc = _get(task_doc, "calcs_reversed", 0)
    structure_dict = None if structure is None else structure.as_dict()
    try:
        if task_doc is None or calc is None:
            raise ValueError("the VASP dielectric job produced no task document (it failed)")
        state = str(getattr(_get(task_doc, "state"), "value", _get(task_doc, "state")))
        computed = _as_structure(_get(calc, "input", "structure"))
        structure_dict = computed.as_dict()
        if state != "successful":
            raise ValueError(f"the VASP dielectric task is {state!r}")
        directory = _local_dir(str(_get(task_doc, "dir_name", default="")))
        parsed = read_outcar_lepsilon(_outcar_path(directory), nsites=len(computed))
        tensors = dict(parsed["tensors"])
        if elastic_doc is not None:
            tensors["elastic_relaxed"] = _elastic_tensor(elastic_doc, computed)
    except (ValueError, OSError) as exc:
        return DFPTResultDoc(
            structure=structure_dict or {},
            code="vasp",
            state="failed",
            error=str(exc),
            candidate_id=candidate_id,
            job_uuid=job_uuid,
            dir_name=None if task_doc is None else _get(task_doc, "dir_name"),
        )
    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    born = parsed["born_charges"]
    return DFPTResultDoc(
        structure=structure_dict,
        structure_key=structure_key(computed),
        formula_pretty=computed.composition.reduced_formula,
        code="vasp",
        tensors={part: t.tolist() for part, t in tensors.items()},
        born_charges=None if born is None else born.tolist(),
        candidate_id=candidate_id,
        job_uuid=job_uuid,
        dir_name=str(directory),
        wall_time_s=_get(calc, "output", "run_stats", "elapsed_time"),
        **_provenance(calc),
    )


@job(name="vasp dfpt result", **job_role("dfpt_serial"))
def vasp_dfpt_result(
    task_doc: Any,
    elastic_doc: Any = None,
    candidate_id: str | None = None,
    job_uuid: str | None = None,
    structure: Structure | None = None,
) -> DFPTResultDoc:
    """jobflow job around :func:`dfpt_doc_from_vasp` (runs even if the VASP job failed)."""
    return dfpt_doc_from_vasp(task_doc, elastic_doc, candidate_id, job_uuid, structure)


def _default_dielectric_maker() -> Maker:
    from atomate2.vasp.jobs.core import DielectricMaker

    return DielectricMaker()


@dataclass
class VaspDFPTMaker(Maker):
    """LEPSILON DFPT with VASP through atomate2, ending in a :class:`DFPTResultDoc`.

    Args:
        name: flow name.
        dielectric_maker: atomate2 ``DielectricMaker`` (or a compatible maker whose job returns
            a VASP ``TaskDoc``); the structure should be relaxed with the same settings.
        elastic_maker: atomate2 ``ElasticMaker`` to add the relaxed-ion elastic tensor, or None.
            Use ``ElasticMaker(bulk_relax_maker=None)`` so that it strains the same cell.
    """

    name: str = "vasp dfpt"
    dielectric_maker: Maker = field(default_factory=_default_dielectric_maker)
    elastic_maker: Maker | None = None

    def make(self, structure: Structure, candidate_id: str | None = None) -> Flow:
        """Flow: dielectric job [, elastic flow], conversion job (the flow's output)."""
        dielectric = self.dielectric_maker.make(structure)
        jobs: list[Any] = [dielectric]
        elastic_output = None
        if self.elastic_maker is not None:
            elastic = self.elastic_maker.make(structure)
            jobs.append(elastic)
            elastic_output = elastic.output
        convert = vasp_dfpt_result(
            dielectric.output,
            elastic_output,
            candidate_id=candidate_id,
            job_uuid=dielectric.uuid,
            structure=structure,
        )
        convert.config.on_missing_references = OnMissing.NONE
        jobs.append(convert)
        return declare_atomate2_roles(Flow(jobs, output=convert.output, name=self.name))


def declare_atomate2_roles(flow: Flow) -> Flow:
    """The roles of atomate2's jobs in ``flow``: its elastic helpers that only generate or fit
    deformations are light (``dfpt_serial``); every other job is a VASP run or creates them at
    run time (``run_elastic_deformations``: the strained runs inherit its role), an MPI DFPT
    run (``dfpt``). Jobs that declare a role keep it."""
    from atomate2.common.jobs.elastic import fit_elastic_tensor, generate_elastic_deformations

    light = {getattr(f, "original", f) for f in (fit_elastic_tensor, generate_elastic_deformations)}
    for j in iter_jobs(flow):
        if getattr(j.function, "__wrapped__", j.function) in light:
            declare_role(j, "dfpt_serial")
    return declare_role(flow, "dfpt")
