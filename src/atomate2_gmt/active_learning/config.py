"""What a simulated active-learning campaign is asked and what it measures.

:class:`CampaignConfig` (rounds, picks, seed / held-out / pool sizes, models and their training),
:class:`StrategyTrace` (one strategy's found-top-K curve) and :class:`CampaignResult` (one
campaign); the loop that fills them is :mod:`atomate2_gmt.active_learning.simulate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from atomate2_gmt.active_learning.policies import STRATEGIES, TARGET_TRANSFORMS
from atomate2_gmt.model.config import check_task
from atomate2_gmt.training.trainer import SELECTION_METRICS

__all__ = [
    "RETRAIN_MODES",
    "SELECT_MODES",
    "SMALL_MODEL",
    "CampaignConfig",
    "CampaignResult",
    "StrategyTrace",
]

SMALL_MODEL: dict[str, Any] = {
    "node_dim": 64,
    "scalar_mul": 32,
    "vector_mul": 8,
    "out_mul": 8,
    "radial_hidden": 64,
    "rbf_bins": 128,
    "n_equivariant_layers": 2,
}
"""GMTNetConfig overrides of the simulation's model (~158 k parameters instead of ~744 k)."""


RETRAIN_MODES: tuple[str, ...] = ("finetune", "scratch")
"""How a model is updated after a round: fine-tuned from the previous round's model, or trained
again from scratch (``init_epochs``, ``lr``, new target scale) on everything labelled so far."""


SELECT_MODES: tuple[str, ...] = ("best", "last")
"""Which model a training returns: ``best``, the best epoch on the validation part of the seed
set (which is then not trained on), or ``last``, the final epoch of a training on the whole
seed set plus the revealed labels (the validation records are trained on and only logged)."""


