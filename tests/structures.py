"""Small ideal crystals shared by tests: wurtzite ZnO (P6_3mc, polar) and rock-salt NaCl (Fm-3m)."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

ZNO = Structure.from_spacegroup(
    "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
)
NACL = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)
