"""PseudoDojo norm-conserving pseudopotentials shipped by Debian's ``abinit-data``.

Tables (folders under ``/usr/share/abinit/psp``):
``PBE`` → ``Pseudodojo_nc_sr_04_pbe_standard_psp8``;
``LDA`` (Perdew-Wang) → ``Pseudodojo_nc_sr_04_pw_standard_psp8``.
Only the elements Debian ships are available; a structure with any other element fails
before ABINIT is started.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PSEUDO_TABLES", "MissingPseudopotentialError", "Pseudo", "find_pseudos"]

PSEUDO_TABLES: dict[str, str] = {
    "PBE": "Pseudodojo_nc_sr_04_pbe_standard_psp8",
    "LDA": "Pseudodojo_nc_sr_04_pw_standard_psp8",
}
"""Functional → PseudoDojo folder (NC scalar-relativistic v0.4, standard accuracy, psp8)."""

# Prefer the plain file (e.g. Mg.psp8 over Mg-low.psp8), then any variant (Zn-sp, Se-d).
_NAME = re.compile(r"^(?P<el>[A-Z][a-z]?)(?P<var>-[\w-]+)?\.psp8$")


class MissingPseudopotentialError(ValueError):
    """A structure contains an element without a pseudopotential in the chosen table."""


@dataclass(frozen=True)
class Pseudo:
    """One pseudopotential file: element, absolute path, valence charge (e), checksums."""

    element: str
    path: Path
    z_valence: float
    md5: str
    sha256: str

    def as_dict(self) -> dict[str, str | float]:
        """Provenance for the result document."""
        return {
            "file": self.path.name,
            "table": self.path.parent.name,
            "z_valence": self.z_valence,
            "md5": self.md5,
            "sha256": self.sha256,
        }


def _table_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.psp8")):
        m = _NAME.match(path.name)
        if m is None:
            continue
        el = m.group("el")
        if el not in found or (m.group("var") is None):
            found[el] = path
    return found


def _read_pseudo(element: str, path: Path) -> Pseudo:
    data = path.read_bytes()
    # psp8 line 2: "zatom zion pspdat"
    z_valence = float(data.decode(errors="replace").splitlines()[1].split()[1])
    return Pseudo(
        element=element,
        path=path.resolve(),
        z_valence=z_valence,
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def find_pseudos(
    elements: list[str] | tuple[str, ...], functional: str = "PBE", pseudo_dir: str | Path = ""
) -> dict[str, Pseudo]:
    """Pseudopotential of each element, or :class:`MissingPseudopotentialError` naming the ones
    missing from the ``functional``'s PseudoDojo table under ``pseudo_dir``."""
    functional = functional.upper()
    if functional not in PSEUDO_TABLES:
        raise ValueError(f"no PseudoDojo table for functional {functional!r}")
    folder = Path(pseudo_dir or "/usr/share/abinit/psp") / PSEUDO_TABLES[functional]
    if not folder.is_dir():
        raise MissingPseudopotentialError(
            f"pseudopotential folder {folder} not found (install Debian's abinit-data)"
        )
    table = _table_files(folder)
    missing = [el for el in elements if el not in table]
    if missing:
        raise MissingPseudopotentialError(
            f"no {functional} PseudoDojo pseudopotential for element(s) {', '.join(missing)} "
            f"in {folder} (available: {', '.join(sorted(table))})"
        )
    return {el: _read_pseudo(el, table[el]) for el in elements}
