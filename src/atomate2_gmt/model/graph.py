"""The periodic k-nearest-neighbour crystal graph and its batching.

For each atom i, every periodic image of every atom within the distance of i's k-th nearest
neighbour (ties kept) is an edge j -> i, so an atom may have several edges to images of one atom.
Edge vector = position of the neighbour image − position of atom i, in Å, in the structure's own
Cartesian frame. Built with pymatgen's vectorised ``get_neighbor_list``; no loop over edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Structure

#: Highest atomic number with a CGCNN feature vector.
MAX_Z = 100
#: Two neighbour distances closer than this (Å) are a tie at the k-th neighbour shell.
TIE_TOLERANCE = 1e-4


@dataclass
class CrystalGraph:
    """One crystal as a graph: atoms, and edges src (neighbour image) -> dst (centre atom)."""

    atomic_numbers: np.ndarray  # (n,) int64
    edge_src: np.ndarray  # (E,) int64, index of the neighbour atom
    edge_dst: np.ndarray  # (E,) int64, index of the centre atom
    edge_vec: np.ndarray  # (E, 3) float64, Å, neighbour image − centre

    @property
    def n_atoms(self) -> int:
        """Number of atoms (nodes)."""
        return len(self.atomic_numbers)


#: Two sites closer than this (Å, periodic images included) are a broken structure: the
#: shortest bond in any known crystal is about 0.74 Å (H2); MP's shortest metal-H bonds ~1.5 Å.
MIN_DISTANCE = 0.5
#: A gap between atomic planes wider than this (Å, centre to centre, measured normal to each
#: lattice plane) is vacuum: a slab, wire or molecule in a box, not a bulk crystal. The widest
#: such gap among the 3,377 shipped MP training crystals is 8.5 Å (PbS mp-20526, a layered
#: cell); DFT slab models use >= 10 Å of vacuum.
MAX_VACUUM_GAP = 9.0

# Geometric bounds, checked with O(sites) numpy before any neighbour list: pymatgen's neighbour
# search grids the cell's bounding box into cubes of the search radius and enumerates every
# periodic image within the radius of each lattice plane, so its memory and time grow with the
# cell's extent over the radius and with 1 / the cell's heights. Unchecked, a 10⁴ Å box took
# 108 s to refuse, a 10³⁰ Å lattice asked for ~1 TB, and a 0.01 Å-high skewed cell never ended.
# Ranges of the 3,377 shipped MP training crystals are quoted beside each bound.
#: Longest lattice vector (Å). Training crystals: 2.6-31.5 Å; a 40-fold supercell of a 5 Å cell
#: is 200 Å.
MAX_LATTICE_LENGTH = 200.0
#: Smallest distance (Å) between neighbouring lattice planes of the (100), (010), (001)
#: families (volume / face area). Training crystals: 0.88-12.1 Å.
MIN_CELL_HEIGHT = 0.3
#: Largest a·b·c / volume (1 for an orthogonal cell; grows as the cell flattens). Training
#: crystals: 1.0-38.4 (99% below 4.9).
MAX_SKEWNESS = 100.0
#: Fewest sites per Å³. Training crystals: 0.0146-0.168 (diamond 0.176, the densest element);
#: below this a cell is mostly empty space. The most is set by :data:`MIN_DISTANCE` (close-packed
#: sites 0.5 Å apart: 11.3 per Å³), checked by the neighbour search itself.
MIN_SITE_DENSITY = 0.004


def cell_geometry(lattice: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float]:
    """(lengths (3,), volume, heights (3,), skewness) of a 3x3 lattice matrix (rows a, b, c):
    height i = volume / area of the face spanned by the other two vectors; skewness =
    a·b·c / volume."""
    lengths = np.linalg.norm(lattice, axis=1)
    volume = float(abs(np.linalg.det(lattice)))
    faces = np.linalg.norm(np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]]), axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        heights = volume / faces
        skewness = float(np.prod(lengths) / volume) if volume > 0 else float("inf")
    return lengths, volume, heights, skewness


def geometry_problem(structure: Structure) -> str | None:
    """Why the cell of ``structure`` is outside the geometric bounds (lengths, volume, heights,
    skewness), or None: numpy on the 3x3 lattice only, so any refusal is quick."""
    lattice = structure.lattice.matrix
    if not np.all(np.isfinite(lattice)):
        return "invalid lattice (non-finite or zero volume)"
    lengths, volume, heights, skewness = cell_geometry(lattice)
    if lengths.max() > MAX_LATTICE_LENGTH:
        i = int(np.argmax(lengths))
        return (
            f"lattice vector {'abc'[i]} is {lengths[i]:.4g} Å long, more than "
            f"{MAX_LATTICE_LENGTH:g} Å: not a bulk crystal cell this model can screen"
        )
    if not np.isfinite(volume) or volume < 1e-6:
        return "invalid lattice (non-finite or zero volume)"
    if heights.min() < MIN_CELL_HEIGHT:
        i = int(np.argmin(heights))
        return (
            f"cell height along {'abc'[i]}* is {heights[i]:.3g} Å (volume {volume:.3g} Å³), "
            f"below {MIN_CELL_HEIGHT} Å: a flattened or degenerate cell"
        )
    if skewness > MAX_SKEWNESS:
        return (
            f"cell skewness a·b·c/volume is {skewness:.4g}, above {MAX_SKEWNESS:g}: a flattened "
            "or needlessly skewed cell (reduce it, e.g. Structure.get_reduced_structure())"
        )
    return None


def density_problem(structure: Structure) -> str | None:
    """Why ``structure`` has too few sites per Å³ (mostly empty space), or None."""
    density = len(structure) / structure.volume
    if density < MIN_SITE_DENSITY:
        return (
            f"{density:.3g} sites per Å³, below {MIN_SITE_DENSITY}: mostly empty space, not a "
            "bulk crystal"
        )
    return None


def vacuum_gaps(structure: Structure) -> np.ndarray:
    """Widest empty gap (Å) between atomic planes along each lattice-plane normal (3,): the
    largest spacing of the sites' fractional coordinate i (periodic) times the (100)-type
    interplanar distance of plane family i."""
    spacing = 1.0 / np.linalg.norm(
        structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1
    )
    frac = np.sort(np.mod(structure.frac_coords, 1.0), axis=0)
    wrapped = np.vstack([frac, frac[:1] + 1.0])
    return np.diff(wrapped, axis=0).max(axis=0) * spacing


def structure_problem(structure: object, max_sites: int = 2000) -> str | None:
    """Why ``structure`` cannot be predicted, or None if it can: the one structure check of
    every entry point (files, Python API, stores, ``predict``).

    Refused: non-Structures, no sites, more than ``max_sites`` sites, disorder, dummy or unknown
    species (CGCNN features cover Z = 1..100), non-finite or zero-volume lattices, cells outside
    the geometric bounds (:func:`geometry_problem`), vacuum gaps wider than
    :data:`MAX_VACUUM_GAP` (slabs, wires, molecules or isolated atoms in a box), fewer sites per Å³
    than :data:`MIN_SITE_DENSITY` and sites closer
    than :data:`MIN_DISTANCE` (periodic images included). Every check before the neighbour
    search is O(sites), so a refusal takes milliseconds whatever the cell.
    """
    if not isinstance(structure, Structure):
        kind = type(structure).__name__
        return f"expected a periodic pymatgen Structure, got {kind}" + (
            " (a molecule has no lattice)" if kind == "Molecule" else ""
        )
    if len(structure) == 0:
        return "structure has no sites"
    if len(structure) > max_sites:
        return f"structure has {len(structure)} sites, more than max_sites={max_sites}"
    if not structure.is_ordered:
        return (
            "disordered structure (partial occupancy or mixed species on a site); "
            "order it first (e.g. pymatgen OrderDisorderedStructureTransformation)"
        )
    for site in structure:
        z = getattr(site.specie, "Z", None)
        if z is None or not (1 <= z <= MAX_Z):
            symbol = getattr(site.specie, "symbol", site.specie)
            return f"unknown element {symbol!s} (CGCNN features cover Z = 1..{MAX_Z})"
    geometry = geometry_problem(structure)
    if geometry is not None:
        return geometry
    if not np.all(np.isfinite(structure.frac_coords)):
        return "structure has non-finite (NaN or infinite) coordinates"
    gaps = vacuum_gaps(structure)
    if gaps.max() > MAX_VACUUM_GAP:
        axes = [f"{'abc'[i]} ({gaps[i]:.1f} Å)" for i in range(3) if gaps[i] > MAX_VACUUM_GAP]
        shape = {1: "a slab", 2: "a wire", 3: "a molecule or isolated atoms"}[len(axes)]
        return (
            f"vacuum gap wider than {MAX_VACUUM_GAP} Å along {', '.join(axes)}: {shape} in a box, "
            "not a bulk crystal"
        )
    density = density_problem(structure)
    if density is not None:
        return density
    centers, _, _, dists = structure.get_neighbor_list(MIN_DISTANCE)
    if len(dists):
        i = int(np.argmin(dists))
        return (
            f"two sites are {float(dists[i]):.3f} Å apart (site {int(centers[i])}, "
            f"{structure[int(centers[i])].specie}; minimum {MIN_DISTANCE} Å): a broken structure"
        )
    return None


def check_structure(structure: object, max_sites: int = 2000) -> Structure:
    """``structure`` if :func:`structure_problem` finds nothing; else a ValueError naming it."""
    problem = structure_problem(structure, max_sites)
    if problem is not None:
        raise ValueError(problem)
    return structure  # type: ignore[return-value]


def build_graph(
    structure: Structure,
    k: int = 16,
    max_radius: float = 12.0,
    max_sites: int = 2000,
    *,
    checked: bool = False,
) -> CrystalGraph:
    """Build the k-NN periodic graph of ``structure`` (see module docstring).

    Raises ValueError for bad input, or when an atom has fewer than ``k`` neighbours within
    ``max_radius`` Å (an isolated atom in vacuum, a slab or molecule in a huge box).
    ``checked=True``: the caller has just run :func:`check_structure` with ``max_sites``
    (it is not run again: a neighbour search per call).
    """
    if not checked:
        structure = check_structure(structure, max_sites=max_sites)
    n = len(structure)
    # first guess: the radius holding ~1.5 k atoms at the mean density, grown until all have k
    vol_per_atom = structure.volume / n
    radius = min(max_radius, max(3.0, (1.5 * k * vol_per_atom * 3 / (4 * np.pi)) ** (1 / 3) + 0.5))
    while True:
        centers, points, offsets, dists = structure.get_neighbor_list(radius)
        counts = np.bincount(centers, minlength=n)
        if counts.min() >= k:
            break
        if radius >= max_radius:
            worst = int(np.argmin(counts))
            raise ValueError(
                f"atom {worst} ({structure[worst].specie}) has {counts[worst]} neighbours within "
                f"{max_radius} Å, fewer than k={k}: isolated atom or vacuum region"
            )
        radius = min(max_radius, radius * 1.35)
    # per centre, the k-th smallest distance (ties kept)
    order = np.lexsort((dists, centers))
    centers, points, offsets, dists = centers[order], points[order], offsets[order], dists[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kth = dists[start + k - 1]
    keep = dists <= kth[centers] + TIE_TOLERANCE
    centers, points, offsets = centers[keep], points[keep], offsets[keep]
    cart = structure.cart_coords
    vec = cart[points] + offsets @ structure.lattice.matrix - cart[centers]
    return CrystalGraph(
        atomic_numbers=np.array(structure.atomic_numbers, dtype=np.int64),
        edge_src=points.astype(np.int64),
        edge_dst=centers.astype(np.int64),
        edge_vec=vec,
    )


@dataclass
class GraphBatch:
    """Many crystal graphs as one disjoint graph (torch tensors)."""

    atomic_numbers: torch.Tensor  # (N,)
    edge_src: torch.Tensor  # (E,)
    edge_dst: torch.Tensor  # (E,)
    edge_vec: torch.Tensor  # (E, 3)
    node_graph: torch.Tensor  # (N,) index of the crystal each node belongs to
    n_graphs: int

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> GraphBatch:
        """Move to ``device`` (and cast the edge vectors to ``dtype``)."""
        return GraphBatch(
            atomic_numbers=self.atomic_numbers.to(device),
            edge_src=self.edge_src.to(device),
            edge_dst=self.edge_dst.to(device),
            edge_vec=self.edge_vec.to(device=device, dtype=dtype or self.edge_vec.dtype),
            node_graph=self.node_graph.to(device),
            n_graphs=self.n_graphs,
        )


def collate(graphs: Sequence[CrystalGraph], dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Concatenate graphs into one disjoint graph with node offsets."""
    if not graphs:
        raise ValueError("cannot batch an empty list of graphs")
    sizes = np.array([g.n_atoms for g in graphs])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    src = np.concatenate([g.edge_src + o for g, o in zip(graphs, offsets, strict=True)])
    dst = np.concatenate([g.edge_dst + o for g, o in zip(graphs, offsets, strict=True)])
    return GraphBatch(
        atomic_numbers=torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs])),
        edge_src=torch.from_numpy(src),
        edge_dst=torch.from_numpy(dst),
        edge_vec=torch.from_numpy(np.concatenate([g.edge_vec for g in graphs])).to(dtype),
        node_graph=torch.from_numpy(np.repeat(np.arange(len(graphs)), sizes)),
        n_graphs=len(graphs),
    )
