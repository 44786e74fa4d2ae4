"""custodian ``Job`` and error handlers for ABINIT (as atomate2 runs VASP under custodian).

:class:`AbinitJob` runs serial ``abinit run.abi`` (stdout → ``log``, stderr → ``err``).
Handlers read ``run.abo``/``log`` after the run and edit ``run.abi``:

- :class:`AbinitScfHandler`: "nstep=N was not enough SCF cycles to converge" (ground state or
  any DFPT perturbation) → double ``nstep`` (up to ``max_nstep``), then switch the mixing to
  Pulay on the density (``iscf 17``) with a 4× larger ``diemac``.
- :class:`AbinitKpointSymmetryHandler`: ABINIT stops because the k grid breaks the crystal
  symmetry (``chksymbreak``) → use a Γ-centred grid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from custodian.custodian import ErrorHandler, Job

from atomate2_gmt.dfpt.abinit.inputs import ABINIT_INPUT, get_variable, set_variable
from atomate2_gmt.dfpt.abinit.parse import parse_abinit_output

__all__ = ["AbinitJob", "AbinitKpointSymmetryHandler", "AbinitScfHandler"]

ABO = "run.abo"


def _backup_outputs(directory: Path) -> None:
    """Move ``run.abo`` aside (ABINIT would otherwise write ``run.abo0001``) and drop stale
    output data so a retry starts clean."""
    n = 1
    while (directory / f"{ABO}.err{n}").exists():
        n += 1
    if (directory / ABO).exists():
        (directory / ABO).rename(directory / f"{ABO}.err{n}")
    if (directory / "log").exists():
        shutil.copy(directory / "log", directory / f"log.err{n}")
    for path in directory.glob("out_*"):
        path.unlink()


class AbinitJob(Job):
    """One serial ABINIT run of ``run.abi`` in a directory (one OpenMP thread by default;
    ``timeout_s``: kill ABINIT after that many seconds of wall time)."""

    def __init__(
        self,
        abinit_cmd: str = "abinit",
        input_file: str = ABINIT_INPUT,
        omp_threads: int = 1,
        timeout_s: float | None = None,
    ) -> None:
        self.abinit_cmd = abinit_cmd
        self.input_file = input_file
        self.omp_threads = omp_threads
        self.timeout_s = timeout_s

    def setup(self, directory: str = "./") -> None:
        """Nothing to prepare: the input is written by the caller."""

    def run(self, directory: str = "./") -> subprocess.Popen[bytes]:
        """Start ABINIT; custodian waits for the returned process."""
        env = {**os.environ, "OMP_NUM_THREADS": str(self.omp_threads)}
        d = Path(directory)
        cmd = [self.abinit_cmd, self.input_file]
        if self.timeout_s is not None:  # coreutils timeout: SIGTERM after timeout_s seconds
            cmd = ["timeout", str(max(1, int(self.timeout_s))), *cmd]
        with open(d / "log", "wb") as out, open(d / "err", "wb") as err:
            return subprocess.Popen(cmd, cwd=d, stdout=out, stderr=err, env=env)

    def postprocess(self, directory: str = "./") -> None:
        """Nothing to clean up (the DDB files are used by mrgddb/anaddb next)."""


class AbinitScfHandler(ErrorHandler):
    """SCF (ground state) or DFPT cycles not converged within ``nstep``.

    ``correct``: ``nstep`` → min(2·nstep, max_nstep); once at ``max_nstep``, Pulay mixing of
    the density (``iscf 17``) and ``diemac`` × 4; after that the error is not correctable.
    """

    is_monitor = False

    def __init__(self, max_nstep: int = 400) -> None:
        self.max_nstep = max_nstep

    def check(self, directory: str = "./") -> bool:
        """True if ``run.abo`` reports an unconverged SCF or DFPT cycle."""
        d = Path(directory)
        return bool(parse_abinit_output(d / ABO, d / "log").unconverged)

    def correct(self, directory: str = "./") -> dict[str, Any]:
        """Edit ``run.abi`` (more steps, then other mixing) and move old outputs aside."""
        d = Path(directory)
        path = d / ABINIT_INPUT
        text = path.read_text()
        nstep = int(get_variable(text, "nstep") or 30)
        iscf = int(get_variable(text, "iscf") or 7)
        actions: list[dict[str, Any]] = []
        if nstep < self.max_nstep:
            new = min(2 * nstep, self.max_nstep)
            text = set_variable(text, "nstep", new)
            actions.append({"dict": ABINIT_INPUT, "action": {"_set": {"nstep": new}}})
        elif iscf != 17:
            diemac = float((get_variable(text, "diemac") or "12").replace("d", "e")) * 4
            text = set_variable(set_variable(text, "iscf", 17), "diemac", diemac)
            actions.append(
                {"dict": ABINIT_INPUT, "action": {"_set": {"iscf": 17, "diemac": diemac}}}
            )
        else:
            return {"errors": ["SCF not converged"], "actions": None}
        path.write_text(text)
        _backup_outputs(d)
        return {"errors": ["SCF not converged"], "actions": actions}


class AbinitKpointSymmetryHandler(ErrorHandler):
    """ABINIT stopped because the k-point grid is not symmetric (``chksymbreak``)."""

    is_monitor = False

    def check(self, directory: str = "./") -> bool:
        """True if the log holds ABINIT's "k point grid is not symmetric" error."""
        d = Path(directory)
        errors = parse_abinit_output(d / ABO, d / "log").errors
        return any("k point grid is not symmetric" in e for e in errors)

    def correct(self, directory: str = "./") -> dict[str, Any]:
        """Switch to a single Γ-centred shift, which keeps every symmetry of the lattice."""
        d = Path(directory)
        path = d / ABINIT_INPUT
        text = set_variable(set_variable(path.read_text(), "nshiftk", 1), "shiftk", "0 0 0")
        path.write_text(text)
        _backup_outputs(d)
        return {
            "errors": ["k grid breaks symmetry"],
            "actions": [{"dict": ABINIT_INPUT, "action": {"_set": {"shiftk": "0 0 0"}}}],
        }
