"""Prepared crystals and their batches, shared by every architecture: what a model needs of one
structure (its k-NN graph and its point group, :class:`PreparedCrystal`) and a batch of them as
tensors (:class:`CrystalBatch`, the input of ``TensorModel.forward``).

The graph and the point group depend on a few config fields only (:func:`graph_key`), not on
the task: :func:`prepare_structure` is done once per structure for every model with that key,
and :func:`crystal_for_kind` adds the tensor kind's output projector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Structure

from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.graph import CrystalGraph, GraphBatch, build_graph, check_structure, collate
from atomate2_gmt.tensors.symmetry import (
    PointGroupInfo,
    point_group_info,
    projector,
    refined_structure,
)

__all__ = [
    "CrystalBatch",
    "PreparedCrystal",
    "collate_crystals",
    "crystal_for_kind",
    "graph_key",
    "prepare_crystal",
    "prepare_structure",
]


@dataclass
class PreparedCrystal:
    """What the model needs of one structure: its graph and its point-group data."""

    graph: CrystalGraph
    ops: np.ndarray  # (n, 3, 3) Cartesian point-group operations, structure's frame
    output_projector: np.ndarray  # (3**order, 3**order) tensor-space projector
    point_group: str
    crystal_system: str


def graph_key(config: GMTNetConfig) -> tuple[object, ...]:
    """The config fields the graph and the point group depend on: models with equal keys can
    share one :func:`prepare_structure` of a structure (the tensor kind only changes the
    output projector)."""
    return (
        config.k_neighbors,
        config.max_radius,
        config.max_sites,
        config.symprec,
        config.angle_tolerance,
        config.refine_structure,
    )


def prepare_structure(
    structure: Structure,
    config: GMTNetConfig,
    *,
    checked: bool = False,
    point_group: PointGroupInfo | None = None,
) -> tuple[CrystalGraph, PointGroupInfo]:
    """Validate ``structure``, find its point group and build its graph (task-independent part
    of :func:`prepare_crystal`; ValueError on bad input). ``checked=True``: the caller has run
    :func:`~atomate2_gmt.model.graph.check_structure` with at most ``config.max_sites`` (it is
    not run again: a neighbour search). ``point_group``: the structure's point group already
    found at ``config.symprec`` and ``config.angle_tolerance`` (used instead of searching
    again; ValueError if its tolerances are others)."""
    if not checked:
        structure = check_structure(structure, max_sites=config.max_sites)
    if point_group is None:
        info = point_group_info(structure, config.symprec, config.angle_tolerance)
    elif (point_group.symprec, point_group.angle_tolerance) != (
        config.symprec,
        config.angle_tolerance,
    ):
        raise ValueError(
            f"point group found at symprec {point_group.symprec}, angle tolerance "
            f"{point_group.angle_tolerance}; the model needs {config.symprec}, "
            f"{config.angle_tolerance}"
        )
    else:
        info = point_group
    if config.refine_structure:
        structure = refined_structure(structure, config.symprec)
    graph = build_graph(
        structure,
        config.k_neighbors,
        config.max_radius,
        config.max_sites,
        checked=not config.refine_structure,  # a refined structure is checked again
    )
    return graph, info


def crystal_for_kind(graph: CrystalGraph, info: PointGroupInfo, kind: str) -> PreparedCrystal:
    """A :class:`PreparedCrystal` for tensor ``kind`` from a shared graph and point group."""
    return PreparedCrystal(
        graph=graph,
        ops=info.ops,
        output_projector=projector(kind, info),  # a PointGroupInfo's ops are checked already
        point_group=info.point_group,
        crystal_system=info.crystal_system,
    )


def prepare_crystal(structure: Structure, config: GMTNetConfig) -> PreparedCrystal:
    """Validate ``structure``, find its point group, build its graph (ValueError on bad input)."""
    graph, info = prepare_structure(structure, config)
    return crystal_for_kind(graph, info, config.kind)


@dataclass
class CrystalBatch:
    """A batch of prepared crystals as tensors."""

    graph: GraphBatch
    ops: list[torch.Tensor]  # per crystal (n_b, 3, 3), float64
    output_projector: torch.Tensor  # (B, 3**order, 3**order), float64

    def to(self, device: torch.device | str, dtype: torch.dtype) -> CrystalBatch:
        """Move to ``device``; edge vectors cast to ``dtype`` (symmetry data stays float64)."""
        return CrystalBatch(
            graph=self.graph.to(device, dtype),
            ops=[o.to(device) for o in self.ops],
            output_projector=self.output_projector.to(device),
        )


def collate_crystals(
    crystals: Sequence[PreparedCrystal], dtype: torch.dtype = torch.float32
) -> CrystalBatch:
    """Batch prepared crystals into one disjoint graph + stacked symmetry data."""
    return CrystalBatch(
        graph=collate([c.graph for c in crystals], dtype=dtype),
        ops=[torch.from_numpy(np.ascontiguousarray(c.ops, dtype=np.float64)) for c in crystals],
        output_projector=torch.from_numpy(np.stack([c.output_projector for c in crystals])),
    )
