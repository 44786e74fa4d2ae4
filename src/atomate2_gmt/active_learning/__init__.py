"""Simulated active-learning campaigns: held-out DFT labels as the oracle.

:mod:`.policies` scores and picks candidates, :mod:`.config` holds what a campaign is asked and
what it measures, :mod:`.simulate` runs the loop (seed set → pool → rounds of select / reveal /
fine-tune) for several strategies and :mod:`.plot` draws the curves.
The loop (torch) is imported on first use, so ``policies`` stays light for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atomate2_gmt.active_learning.simulate import CampaignConfig, CampaignResult, run_campaign

__all__ = ["CampaignConfig", "CampaignResult", "run_campaign"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from atomate2_gmt.active_learning import simulate

        return getattr(simulate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
