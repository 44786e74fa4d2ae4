"""``GMTDiscoveryMaker``: screen → select → DFPT → feedback, as one jobflow Flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.select import SelectionPolicy, select_for_dfpt

__all__ = ["GMTDiscoveryMaker"]


@dataclass
class GMTDiscoveryMaker(Maker):
    """Screen candidates, pick the promising ones by ``policy`` and run ``dfpt_maker`` on each;
    the DFPT results come back as training documents and on the candidates' documents.

    Args:
        name: flow name.
        screen_maker: the screening flow (chunked predictions into the candidate store).
        policy: which candidates go to DFPT (:class:`~atomate2_gmt.jobs.select.SelectionPolicy`).
        dfpt_maker: any DFPT backend Maker whose ``make(structure, candidate_id=...)`` returns a
            Job/Flow with a ``DFPTResultDoc`` output (ABINIT, VASP through atomate2, ...).
    """

    name: str = "gmt_discovery"
    screen_maker: GMTScreenMaker = field(default_factory=GMTScreenMaker)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    dfpt_maker: Maker | None = None

    def make(self, candidates: Any) -> Flow:
        """The flow for ``candidates``; its output is the selection (the DFPT flows are added
        when the selection job runs)."""
        if self.dfpt_maker is None:
            raise ValueError("GMTDiscoveryMaker needs a dfpt_maker (e.g. the ABINIT DFPT maker)")
        screen = self.screen_maker.make(candidates)
        select = select_for_dfpt(
            self.policy, self.dfpt_maker, store=self.screen_maker.store, upstream=screen.output
        )
        return Flow([screen, select], output=select.output, name=self.name)
