"""One symmetry analysis per (structure, symprec): every symmetry fact the package needs.

:class:`SymmetryAnalysis` computes, lazily and at most once each, the point-group operations
(Cartesian, the structure's own frame), spglib's symmetry dataset, the structure key, the
space-group number, the rotation to the IEEE 176 frame and emmet's ``SymmetryData``. The
tolerances come from :mod:`~atomate2_gmt.tensors.symmetry.policy`:

- the point group (and ``SymmetryData``) at ``symprec`` / ``angle_tolerance`` (default 5
  degrees), with the fast native search up to 64 sites;
- the dataset (and the key, the space-group number) at ``symprec`` and spglib's default angle
  tolerance (:data:`~atomate2_gmt.tensors.symmetry.policy.KEY_ANGLE_TOLERANCE`), which the
  key's definition fixes;
- the IEEE frame as pymatgen's ``Tensor.convert_to_ieee`` finds it (``SpacegroupAnalyzer`` at
  :data:`~atomate2_gmt.tensors.symmetry.policy.SYMPREC` and 5 degrees). It is derived from the
  dataset, with no second search, wherever that dataset is provably the one pymatgen finds
  (same symprec, no magnetic moments, one species per element, and a lattice whose point group
  does not depend on the angle tolerance: :func:`~atomate2_gmt.tensors.symmetry.search.
  angle_tolerance_matters`); elsewhere pymatgen is asked.

A failure (bad input, a search that finds nothing) raises ``ValueError`` (or the library's
error) on access and is remembered, so asking again does not search again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt.tensors.symmetry.groups import (
    PointGroupInfo,
    point_group_from_dataset,
    point_group_info,
)
from atomate2_gmt.tensors.symmetry.keys import key_from_dataset, spglib_cell, symmetry_dataset
from atomate2_gmt.tensors.symmetry.policy import ANGLE_TOLERANCE, KEY_ANGLE_TOLERANCE, SYMPREC
from atomate2_gmt.tensors.symmetry.search import angle_tolerance_matters

if TYPE_CHECKING:
    from collections.abc import Callable

    from emmet.core.symmetry import SymmetryData
    from pymatgen.core import Structure

    from atomate2_gmt.tensors.symmetry.keys import Cell

__all__ = ["SymmetryAnalysis", "structure_key"]


class SymmetryAnalysis:
    """The symmetry of one structure at one ``symprec`` (Å) and ``angle_tolerance`` (degrees).

    Every attribute is computed on first access and kept (failures too). ``point_group``: a
    :class:`~atomate2_gmt.tensors.symmetry.groups.PointGroupInfo` already found for this
    structure at these tolerances (e.g. while predicting), used instead of searching again.
    """

    def __init__(
        self,
        structure: Structure,
        symprec: float = SYMPREC,
        angle_tolerance: float = ANGLE_TOLERANCE,
        point_group: PointGroupInfo | None = None,
    ) -> None:
        self.structure = structure
        self.symprec = symprec
        self.angle_tolerance = angle_tolerance
        self._results: dict[str, tuple[bool, Any]] = {}
        if point_group is not None:
            if not isinstance(point_group, PointGroupInfo):
                raise TypeError(
                    f"point_group must be a PointGroupInfo, got {type(point_group).__name__}"
                )
            self._results["point_group"] = (True, point_group)

    def __repr__(self) -> str:
        formula = self.structure.composition.reduced_formula
        return (
            f"SymmetryAnalysis({formula}, symprec={self.symprec}, "
            f"angle_tolerance={self.angle_tolerance})"
        )

    def _once(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` on the first call for ``name``; its value (or exception) after that."""
        if name not in self._results:
            try:
                self._results[name] = (True, compute())
            except Exception as exc:
                self._results[name] = (False, exc)
        ok, value = self._results[name]
        if not ok:
            raise value
        return value

    # -- point group (native search at symprec / angle_tolerance) --------------------------
    @property
    def point_group(self) -> PointGroupInfo:
        """The point group (:func:`~atomate2_gmt.tensors.symmetry.groups.point_group_info`)."""
        return self._once(  # type: ignore[no-any-return]
            "point_group",
            lambda: point_group_info(self.structure, self.symprec, self.angle_tolerance),
        )

    @property
    def point_group_of_dataset(self) -> PointGroupInfo | None:
        """The point group at ``symprec`` / ``angle_tolerance`` read from :attr:`dataset`
        (:func:`~atomate2_gmt.tensors.symmetry.groups.point_group_from_dataset`, no second
        search) where that dataset is the one spglib's point-group search would find: one
        species per element (spglib's cell types sites by element, the search by species) and
        an angle tolerance that does not change the lattice operations
        (:func:`~atomate2_gmt.tensors.symmetry.search.angle_tolerance_matters`). None elsewhere,
        without a dataset, or if reading it fails. Equal to :func:`~atomate2_gmt.tensors.
        symmetry.groups.point_group_info` with the spglib backend (the auto backend's above 64
        sites). Up to 64 sites the auto backend is the native search, a different algorithm:
        on the shipped MP structures, plain and sheared by up to 4 degrees, it finds the same
        groups, with operations equal to round-off (tests/tensors/test_symmetry.py); a
        structure on which the two disagree at ``symprec`` gets spglib's group here."""
        return self._once(  # type: ignore[no-any-return]
            "point_group_of_dataset", self._point_group_of_dataset
        )

    def _point_group_of_dataset(self) -> PointGroupInfo | None:
        try:
            dataset = self.dataset
            if dataset is None or not self._one_species_per_element():
                return None
            if self.angle_tolerance != KEY_ANGLE_TOLERANCE and self._angle_tolerance_matters(
                self.angle_tolerance
            ):
                return None
            return point_group_from_dataset(
                self.structure, dataset, self.symprec, self.angle_tolerance
            )
        except Exception:  # (spglib raises SpglibError in some configurations) the caller
            return None  # then searches itself

    def _one_species_per_element(self) -> bool:
        """Whether the sites' species are their elements' (no two oxidation states or spins of
        one element), so that spglib's cell (typed by atomic number) and the structure's
        species type the sites alike."""
        species = {site.specie for site in self.structure}
        return len(species) == len(set(self.cell[2].tolist()))

    def _angle_tolerance_matters(self, angle_tolerance: float) -> bool:
        """:func:`~atomate2_gmt.tensors.symmetry.search.angle_tolerance_matters` of the
        dataset's primitive lattice at ``symprec`` (kept per angle tolerance)."""
        return self._once(  # type: ignore[no-any-return]
            f"angle_tolerance_matters:{angle_tolerance!r}",
            lambda: angle_tolerance_matters(
                self.dataset.primitive_lattice, self.symprec, angle_tolerance
            ),
        )

    @property
    def ops(self) -> np.ndarray:
        """Point-group operations, (n, 3, 3) orthogonal Cartesian matrices, identity first."""
        return self.point_group.ops

    @property
    def centrosymmetric(self) -> bool:
        """Whether the inversion -I is one of the point-group operations."""
        return bool(any(np.allclose(op, -np.eye(3), atol=1e-6) for op in self.ops))

    @property
    def symmetry_data(self) -> SymmetryData:
        """emmet's ``SymmetryData`` of the point group found (its tolerances, spglib version)."""
        return self._once("symmetry_data", self._symmetry_data)  # type: ignore[no-any-return]

    def _symmetry_data(self) -> SymmetryData:
        import spglib
        from emmet.core.symmetry import CrystalSystem, SymmetryData

        info = self.point_group
        return SymmetryData(
            crystal_system=CrystalSystem(info.crystal_system.capitalize()),
            symbol=info.space_group_symbol,
            hall=None,
            number=info.space_group_number,
            point_group=info.point_group,
            symprec=info.symprec,
            angle_tolerance=info.angle_tolerance,
            version=spglib.__version__,
        )

    # -- spglib dataset (symprec, key angle tolerance) --------------------------------------
    @property
    def cell(self) -> Cell:
        """spglib's cell of the structure (lattice rows Å, fractional coordinates, Z)."""
        return self._once(  # type: ignore[no-any-return]
            "cell", lambda: spglib_cell(self.structure, self.symprec)
        )

    @property
    def dataset(self) -> Any:
        """spglib's symmetry dataset at ``symprec`` and the key's angle tolerance, or None if
        spglib finds none."""
        return self._once("dataset", lambda: symmetry_dataset(self.cell, self.symprec))

    @property
    def structure_key(self) -> str:
        """The structure key (:func:`structure_key`)."""
        return self._once(  # type: ignore[no-any-return]
            "structure_key", lambda: key_from_dataset(self.cell, self.dataset, self.symprec)
        )

    @property
    def space_group_number(self) -> int | None:
        """International space-group number (1-230) of the dataset, None without one."""
        ds = self.dataset
        return None if ds is None else int(ds.number)

    # -- IEEE frame (pymatgen's search, from the dataset where it is the same) -------------
    @property
    def ieee_rotation(self) -> np.ndarray:
        """Rotation (3, 3) taking the structure's frame to the IEEE 176 frame, as pymatgen's
        ``Tensor.convert_to_ieee`` applies it (see the module docstring)."""
        return self._once("ieee_rotation", self._ieee_rotation)  # type: ignore[no-any-return]

    def _ieee_rotation(self) -> np.ndarray:
        from atomate2_gmt.tensors.conventions import (
            crystal_system,
            ieee_rotation,
            ieee_rotation_from_setting,
        )

        try:
            shared = self.shares_pymatgen_dataset()
        except Exception:
            shared = False
        if not shared:
            return ieee_rotation(self.structure)
        ds = self.dataset
        return ieee_rotation_from_setting(
            self.cell[0], ds.transformation_matrix, crystal_system(ds.number)
        )

    def shares_pymatgen_dataset(self) -> bool:
        """Whether :attr:`dataset` is the one pymatgen's ``SpacegroupAnalyzer(structure)``
        finds (symprec :data:`~atomate2_gmt.tensors.symmetry.policy.SYMPREC`, 5 degrees): same
        symprec, no magnetic moments, one species per element (pymatgen types sites by species)
        and a primitive lattice whose point group does not depend on the angle tolerance."""
        dataset = self.dataset
        if dataset is None or self.symprec != SYMPREC:
            return False
        structure = self.structure
        if any("magmom" in site.properties for site in structure) or any(
            getattr(sp, "spin", None) is not None for sp in structure.types_of_species
        ):
            return False
        if not self._one_species_per_element():
            return False
        return not self._angle_tolerance_matters(ANGLE_TOLERANCE)


def structure_key(structure: Structure, symprec: float = SYMPREC) -> str:
    """A stable hash of the crystal, e.g. ``"sk1-3f9a…"`` (its definition:
    :mod:`~atomate2_gmt.tensors.symmetry.keys`).

    ``symprec`` (Å) is spglib's tolerance for finding the primitive standardised cell; if spglib
    finds no symmetry the input cell itself is used. Oxidation states are ignored. Disordered
    structures (partial occupancies) and empty structures raise a ``ValueError``.
    """
    return SymmetryAnalysis(structure, symprec).structure_key
