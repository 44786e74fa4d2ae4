"""Simulated active-learning campaigns: held-out DFT labels as the oracle.

:mod:`.policies` scores and picks candidates, :mod:`.simulate` runs the loop (seed set → pool →
rounds of select / reveal / fine-tune) for several strategies and :mod:`.plot` draws the curves.
"""

from atomate2_gmt.active_learning.simulate import CampaignConfig, CampaignResult, run_campaign

__all__ = ["CampaignConfig", "CampaignResult", "run_campaign"]
