"""The campaign's curves: true top-K found vs oracle calls, per strategy (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_campaign"]

_STYLE = {
    "random": ("tab:gray", "o", "random (mean of draws)"),
    "ranking": ("tab:blue", "s", "one ranking, no retraining"),
    "exploit": ("tab:orange", "^", "active: exploit, retrained each round"),
    "ucb": ("tab:green", "D", "active: ensemble UCB, retrained each round"),
}


def plot_campaign(summary: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Write the found-top-K curves of :func:`~atomate2_gmt.active_learning.simulate.summarize`
    output (with the exact random expectation and 3× it) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = summary["oracle_calls"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    expectation = summary["random_expectation"]
    factor = summary.get("target", {}).get("factor", 3.0)
    ax.plot(calls, expectation, color="black", ls="--", lw=1, label="random, exact n·K/N")
    ax.plot(
        calls, [factor * e for e in expectation], color="black", ls=":", lw=1,
        label=f"target: {factor:g}× random",
    )  # fmt: skip
    for name, s in summary["strategies"].items():
        color, marker, label = _STYLE.get(name, ("tab:red", "x", name))
        ax.plot(calls, s["found_mean"], color=color, marker=marker, label=label)
        per = s.get("found_per_replicate") or []
        if len(per) > 1:
            lo = [min(r[i] for r in per) for i in range(len(calls))]
            hi = [max(r[i] for r in per) for i in range(len(calls))]
            ax.fill_between(calls, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("oracle calls (labels revealed)")
    ax.set_ylabel("true top-K of the pool found")
    ax.set_title(title or "Simulated campaign")
    ax.set_xlim(0, calls[-1])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