@dataclass
class CampaignConfig:
    """One simulated campaign.

    Args:
        task: the task (its records are loaded with ``training.run.load_records(task, data)``).
        rounds, per_round: rounds and oracle calls (picks) per round.
        seed_size: labelled records at the start; ``val_fraction`` of them (at least one) are
            the validation set (best epoch) of every training, the rest the initial training set.
        heldout_size: records never selectable, for the held-out Fnorm after each retraining.
        top: K of the true top-K in the pool.
        seed: shuffles the records into seed / held-out / pool and seeds the models.
        strategies: a subset of ``random``, ``ranking``, ``exploit``, ``ucb``.
        ensemble, kappa: members and exploration weight of ``ucb``.
        max_per_chemsys: at most this many picks of one chemical system per round, the
            :class:`~atomate2_gmt.jobs.select.SelectionPolicy` cap (its default, 1).
        random_repeats: draws averaged for ``random``.
        init_epochs, lr: the initial training (from scratch).
        finetune_epochs, finetune_lr: each round's fine-tuning (target scale kept).
        batch_size: training batch size.
        model_overrides: GMTNetConfig fields of the model (default :data:`SMALL_MODEL`).
        target_transform, transform_scale: what the models are trained on (``none``: the
            tensors; ``asinh``: norms compressed as s·asinh(‖T‖/s), s = ``transform_scale`` in
            task units, see :func:`~atomate2_gmt.active_learning.policies.compress_targets`);
            predictions are expanded back before any ranking or Fnorm.
        retrain: ``finetune`` (from the previous model) or ``scratch`` after every round
            (:data:`RETRAIN_MODES`).
        huber_delta: δ of the training loss's Huber function on scaled targets (1: L1-like
            beyond one target RMS; large: MSE-like, which weights the largest tensors, the
            ones a search for the top-K must get right, more).
        relative_loss: weight of the trainer's relative-error term (‖Δ‖_F / ‖true‖_F per
            crystal, :class:`~atomate2_gmt.training.trainer.TrainConfig`
            ``relative_loss_weight``; 0 = off): each crystal's magnitude counts, not only the
            largest tensors' (measured in docs/active_learning.md: better one-shot ranking,
            worse UCB).
        select: ``best`` (best validation epoch) or ``last`` (final epoch; the validation
            records join the training set) (:data:`SELECT_MODES`).
        select_on: what ``best`` means, one of the trainer's selection metrics
            (:data:`~atomate2_gmt.training.trainer.SELECTION_METRICS`): ``val_fnorm`` (default)
            or, as for the shipped piezo model, ``val_spearman`` (ranking of |T|_F).
        curate: leave out every record the task's curation rule names
            (:func:`~atomate2_gmt.data.curation.curate`) before the split, so they are neither
            labels nor pool candidates: the oracle's answer for them is not trusted.
        limit: use only the first N records (quick runs and tests).
        data: the records' source for ``load_records`` (``mp``).
        pretrain_task: transfer learning (None: off). Before the campaign a model of this task
            (e.g. ``dielectric_total``) is trained for ``pretrain_epochs`` on that task's records
            of **other materials** (every material of the pool and the held-out set is removed,
            so no label of theirs, of any property, is seen); every model trained from scratch
            then starts from its weights where names and shapes agree
            (:func:`~atomate2_gmt.training.transfer.transfer_weights`; the head is new).
        pretrain_epochs: epochs of that pretraining (lr ``lr``, 10 % of its records validate).
    """

    task: str = "piezo"
    rounds: int = 5
    per_round: int = 20
    seed_size: int = 100
    heldout_size: int = 88
    top: int = 50
    seed: int = 0
    strategies: tuple[str, ...] = STRATEGIES
    ensemble: int = 3
    kappa: float = 1.0
    max_per_chemsys: int = 1
    random_repeats: int = 200
    init_epochs: int = 60
    lr: float = 1e-3
    finetune_epochs: int = 20
    finetune_lr: float = 3e-4
    batch_size: int = 32
    val_fraction: float = 0.15
    model_overrides: dict[str, Any] = field(default_factory=lambda: dict(SMALL_MODEL))
    target_transform: str = "none"
    transform_scale: float = 1.0
    retrain: str = "finetune"
    huber_delta: float = 1.0
    relative_loss: float = 0.0
    select: str = "best"
    select_on: str = "val_fnorm"
    curate: bool = False
    limit: int | None = None
    data: str = "mp"
    pretrain_task: str | None = None
    pretrain_epochs: int = 40

    def __post_init__(self) -> None:
        check_task(self.task)
        self.strategies = tuple(self.strategies)
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown or not self.strategies:
            raise ValueError(f"unknown or no strategies {unknown}; valid: {', '.join(STRATEGIES)}")
        for name in (
            "rounds", "per_round", "seed_size", "top", "ensemble", "random_repeats",
            "max_per_chemsys",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed_size < 3:
            raise ValueError("seed_size must be >= 3 (training and validation records)")
        if self.heldout_size < 1:
            raise ValueError(f"heldout_size must be >= 1, got {self.heldout_size}")
        if self.target_transform not in TARGET_TRANSFORMS:
            raise ValueError(
                f"unknown target_transform {self.target_transform!r}; valid: {TARGET_TRANSFORMS}"
            )
        if self.relative_loss < 0:
            raise ValueError(f"relative_loss must be >= 0, got {self.relative_loss}")
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")
        if self.transform_scale <= 0:
            raise ValueError(f"transform_scale must be positive, got {self.transform_scale}")
        if self.select not in SELECT_MODES:
            raise ValueError(f"unknown select {self.select!r}; valid: {SELECT_MODES}")
        if self.select_on not in SELECTION_METRICS:
            raise ValueError(
                f"unknown select_on {self.select_on!r}; valid: {', '.join(SELECTION_METRICS)}"
            )
        if self.select_on == "val_spearman" and self.select == "best" and self.n_val < 3:
            raise ValueError(
                f"select_on 'val_spearman' needs >= 3 validation records, the seed set of "
                f"{self.seed_size} gives {self.n_val} (val_fraction {self.val_fraction})"
            )
        if self.retrain not in RETRAIN_MODES:
            raise ValueError(f"unknown retrain {self.retrain!r}; valid: {RETRAIN_MODES}")
        if self.pretrain_task is not None:
            check_task(self.pretrain_task)
            if self.pretrain_task == self.task:
                raise ValueError(
                    f"pretrain_task must be another task than {self.task!r} (its labels of the "
                    "pool would leak)"
                )
        if self.pretrain_epochs < 1:
            raise ValueError(f"pretrain_epochs must be >= 1, got {self.pretrain_epochs}")

    @property
    def n_val(self) -> int:
        """Validation records taken from the seed set."""
        return max(1, round(self.val_fraction * self.seed_size))


@dataclass
class StrategyTrace:
    """One strategy's campaign. Index r of the lists is "after round r" (0 = before any call).

    ``found``: true top-K found (for ``random`` the mean over the repeats, ``found_std`` their
    standard deviation). ``heldout_fnorm``: mean Fnorm (C/m² for piezo) on the held-out set of
    the model in use after round r's retraining (None for ``random``; constant for
    ``ranking``; the ensemble-mean tensor for ``ucb``). ``selected``: record ids per round
    (for ``random``: of the first repeat).
    """

    name: str
    oracle_calls: list[int]
    found: list[float]
    selected: list[list[str]]
    heldout_fnorm: list[float | None]
    seconds: float
    found_std: list[float] | None = None


@dataclass
class CampaignResult:
    """What one simulated campaign measured (see the module docstring)."""

    config: dict[str, Any]
    n_records: int
    n_failed: int
    seed_ids: list[str]
    heldout_ids: list[str]
    pool_ids: list[str]
    top_ids: list[str]
    top_threshold: float  # the K-th largest pool value (C/m² for piezo)
    random_expectation: list[float]  # n·K/N after each round
    strategies: dict[str, StrategyTrace]
    initial_seconds: float
    seconds: float
    pretrain: dict[str, Any] | None = None  # what pretrain_body reported (None: no transfer)
    n_no_objective: int = 0  # records whose true objective is undefined (never in the top-K)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)
