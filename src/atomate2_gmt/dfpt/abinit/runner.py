"""``run_abinit_dfpt``: one structure → ABINIT DFPT (under custodian) → mrgddb → anaddb →
:class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`.

Frame: the input structure is written as given (lattice rows → ``rprim``); ABINIT does not
reorient it, so anaddb's Cartesian tensors are already in the frame of the structure as given
and are stored unrotated. Units: see :mod:`atomate2_gmt.dfpt.abinit.parse`.

A calculation failure (missing pseudopotential — detected before ABINIT starts —, ABINIT
error, SCF/DFPT not converged after the handlers' corrections, mrgddb/anaddb failure) gives
``state="failed"`` with the reason in ``error``; it never raises.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt import progress
from atomate2_gmt.dfpt.abinit.anaddb import merge_ddbs, run_anaddb
from atomate2_gmt.dfpt.abinit.custodian import (
    ABO,
    AbinitJob,
    AbinitKpointSymmetryHandler,
    AbinitScfHandler,
)
from atomate2_gmt.dfpt.abinit.inputs import make_dfpt_input
from atomate2_gmt.dfpt.abinit.parse import (
    parse_abinit_dielectric,
    parse_abinit_output,
    parse_anaddb_output,
)
from atomate2_gmt.dfpt.abinit.pseudos import MissingPseudopotentialError, find_pseudos
from atomate2_gmt.dfpt.abinit.settings import AbinitDFPTSettings, perturbations_for
from atomate2_gmt.dfpt.abinit.watch import AbinitLogWatcher
from atomate2_gmt.schemas.dfpt import DFPTResultDoc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymatgen.core import Structure

    from atomate2_gmt.dfpt.abinit.inputs import AbinitInput
    from atomate2_gmt.dfpt.abinit.parse import AnaddbResults
    from atomate2_gmt.dfpt.abinit.settings import Perturbations

__all__ = ["run_abinit_dfpt"]

logger = logging.getLogger(__name__)


def _doc(structure: Structure, **fields: Any) -> DFPTResultDoc:
    return DFPTResultDoc(
        structure=structure.as_dict(),
        formula_pretty=structure.composition.reduced_formula,
        code="abinit",
        **fields,
    )


def run_abinit_dfpt(
    structure: Structure,
    properties: Sequence[str] = ("dielectric", "piezo", "elastic"),
    settings: AbinitDFPTSettings | None = None,
    workdir: str | Path = ".",
    candidate_id: str | None = None,
) -> DFPTResultDoc:
    """Run ABINIT DFPT at q = Γ on ``structure`` for ``properties`` (names in
    :data:`~atomate2_gmt.dfpt.abinit.settings.PROPERTIES`) in ``workdir``.

    Tensors: full Cartesian, frame of ``structure`` as given; ε dimensionless, e_ijk C/m²,
    C_ijkl GPa. ``properties`` must be valid (a ``ValueError`` otherwise: a caller error, not
    a calculation failure).
    """
    settings = settings or AbinitDFPTSettings()
    perturbations = perturbations_for(tuple(properties))
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    common = _common_fields(structure, properties, settings, workdir, candidate_id)

    def failed(reason: str) -> DFPTResultDoc:
        logger.warning("ABINIT DFPT failed in %s: %s", workdir, reason)
        return _doc(
            structure,
            state="failed",
            error=reason,
            wall_time_s=time.perf_counter() - start,
            **common,
        )

    elements = [el.symbol for el in structure.composition.elements]
    try:
        pseudos = find_pseudos(elements, settings.functional, settings.pseudo_dir)
    except MissingPseudopotentialError as exc:
        return failed(str(exc))
    common["pseudopotentials"] = {el: p.as_dict() for el, p in pseudos.items()}
    for exe in ("abinit", "mrgddb", "anaddb"):
        if shutil.which(exe) is None:
            return failed(f"{exe} executable not found (apt-get install abinit)")

    inp = make_dfpt_input(structure, pseudos, perturbations, settings)
    inp.write(workdir)
    common["settings"]["ngkpt"] = list(inp.ngkpt)
    label = f"{structure.composition.reduced_formula} ({', '.join(properties)})"
    progress.phase(f"ABINIT DFPT of {label} in {workdir}: {len(inp.datasets)} datasets", logger)
    reason = _run_abinit(workdir, inp, len(structure), settings, common)
    if reason is not None:
        return failed(reason)
    if not perturbations.any_response:
        return failed("nothing to compute")
    try:
        results = _anaddb_results(workdir, perturbations)
    except Exception as exc:
        return failed(f"mrgddb/anaddb failed: {type(exc).__name__}: {exc}")

    if not settings.keep_wavefunctions:
        _remove_wavefunctions(workdir)
    tensors = {k: v for k, v in results.tensors.items() if np.all(np.isfinite(v))}
    if not tensors:
        return failed("anaddb printed no tensors")
    progress.phase(
        f"ABINIT DFPT of {label} done in {time.perf_counter() - start:.0f} s: "
        + ", ".join(sorted(tensors)),
        logger,
    )
    return _doc(
        structure,
        tensors={k: v.tolist() for k, v in tensors.items()},
        born_charges=None if results.born_charges is None else results.born_charges.tolist(),
        wall_time_s=time.perf_counter() - start,
        **common,
    )


def _common_fields(
    structure: Structure,
    properties: Sequence[str],
    settings: AbinitDFPTSettings,
    workdir: Path,
    candidate_id: str | None,
) -> dict[str, Any]:
    """Document fields shared by a success and a failure (the structure key when computable)."""
    common: dict[str, Any] = {
        "functional": settings.functional.upper(),
        "settings": {**settings.to_dict(), "properties": sorted(set(properties))},
        "dir_name": str(workdir),
        "candidate_id": candidate_id,
    }
    try:
        from atomate2_gmt.tensors.symmetry.analysis import structure_key

        common["structure_key"] = structure_key(structure)
    except Exception:
        pass
    return common


def _run_abinit(
    workdir: Path,
    inp: AbinitInput,
    natom: int,
    settings: AbinitDFPTSettings,
    common: dict[str, Any],
) -> str | None:
    """Run ABINIT under custodian, reporting its phases; the failure reason, or None.

    Sets ``common["code_version"]`` once the run has ended.
    """
    watcher = AbinitLogWatcher(workdir / "log", inp.datasets, natom)

    def report_phases() -> None:
        for line in watcher.poll():
            progress.phase(line, logger)

    try:
        with progress.polling(report_phases, interval_s=1.0, always=True):
            _run_custodian(workdir, settings)
    except Exception as exc:
        summary = parse_abinit_output(workdir / ABO, workdir / "log")
        detail = "; ".join(summary.errors or summary.unconverged[:1])
        return f"ABINIT run failed: {type(exc).__name__}: {exc}. {detail}".strip()

    summary = parse_abinit_output(workdir / ABO, workdir / "log")
    common["code_version"] = summary.version
    if summary.errors or not summary.completed:
        return "ABINIT did not complete: " + ("; ".join(summary.errors) or "no end mark")
    if summary.unconverged:
        return "SCF/DFPT not converged: " + summary.unconverged[0]
    return None


def _anaddb_results(workdir: Path, perturbations: Perturbations) -> AnaddbResults:
    """Merge the DDB files, run anaddb and parse its tensors (ε∞ from ABINIT if anaddb lacks it)."""
    progress.phase("mrgddb and anaddb: merging the DDB files, computing the tensors", logger)
    ddbs = sorted(p.name for p in workdir.glob("out_DS*_DDB"))
    merge_ddbs(workdir, ddbs)
    results = parse_anaddb_output(run_anaddb(workdir, perturbations))
    if perturbations.efield and "dielectric_electronic" not in results.tensors:
        eps_inf = parse_abinit_dielectric(workdir / ABO)  # E-field only: not in anaddb
        if eps_inf is not None:
            results.tensors["dielectric_electronic"] = eps_inf
    return results


def _remove_wavefunctions(workdir: Path) -> None:
    """Delete the wavefunction, potential and density files of the datasets."""
    for path in workdir.glob("out_DS*"):
        if "WF" in path.name or "POT" in path.name or path.name.endswith("DEN"):
            path.unlink()


def _run_custodian(workdir: Path, settings: AbinitDFPTSettings) -> None:
    from custodian import Custodian

    handlers = [AbinitKpointSymmetryHandler(), AbinitScfHandler(max_nstep=settings.max_nstep)]
    job = AbinitJob(timeout_s=settings.timeout_s)
    Custodian(
        handlers,
        [job],
        max_errors=settings.max_errors,
        directory=str(workdir),
        gzipped_output=False,
        checkpoint=False,
        terminate_on_nonzero_returncode=False,
    ).run()
