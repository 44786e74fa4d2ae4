"""``GMTCampaignMaker``: N rounds of screen → select → DFPT → feedback → retrain (dynamic flow).

Round k is a Flow ``<name>_round_<k>`` of a screening flow and three jobs (named with the suffix
``_r<k>``, e.g. ``gmt_retrain_r2``):

1. ``gmt_screen`` (the discovery maker's screening flow) with the predict maker's model of the
   policy's task set to ``"registry"``, resolved when the prediction jobs run: every round
   screens with the model promoted at that time (round 1: the promoted or seeded shipped one);
2. ``gmt_select``: :func:`~atomate2_gmt.jobs.select.select_for_dfpt` restricted to the
   documents of this round's model version (the screen's ``model_version``), with the DFPT flows
   and feedback jobs as a **detour** (not an addition), so the jobs after it wait until every
   DFPT result has been fed back. A structure computed or in flight in an earlier round (its
   earlier documents carry ``dfpt`` / ``dfpt_selected``) is marked ``dfpt_selected`` on its new
   documents first (``done_keys``), so it is never picked twice across rounds;
3. ``gmt_retrain``: the retrain maker's job (:func:`~atomate2_gmt.jobs.retrain.retrain` on the
   shipped data plus all feedback so far, after the selection's DFPT detour; it promotes the
   new version only if not worse on the held-out set);
4. ``gmt_campaign_advance``: outputs the round's summary and, while k < ``n_rounds``, returns
   ``Response(addition=<round k+1>)``; the recursion stops at ``n_rounds``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker, Response, job

from atomate2_gmt.flows.discovery import GMTDiscoveryMaker
from atomate2_gmt.jobs.retrain import GMTRetrainMaker
from atomate2_gmt.jobs.select import select_for_dfpt
from atomate2_gmt.routing import job_role, route_new_jobs

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["GMTCampaignMaker", "campaign_advance"]


@job(name="gmt_campaign_advance", **job_role("gmt"))
def campaign_advance(
    maker: GMTCampaignMaker,
    candidates: Any,
    round_index: int,
    selection: dict[str, Any] | None = None,
    retrained: dict[str, Any] | None = None,
    done_keys: Sequence[str] = (),
) -> Response:
    """The round's summary; while ``round_index < maker.n_rounds`` add round ``round_index+1``
    (which never picks a structure picked so far: ``done_keys`` + this round's)."""
    done = [*done_keys, *(k for k in (selection or {}).get("structure_keys", []) if k)]
    output = {
        "round": round_index,
        "n_rounds": maker.n_rounds,
        "selected": (selection or {}).get("selected", []),
        "selected_keys": (selection or {}).get("structure_keys", []),
        "retrain": retrained,
        "next_round": round_index + 1 if round_index < maker.n_rounds else None,
        "done_keys": done,
    }
    if round_index >= maker.n_rounds:
        return Response(output=output)
    next_round = maker.make(candidates, round_index + 1, done)
    return Response(output=output, addition=route_new_jobs(next_round))


@dataclass
class GMTCampaignMaker(Maker):
    """An active-learning campaign: ``n_rounds`` of screen → select → DFPT → feedback → retrain.

    Args:
        name: flow name (round k is ``<name>_round_<k>``).
        discovery_maker: screening flow, selection policy and DFPT maker of every round (its
            predict maker's model of ``policy.prop`` is replaced by ``"registry"``).
        retrain_maker: the retraining after each round (None: fine-tune ``policy.prop`` with
            the defaults of :class:`~atomate2_gmt.jobs.retrain.GMTRetrainMaker`).
        n_rounds: rounds (≥ 1).
    """

    name: str = "gmt_campaign"
    discovery_maker: GMTDiscoveryMaker = field(default_factory=GMTDiscoveryMaker)
    retrain_maker: GMTRetrainMaker | None = None
    n_rounds: int = 3

    @property
    def task(self) -> str:
        """The task the campaign improves (the selection policy's property)."""
        return self.discovery_maker.policy.prop

    def round_discovery_maker(self) -> GMTDiscoveryMaker:
        """The discovery maker with the task's model read from the registry at run time."""
        screen = self.discovery_maker.screen_maker
        predict = replace(
            screen.predict_maker, models={**screen.predict_maker.models, self.task: "registry"}
        )
        return replace(self.discovery_maker, screen_maker=replace(screen, predict_maker=predict))

    def resolved_retrain_maker(self) -> GMTRetrainMaker:
        """The retrain maker (default: fine-tune the policy's task); its task must match."""
        maker = self.retrain_maker or GMTRetrainMaker(task=self.task)
        if maker.task != self.task:
            raise ValueError(
                f"the retrain maker's task {maker.task!r} differs from the policy's {self.task!r}"
            )
        return maker

    def make(self, candidates: Any, round_index: int = 1, done_keys: Sequence[str] = ()) -> Flow:
        """Round ``round_index`` for ``candidates`` (a list of structures, a folder or a store,
        as for the screening flow); the later rounds are added when each round ends.
        ``done_keys``: structure keys picked in earlier rounds (never picked again)."""
        if self.n_rounds < 1:
            raise ValueError(f"n_rounds must be >= 1, got {self.n_rounds}")
        if not 1 <= round_index <= self.n_rounds:
            raise ValueError(f"round_index must be in 1..{self.n_rounds}, got {round_index}")
        discovery = self.round_discovery_maker()
        if discovery.dfpt_maker is None:
            raise ValueError("GMTCampaignMaker needs a dfpt_maker on its discovery maker")
        retrain_maker = self.resolved_retrain_maker()
        screen = discovery.screen_maker.make(candidates)
        select = select_for_dfpt(
            asdict(discovery.policy), discovery.dfpt_maker,
            store=discovery.screen_maker.store, upstream=screen.output, detour=True,
            screen=screen.output, done_keys=list(done_keys),
        )  # fmt: skip
        retrain_job = retrain_maker.make(upstream=select.output)
        advance = campaign_advance(
            self, candidates, round_index, selection=select.output,
            retrained=retrain_job.output, done_keys=list(done_keys),
        )  # fmt: skip
        for j in (select, retrain_job, advance):
            j.name = f"{j.name}_r{round_index}"
        return Flow(
            [screen, select, retrain_job, advance],
            output=advance.output,
            name=f"{self.name}_round_{round_index}",
        )
