"""Evaluation report rendering: Markdown tables and parity plots (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atomate2_gmt.tensors.conventions import full_to_voigt
from atomate2_gmt.tensors.tasks import TASK_SPECS


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {m['n']} | {m['fnorm']:.3f} | {m['ewt25']:.1%} | {m['ewt10']:.1%} | "
        f"{m['ewt5']:.1%} | {m['zero_success']:.1%} | {m['equality_success']:.1%} |"
    )


def report_markdown(report: dict[str, Any]) -> str:
    """The paper's table (overall, per crystal system, piezo non-zero subset) as Markdown."""
    task = report.get("task", "?")
    units = TASK_SPECS[task].unit_suffix if task in TASK_SPECS else ""
    lines = [
        f"# GMTNet {task}: test-set evaluation",
        "",
        f"Split sizes: {report.get('split_sizes')}; parameters: {report.get('n_parameters')}; "
        f"best epoch {report.get('best_epoch')} of {report.get('epochs')}; "
        f"time per batch of {report.get('batch_size')}: {report.get('time_per_batch_s', 0):.3f} s.",
        "",
        f"| subset | n | Fnorm{units} | EwT25 | EwT10 | EwT5 | zero | equality |",
        "|---|---|---|---|---|---|---|---|",
        _row("all", report["overall"]),
    ]
    if "nonzero_subset" in report:
        lines.append(_row("non-zero tensors", report["nonzero_subset"]))
    if "rotated_test" in report:  # each crystal in its own random frame
        lines.append(_row("all, randomly rotated", report["rotated_test"]))
    if "curated_test" in report:  # the test crystals the curation rule keeps
        lines.append(_row("all, curated (data.curation)", report["curated_test"]))
    for source, m in report.get("per_source", {}).items():
        lines.append(_row(f"source {source}", m))
    for cs, m in report.get("per_crystal_system", {}).items():
        lines.append(_row(cs, m))
    overall = report["overall"]
    if "spearman_norm" in overall:
        lines += [
            "",
            f"Ranking by the frame-free magnitude |T|_F: Spearman {overall['spearman_norm']:.3f}, "
            f"top-10 % recall {overall['top10_recall']:.1%}; EwT50 {overall['ewt50']:.1%}.",
        ]
    by_dim = report.get("per_free_parameters", {})
    if by_dim:  # is it the direction or the magnitude that is wrong, by what symmetry leaves free
        lines += [
            "",
            "By the number of components the point group leaves free (1: symmetry fixes the "
            "direction). cos θ between predicted and true full tensors; aligned: cos θ > 0.968, "
            "within 25 % of the truth at the best-fitting magnitude.",
            "",
            "| free components | n | EwT25 | median cos θ | wrong sign (cos θ < 0) | aligned "
            "| median norm ratio pred/true |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {d} | {m['n']} | {m['ewt25']:.1%} | {m['median_cosine']:.2f} | "
            f"{m['wrong_sign']:.1%} | {m['aligned']:.1%} | {m['median_norm_ratio']:.2f} |"
            for d, m in by_dim.items()
        ]
    textbook = report.get("textbook", {}).get("crystals")
    if textbook:  # |pred|_F / |DFT|_F of the well-known piezoelectrics (training.textbook)
        inside = sum(0.5 <= c["ratio"] <= 2 for c in textbook.values())
        lines += [
            "",
            f"Textbook piezoelectrics within a factor of 2 of their DFT |e|_F: {inside} of "
            f"{len(textbook)}.",
            "",
            "| crystal | split | DFT |e|_F (C/m²) | predicted | ratio |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['label']} | {c['split']} | {c['dft_norm']:.3f} | {c['pred_norm']:.3f} | "
            f"{c['ratio']:.2f} |"
            for c in textbook.values()
        ]
    lines += ["", f"Machine: {report.get('machine', '?')}. Command: `{report.get('command', '?')}`"]
    return "\n".join(lines) + "\n"


def parity_plot(
    pred: np.ndarray, true: np.ndarray, kind: str, path: str | Path, title: str = ""
) -> Path:
    """Predicted vs true Voigt components (task units), one point per component, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vp = np.stack([full_to_voigt(p, kind) for p in pred]).reshape(-1)
    vt = np.stack([full_to_voigt(t, kind) for t in true]).reshape(-1)
    keep = (np.abs(vt) > 1e-8) | (np.abs(vp) > 1e-8)  # drop symmetry zeros (exact in both)
    lo, hi = float(min(vt[keep].min(), vp[keep].min())), float(max(vt[keep].max(), vp[keep].max()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1)
    ax.scatter(vt[keep], vp[keep], s=6, alpha=0.5)
    ax.set_xlabel("DFT (Voigt components)")
    ax.set_ylabel("GMTNet")
    ax.set_title(title or kind)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curves_plot(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Per-epoch train and validation EwT25/EwT50, Fnorm and median |pred|_F/|true|_F (the
    trainer's ``train_metrics_size`` and validation figures), one panel each, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("ewt25", "EwT25"), ("ewt50", "EwT50"), ("fnorm", "Fnorm"), ("median_ratio",
              "median |pred|/|true|"))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), dpi=110)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, style in (("train", "-"), ("val", "--")):
            rows = [r for r in history if f"{prefix}_{key}" in r]
            ax.plot([r["epoch"] for r in rows], [r[f"{prefix}_{key}"] for r in rows], style,
                    label=prefix)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
