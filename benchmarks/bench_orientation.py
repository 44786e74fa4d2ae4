"""Measurement: do the shipped models and the stored fields depend on the input's orientation?

For every shipped model and real MP structures (the ``--per-system`` smallest of each crystal
system), each structure is predicted in its file's frame and in ``--rotations`` random frames
(half of them improper). Reported per task: the worst relative tensor error
|T(R·S) − R·T(S)|_F / |T(S)|_F, and per stored derived field (``schemas.fields.DERIVED_FIELDS``,
computed as the prediction documents compute them) the largest relative spread between
orientations of one crystal. ``Voigt max |e_iJ|`` is shown for contrast: a structure-frame
quantity that is not stored, because it moves with the file.

    python benchmarks/bench_orientation.py [--per-system 2] [--rotations 4]
        [--output benchmarks/results/bench_orientation.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomate2_gmt.data.mp import structures_by_crystal_system
from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.equivariance import random_orthogonal, transformed
from atomate2_gmt.pretrained import available, pretrained_path
from atomate2_gmt.schemas.fields import DERIVED_FIELDS
from atomate2_gmt.schemas.prediction import compute_ieee_rotation, derived_quantities
from atomate2_gmt.tensors.conventions import full_to_voigt, rotate

ROOT = Path(__file__).resolve().parents[1]


def _fields(task: str, tensor: np.ndarray, structure: Any) -> dict[str, float]:
    ieee = compute_ieee_rotation(structure)
    derived = derived_quantities(task, tensor, None if isinstance(ieee, str) else ieee)
    out = {f: derived.get(f) for f in DERIVED_FIELDS[task] if f != "born_stable"}
    if task == "piezo":
        out["Voigt max |e_iJ| (not stored)"] = float(np.abs(full_to_voigt(tensor, "piezo")).max())
    return {k: float(v) for k, v in out.items() if v is not None}


def measure(task: str, per_system: int, rotations: int) -> dict[str, Any]:
    model, meta = load_checkpoint(pretrained_path(task), task=task)
    rng = np.random.default_rng(0)
    worst = 0.0
    spread: dict[str, float] = {}
    structures = [s for g in structures_by_crystal_system(per_system).values() for s in g]
    for s in structures:
        frames = [np.eye(3)] + [random_orthogonal(rng, bool(k % 2)) for k in range(rotations)]
        moved = [transformed(s, R) for R in frames]
        with torch.no_grad():
            batch = collate_crystals([prepare_crystal(m, model.config) for m in moved])
            out = model(batch).numpy()
        ref = out[0]
        scale = max(float(np.linalg.norm(ref)), 1e-8)
        for R, T in zip(frames[1:], out[1:], strict=True):
            worst = max(worst, float(np.linalg.norm(T - rotate(ref, R))) / scale)
        values = [_fields(task, T, m) for T, m in zip(out, moved, strict=True)]
        for name in values[0]:
            vs = np.array([v[name] for v in values if name in v])
            rel = float(np.ptp(vs) / max(np.abs(vs).max(), 1e-6))
            spread[name] = max(spread.get(name, 0.0), rel)
    return {
        "task": task,
        "version": meta.get("version"),
        "n_structures": len(structures),
        "frames_per_structure": rotations + 1,
        "worst_tensor_error": worst,
        "field_spread": spread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-system", type=int, default=2)
    parser.add_argument("--rotations", type=int, default=4)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/bench_orientation.json"
    )
    args = parser.parse_args()
    rows = [measure(t, args.per_system, args.rotations) for t in available()]
    print(f"{'task':18s} {'version':8s} {'worst |ΔT|/|T|':>15s}  largest spread of a field")
    for r in rows:
        fields = ", ".join(f"{k} {v:.1e}" for k, v in r["field_spread"].items())
        print(f"{r['task']:18s} {r['version']!s:8s} {r['worst_tensor_error']:15.1e}  {fields}")
    result = {
        "rows": rows,
        "machine": f"{platform.machine()} torch {torch.__version__} threads {torch.get_num_threads()}",
        "command": "python benchmarks/bench_orientation.py "
        f"--per-system {args.per_system} --rotations {args.rotations}",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
