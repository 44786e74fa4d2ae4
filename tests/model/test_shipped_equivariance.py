"""Every shipped checkpoint rotates with the crystal, on real MP structures of every crystal
system, under proper and improper rotations, to float32 round-off (what ships is what is tested:
a training trick such as a lab-frame offset can break what an untrained model keeps)."""

from __future__ import annotations

import copy

import pytest

from atomate2_gmt.data.mp import structures_by_crystal_system
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.equivariance import EQUIVARIANCE_TOLERANCE, equivariance_error
from atomate2_gmt.model.validate import check_output_scale
from atomate2_gmt.pretrained import available, pretrained_path


@pytest.mark.parametrize("task", available())
def test_shipped_model_is_equivariant_on_real_structures(task):
    model, meta = load_checkpoint(pretrained_path(task), task=task)
    structures = [s for group in structures_by_crystal_system(2).values() for s in group]
    assert len(structures) == 14
    error, where = equivariance_error(model, structures, seed=7)
    assert error < EQUIVARIANCE_TOLERANCE, f"{task} {meta.get('version')}: {error:.2e} at {where}"
    # the same weights in float64: what remains is the structures' own precision (1e-6 Å lattices)
    error64, where64 = equivariance_error(copy.deepcopy(model).double(), structures, seed=7)
    assert error64 < 1e-6, f"{task} {meta.get('version')} float64: {error64:.2e} at {where64}"


@pytest.mark.parametrize("task", available())
def test_shipped_model_passes_the_output_scale_check(task):
    """The check a checkpoint path gets at load (model.validate); the shipped ones get it here,
    so loading them in a prediction process runs no forward pass (registry.loading)."""
    model, _ = load_checkpoint(pretrained_path(task), task=task)
    check_output_scale(model, pretrained_path(task))  # raises for an unphysical model
