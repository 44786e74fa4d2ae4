"""Phase-by-phase progress of a running ABINIT DFPT calculation, read from its ``log``.

ABINIT runs the datasets of :func:`~atomate2_gmt.dfpt.abinit.inputs.make_dfpt_input` one after
the other in one process (ground state, DDK, then one response dataset with the phonon,
electric-field and strain perturbations at q = Γ). Its log marks each dataset
(``== DATASET  n ==``), lists the irreducible perturbations of a response dataset
(``N)    idir= d    ipert= p``) and starts each perturbation's SCF cycle with a
``Perturbation wavevector`` line. :class:`AbinitLogWatcher` turns these marks into phase lines
such as ``ABINIT dataset 3/3 (response): perturbation 4/9, electric field along direction 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AbinitLogWatcher", "describe_perturbation"]

_DATASET = re.compile(r"^== DATASET\s+(\d+)\s+=")
_PERT_ITEM = re.compile(r"^\s*\d+\)\s+idir=\s*(\d+)\s+ipert=\s*(\d+)")
_PERT_LIST = "The list of irreducible perturbations for this q vector is:"
_PERT_START = "Perturbation wavevector"
_DONE = "Calculation completed."

_DATASET_NAMES = {"gs": "ground state", "ddk": "DDK", "response": "response"}
_STRAIN = {3: ("xx", "yy", "zz"), 4: ("yz", "xz", "xy")}


def describe_perturbation(idir: int, ipert: int, natom: int) -> str:
    """ABINIT's perturbation ``ipert`` (1..natom: an atom's displacement; natom+1: d/dk;
    natom+2: electric field; natom+3/4: uniaxial/shear strain) along ``idir`` (1..3) in words."""
    if 1 <= ipert <= natom:
        return f"phonon, atom {ipert} along direction {idir}"
    extra = ipert - natom
    if extra == 1:
        return f"d/dk along direction {idir}"
    if extra == 2:
        return f"electric field along direction {idir}"
    if extra in _STRAIN and 1 <= idir <= 3:
        kind = "uniaxial" if extra == 3 else "shear"
        return f"{kind} strain {_STRAIN[extra][idir - 1]}"
    return f"perturbation ipert={ipert} idir={idir}"


@dataclass
class AbinitLogWatcher:
    """Reads ABINIT's ``log`` as it grows and returns the new phase lines on each
    :meth:`poll`. ``datasets``: name → index as :class:`~atomate2_gmt.dfpt.abinit.inputs.
    AbinitInput` gives them; ``natom``: atoms in the cell. A log that shrinks (custodian started
    ABINIT again after a correction) starts the count over."""

    log: Path
    datasets: dict[str, int]
    natom: int
    _offset: int = 0
    _partial: str = ""
    _dataset: int | None = None
    _perts: list[str] = field(default_factory=list)
    _in_list: bool = False
    _started: int = 0

    def _name(self, index: int) -> str:
        for name, i in self.datasets.items():
            if i == index:
                return _DATASET_NAMES.get(name, name)
        return "dataset"

    def poll(self) -> list[str]:
        """The phase lines for what ABINIT logged since the last call."""
        try:
            size = self.log.stat().st_size
        except OSError:
            return []
        out: list[str] = []
        if size < self._offset:  # a new ABINIT run truncated the log
            self._offset, self._partial, self._dataset = 0, "", None
            self._perts, self._in_list, self._started = [], False, 0
            out.append("ABINIT started again after a custodian correction")
        if size == self._offset:
            return out
        with open(self.log, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(size - self._offset)
        self._offset = size
        text = self._partial + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next poll
        for line in lines:
            out.extend(self._line(line))
        return out

    def _line(self, line: str) -> list[str]:
        n = len(self.datasets)
        m = _DATASET.match(line)
        if m:
            self._dataset = int(m.group(1))
            self._perts, self._in_list, self._started = [], False, 0
            return [f"ABINIT dataset {self._dataset}/{n}: {self._name(self._dataset)}"]
        if _PERT_LIST in line:
            self._in_list, self._perts = True, []
            return []
        if self._in_list:
            item = _PERT_ITEM.match(line)
            if item:
                self._perts.append(
                    describe_perturbation(int(item.group(1)), int(item.group(2)), self.natom)
                )
                return []
            self._in_list = False
        if _PERT_START in line and self._dataset is not None:
            self._started += 1
            k, total = self._started, len(self._perts)
            what = self._perts[k - 1] if k <= total else "perturbation"
            of = f"/{total}" if total else ""
            name = self._name(self._dataset)
            return [f"ABINIT dataset {self._dataset}/{n} ({name}): perturbation {k}{of}, {what}"]
        if line.strip() == _DONE:
            return ["ABINIT calculation completed"]
        return []
