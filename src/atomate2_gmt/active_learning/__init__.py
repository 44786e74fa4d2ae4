"""Simulated active-learning campaigns: held-out DFT labels as the oracle.

:mod:`.policies` scores and picks candidates, :mod:`.config` holds what a campaign is asked and
what it measures, :mod:`.simulate` runs the loop (seed set → pool → rounds of select / reveal /
fine-tune) for several strategies and :mod:`.plot` draws the curves. Import each from its
module; ``policies`` and ``config`` stay light for the CLI (the loop imports torch).
"""
