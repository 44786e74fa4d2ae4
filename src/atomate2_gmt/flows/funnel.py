"""``GMTFunnelMaker``: predict everything, relax the shortlist, predict again, rank.

Screening studies rank relaxed crystals. A generated candidate (the substitution generator's
rescaled prototype) is a guess of a structure: its predicted tensors can be far from those of
the crystal it would relax to. The funnel keeps the cost of relaxing low by relaxing only what
could reach the top:

1. the screening flow (:class:`~atomate2_gmt.flows.screen.GMTScreenMaker`) predicts every
   candidate on its input structure and stores the documents;
2. the ``shortlist`` best documents per property (the screen's ranking and filters) are relaxed,
   each by one job of atomate2's ``ForceFieldRelaxMaker`` (CHGNet by default);
3. the energies of the known phases of their chemical systems come from one atomate2
   ``ForceFieldStaticMaker`` job with the same potential (:mod:`atomate2_gmt.stability`);
4. the relaxed structures are predicted again; their documents carry the ``relaxation`` record,
   the MLIP energy above the hull and its ``stability_source``; the input documents point to
   them (``relaxed_prediction_id``);
5. the ranking leaves out generated crystals that were not relaxed.

Steps 2–5 are made at run time (the shortlist is known only then) by
:func:`atomate2_gmt.jobs.relax.relax_shortlist`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.relax import relax_shortlist

__all__ = ["GMTFunnelMaker"]


@dataclass
class GMTFunnelMaker(Maker):
    """Screen, relax the best ``shortlist`` per property, predict again and rank.

    Args:
        name: flow name.
        screen_maker: the first screening (its predict maker, chunk size, store and ``query``
            filters are used for both passes).
        shortlist: documents per property to relax (the union over properties is relaxed once).
        relax_maker: atomate2 ``ForceFieldRelaxMaker`` (None: CHGNet, cell relaxed, fmax
            0.05 eV/Å, at most 300 steps; :func:`atomate2_gmt.jobs.relax.default_relax_maker`).
        phase_maker: atomate2 force-field maker of the known phases' energies (None: a CHGNet
            ``ForceFieldStaticMaker``); it must use the relax maker's potential.
        stability: estimate the MLIP energy above the hull of crystals whose source gave none.
        max_phase_sites: known phases with larger cells are left out of the hull (None: all).
        top: rows per property in the final ranking (None: the screen maker's ``top``).
    """

    name: str = "gmt_funnel"
    screen_maker: GMTScreenMaker = field(default_factory=GMTScreenMaker)
    shortlist: int = 10
    relax_maker: Any = None
    phase_maker: Any = None
    stability: bool = True
    max_phase_sites: int | None = 40
    top: int | None = None

    def make(self, candidates: Any) -> Flow:
        """The funnel flow of ``candidates`` (as :meth:`GMTScreenMaker.make` takes them); its
        output is the final ranking (the ranking job's output with ``"funnel"``: shortlisted,
        relaxed, converged, predicted, with an MLIP hull estimate, known phases, relaxation
        time and the failures)."""
        if self.shortlist < 1:
            raise ValueError(f"shortlist must be >= 1, got {self.shortlist}")
        screen = self.screen_maker.make(candidates)
        chunks = [j for j in screen.jobs if j is not screen.jobs[-1]]
        funnel = relax_shortlist(
            screen.output,
            [j.output for j in chunks],
            predict_maker=self.screen_maker.predict_maker,
            relax_maker=self.relax_maker,
            phase_maker=self.phase_maker,
            shortlist=self.shortlist,
            top=self.top if self.top is not None else self.screen_maker.top,
            store=self.screen_maker.store,
            query=self.screen_maker.query,
            stability=self.stability,
            max_phase_sites=self.max_phase_sites,
        )
        return Flow([screen, funnel], output=funnel.output, name=self.name)
