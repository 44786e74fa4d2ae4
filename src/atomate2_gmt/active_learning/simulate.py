"""A simulated active-learning campaign: known DFT labels play the oracle (no DFPT is run).

The records of a task (piezo: the shipped MP tensors, e_ij in C/m²) are shuffled with the seed
and cut into a **seed set** (labels known from the start; a fixed part of it is the validation
set of every training), a **held-out set** (never selectable; the held-out Fnorm after every
retraining is measured on it) and the **pool** (labels hidden behind an :class:`Oracle`). The
**true top-K** are the K pool records with the largest value of the field production selects
on (:func:`~atomate2_gmt.active_learning.policies.objective_field`; piezo: emmet's ``e_ij_max``,
C/m²). Each round a strategy picks ``per_round`` pool records that it has not picked before, the
oracle reveals their labels (one oracle call per record) and the number of the true top-K among
all picks so far is recorded.

The model strategies pick as production does: every available pool record becomes a candidate
document (its predicted value of that field, computed as the prediction documents compute it,
the ensemble spread for ``ucb``, its chemical system and structure key) and
:func:`atomate2_gmt.jobs.select.rank_candidates` picks from them with a
:class:`~atomate2_gmt.jobs.select.SelectionPolicy` (``top_k`` = ``per_round``, the strategy,
κ and ``max_per_chemsys`` of the config, the policy's defaults otherwise: its ``max_sites``
cost cap of 40 sites removes no record of the shipped piezo set).

Strategies (:data:`~atomate2_gmt.active_learning.policies.STRATEGIES`):

* ``random``: uniform picks, averaged over ``random_repeats`` draws; the exact expectation is the
  hypergeometric mean n·K/N.
* ``ranking``: one model trained on the seed set, never retrained; every round the policy
  picks from its predictions of the records not yet picked.
* ``exploit``: the same initial model; after every round it is fine-tuned (or, with
  ``retrain="scratch"``, trained again from scratch) on the seed training part plus everything
  revealed, and the next round picks by the new model's predictions.
* ``ucb``: an ensemble of ``ensemble`` models (different initial seeds, member 0 is the initial
  model above), each retrained every round; score = the value of the ensemble-mean tensor +
  κ·std of the members' values (the document's ``uncertainty``).

``target_transform="asinh"`` trains on norm-compressed labels (predictions are expanded back
before any ranking or Fnorm); ``select="last"`` keeps the final epoch and trains on the seed
set's validation records too.

No model is ever trained on a label the oracle has not revealed; the policies see predictions
made from structures only (the pool's prepared inputs carry zero targets).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomate2_gmt import progress
from atomate2_gmt.active_learning.config import (
    RETRAIN_MODES,
    SELECT_MODES,
    SMALL_MODEL,
    CampaignConfig,
    CampaignResult,
    StrategyTrace,
)
from atomate2_gmt.active_learning.policies import (
    compress_targets,
    expand_targets,
    hypergeometric_mean,
    objective_field,
    objective_values,
    pick_random,
    pick_top,
)
from atomate2_gmt.data.records import TensorRecord
from atomate2_gmt.jobs.select import SelectionPolicy, rank_candidates
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.factory import build_model, model_arch
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.schemas.fields import PREDICTION_KEY
from atomate2_gmt.schemas.prediction import key_and_ieee_rotation
from atomate2_gmt.tensors.metrics import fnorm
from atomate2_gmt.training.trainer import (
    PreparedSet,
    TrainConfig,
    Trainer,
    predict_prepared,
    prepare_records,
)
from atomate2_gmt.training.transfer import transfer_weights

__all__ = [
    "RETRAIN_MODES",
    "SELECT_MODES",
    "SMALL_MODEL",
    "CampaignConfig",
    "CampaignResult",
    "Oracle",
    "StrategyTrace",
    "campaign_records",
    "curated_records",
    "run_campaign",
    "run_replicates",
    "summarize",
    "train_model",
]

logger = logging.getLogger(__name__)


class Oracle:
    """The pool's hidden labels: :meth:`reveal` hands out each one once, in the order asked."""

    def __init__(self, data: PreparedSet, pool: Sequence[int]) -> None:
        self._data = data
        self._pool = set(int(i) for i in pool)
        self.revealed: list[int] = []

    def reveal(self, picks: Sequence[int]) -> list[int]:
        """Reveal the labels of ``picks`` (indices into the data); each may be asked once."""
        seen = set(self.revealed)
        for i in picks:
            if int(i) not in self._pool:
                raise ValueError(f"record {i} is not in the pool")
            if int(i) in seen:
                raise ValueError(f"record {i} was already revealed")
            seen.add(int(i))
        self.revealed.extend(int(i) for i in picks)
        return [int(i) for i in picks]

    @property
    def calls(self) -> int:
        """Oracle calls so far (labels revealed)."""
        return len(self.revealed)


def _subset(data: PreparedSet, idx: Sequence[int], labelled: bool = True) -> PreparedSet:
    """The records ``idx`` of ``data``; ``labelled=False``: no records and zero targets."""
    index = torch.as_tensor(list(idx), dtype=torch.long)
    crystals = [data.crystals[i] for i in idx]
    if labelled:
        return PreparedSet([data.records[i] for i in idx], crystals, data.targets[index], {})
    return PreparedSet([], crystals, torch.zeros_like(data.targets[index]), {})


def _clone(model: TensorModel) -> TensorModel:
    """A fresh model of ``model``'s architecture and config holding a copy of its state."""
    copy = build_model(model.config, model_arch(model))
    copy.load_state_dict(model.state_dict())
    return copy


def train_model(
    train: PreparedSet,
    val: PreparedSet,
    cfg: CampaignConfig,
    seed: int,
    init: TensorModel | None = None,
    body: dict[str, Any] | None = None,
) -> TensorModel:
    """Train from scratch (``init`` None: ``init_epochs``, ``lr``, targets scaled by their RMS;
    starting from the weights of ``body``, a state dict of another task, where they fit)
    or fine-tune a copy of ``init`` (``finetune_epochs``, ``finetune_lr``, its target scale
    kept) with the project's :class:`~atomate2_gmt.training.trainer.Trainer`; returns the
    best-on-validation model (CPU, eval mode)."""
    if init is None:
        torch.manual_seed(seed)
        model: TensorModel = GMTNet(GMTNetConfig(task=cfg.task, **cfg.model_overrides))
        if body is not None:
            transfer_weights(model, body)
        epochs, lr, scaling = cfg.init_epochs, cfg.lr, True
    else:
        model = _clone(init)
        epochs, lr, scaling = cfg.finetune_epochs, cfg.finetune_lr, False
    tcfg = TrainConfig(
        epochs=epochs,
        batch_size=cfg.batch_size,
        lr=lr,
        seed=seed,
        device="cpu",
        target_scaling=scaling,
        warmup_epochs=min(2, max(0, epochs - 1)),
        huber_delta=cfg.huber_delta,
        relative_loss_weight=cfg.relative_loss,
        select_on=cfg.select_on,
    )
    return _fit(model, train, val, tcfg, last=cfg.select == "last")[0]


def _fit(
    model: TensorModel, train: PreparedSet, val: PreparedSet, tcfg: TrainConfig, last: bool = False
) -> tuple[TensorModel, dict[str, Any]]:
    """Train ``model`` in a throw-away run folder; returns the best-on-validation model (or,
    with ``last``, the final epoch's), on CPU in eval mode, and the best validation record."""
    with tempfile.TemporaryDirectory(prefix="gmt-campaign-") as tmp:
        trainer = Trainer(model, train, val, tmp, tcfg, metadata={"campaign_seed": tcfg.seed})
        best_row = trainer.fit(resume=False, progress=False)
        if last:
            best = _clone(trainer.model.cpu())
            best.eval()
        else:
            best, _ = load_checkpoint(Path(tmp) / "best.pt", task=model.config.task)
    return best, best_row


class _Campaign:
    """The shared state of one replicate: data, index sets, initial models, evaluators."""

    def __init__(self, cfg: CampaignConfig, records: Sequence[TensorRecord]) -> None:
        self.cfg = cfg
        records = curated_records(cfg, records)
        config = GMTNetConfig(task=cfg.task, **cfg.model_overrides)
        self.data = prepare_records(records, config)
        fit_targets = compress_targets(
            self.data.targets.numpy(), cfg.target_transform, cfg.transform_scale
        )
        # what the models are trained and validated on (the labels, possibly compressed)
        self.fit_data = PreparedSet(
            self.data.records, self.data.crystals, torch.from_numpy(fit_targets), {}
        )
        self.n_failed = len(self.data.failed)
        n = len(self.data.records)
        if len({r.id for r in self.data.records}) != n:
            raise ValueError("the campaign's record ids must be unique (they key its documents)")
        order = list(range(n))
        random.Random(cfg.seed).shuffle(order)
        self.seed_idx = order[: cfg.seed_size]
        self.heldout_idx = order[cfg.seed_size : cfg.seed_size + cfg.heldout_size]
        self.pool_idx = sorted(order[cfg.seed_size + cfg.heldout_size :])
        need = cfg.rounds * cfg.per_round
        if len(self.pool_idx) < max(need, cfg.top):
            raise ValueError(
                f"pool of {len(self.pool_idx)} records is smaller than the top-{cfg.top} or the "
                f"{need} picks of {cfg.rounds} rounds × {cfg.per_round}"
            )
        self.val_idx = self.seed_idx[: cfg.n_val]
        # select "last": no epoch is chosen on the validation records, so they are trained on
        self.base_train_idx = self.seed_idx[cfg.n_val :] if cfg.select == "best" else self.seed_idx
        # what a prediction document of each record holds besides its prediction
        self.keys: list[str | None] = []
        self.ieee: list[np.ndarray | None] = []
        for record in self.data.records:
            key, rotation = key_and_ieee_rotation(record.structure)
            self.keys.append(key)
            self.ieee.append(None if isinstance(rotation, str) else rotation)
        self.chemsys = [r.structure.composition.chemical_system for r in self.data.records]
        self.field = objective_field(cfg.task)
        truth = objective_values(self.data.targets.numpy(), self.ieee, cfg.task)  # evaluator only
        self.n_undefined = int(np.isnan(truth).sum())
        defined = [i for i in self.pool_idx if np.isfinite(truth[i])]
        ranked = pick_top(truth, defined, cfg.top)
        self.top_set = set(ranked)
        self.top_ids = [self.data.records[i].id for i in ranked]
        self.top_threshold = float(truth[ranked[-1]])
        self._initial: dict[int, TensorModel] = {}
        self.initial_seconds = 0.0
        self._body: dict[str, Any] | None = None
        self.pretrain_info: dict[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def ids(self, idx: Sequence[int]) -> list[str]:
        return [self.data.records[i].id for i in idx]

    def body(self) -> dict[str, Any] | None:
        """The pretrained state of ``pretrain_task`` (None without one; trained once)."""
        if self.cfg.pretrain_task is None:
            return None
        if self._body is None:
            t0 = time.perf_counter()
            self._body, self.pretrain_info = pretrain_body(
                self.cfg, exclude=set(self.ids([*self.heldout_idx, *self.pool_idx]))
            )
            self.pretrain_info["seconds"] = time.perf_counter() - t0
            self.initial_seconds += self.pretrain_info["seconds"]
        return self._body

    def initial_model(self, seed: int) -> TensorModel:
        """The model trained from scratch on the seed set's training part (cached per seed)."""
        if seed not in self._initial:
            body = self.body()
            t0 = time.perf_counter()
            self._initial[seed] = train_model(
                _subset(self.fit_data, self.base_train_idx), _subset(self.fit_data, self.val_idx),
                self.cfg, seed, body=body,
            )  # fmt: skip
            self.initial_seconds += time.perf_counter() - t0
        return self._initial[seed]

    def finetune(self, model: TensorModel, revealed: Sequence[int], seed: int) -> TensorModel:
        """Fine-tune ``model`` (``retrain`` = ``finetune``) or train a new one from scratch
        (``scratch``) on the seed training part + every revealed label."""
        train = _subset(self.fit_data, [*self.base_train_idx, *revealed])
        val = _subset(self.fit_data, self.val_idx)
        if self.cfg.retrain == "finetune":
            return train_model(train, val, self.cfg, seed, init=model)
        return train_model(train, val, self.cfg, seed, body=self.body())

    def predict(self, model: TensorModel, idx: Sequence[int]) -> np.ndarray:
        """Full predicted tensors of ``idx`` (task units) from their structures only."""
        raw = predict_prepared(model, _subset(self.data, idx, labelled=False), batch_size=64)
        return expand_targets(raw, self.cfg.target_transform, self.cfg.transform_scale)

    def pool_documents(self, models: Sequence[TensorModel]) -> dict[int, dict[str, Any]]:
        """Pool index → the candidate document production would store for the record: the
        objective field of the (ensemble-mean) predicted tensor, with two or more models the
        members' standard deviation of it as ``uncertainty``, chemical system and structure
        key. Records whose field is undefined (no IEEE frame) have no document."""
        idx = self.pool_idx
        rotations = [self.ieee[i] for i in idx]
        tensors = [self.predict(m, idx) for m in models]
        value = objective_values(np.mean(tensors, axis=0), rotations, self.cfg.task)
        spread = np.std([objective_values(t, rotations, self.cfg.task) for t in tensors], axis=0)
        docs: dict[int, dict[str, Any]] = {}
        for j, i in enumerate(idx):
            if not np.isfinite(value[j]):
                continue
            docs[i] = {
                PREDICTION_KEY: self.data.records[i].id,
                self.field: float(value[j]),
                "uncertainty": {self.field: float(spread[j])} if len(models) > 1 else {},
                "chemsys": self.chemsys[i],
                "structure_key": self.keys[i],
                "index": i,
            }
        return docs

    def policy(self, name: str) -> SelectionPolicy:
        """The production policy of strategy ``name`` for one round."""
        return SelectionPolicy(
            query=self.cfg.task,
            top_k=self.cfg.per_round,
            strategy="ucb" if name == "ucb" else "exploit",
            kappa=self.cfg.kappa,
            max_per_chemsys=self.cfg.max_per_chemsys,
        )

    def pick(self, docs: dict[int, dict[str, Any]], picked: Sequence[int], name: str) -> list[int]:
        """This round's picks: the policy's ranking of the documents not yet picked."""
        done = set(picked)
        chosen = rank_candidates([d for i, d in docs.items() if i not in done], self.policy(name))
        return [int(d["index"]) for d in chosen]

    def heldout_fnorm(self, models: Sequence[TensorModel]) -> float:
        """Mean Fnorm on the held-out set of the (ensemble-mean) predicted tensors."""
        pred = np.mean([self.predict(m, self.heldout_idx) for m in models], axis=0)
        true = _subset(self.data, self.heldout_idx).targets.numpy()
        return float(np.mean(fnorm(pred, true, GMTNetConfig(task=self.cfg.task).kind)))

    def found(self, picked: Sequence[int]) -> int:
        return len(self.top_set.intersection(picked))

    def available(self, picked: Sequence[int]) -> list[int]:
        done = set(picked)
        return [i for i in self.pool_idx if i not in done]


# -- strategies ---------------------------------------------------------------------------------
def _random(c: _Campaign) -> StrategyTrace:
    cfg = c.cfg
    curves, first_selection = [], []
    for rep in range(cfg.random_repeats):
        rng = np.random.default_rng([cfg.seed, rep])
        oracle = Oracle(c.data, c.pool_idx)
        curve, rounds = [0], []
        for _ in range(cfg.rounds):
            picks = oracle.reveal(pick_random(rng, c.available(oracle.revealed), cfg.per_round))
            rounds.append(c.ids(picks))
            curve.append(c.found(oracle.revealed))
        curves.append(curve)
        if rep == 0:
            first_selection = rounds
    arr = np.asarray(curves, dtype=np.float64)
    return StrategyTrace(
        name="random",
        oracle_calls=[r * cfg.per_round for r in range(cfg.rounds + 1)],
        found=[float(x) for x in arr.mean(axis=0)],
        found_std=[float(x) for x in arr.std(axis=0)],
        selected=first_selection,
        heldout_fnorm=[None] * (cfg.rounds + 1),
        seconds=0.0,
    )


def _model_strategy(c: _Campaign, name: str) -> StrategyTrace:
    """``ranking``, ``exploit`` or ``ucb`` (see the module docstring)."""
    cfg = c.cfg
    members = 1 if name != "ucb" else cfg.ensemble
    models = [c.initial_model(cfg.seed + 1000 * m) for m in range(members)]
    t0 = time.perf_counter()
    oracle = Oracle(c.data, c.pool_idx)
    fn0 = c.heldout_fnorm(models)
    found, fnorms, selected, calls = [0.0], [fn0], [], [0]
    docs = c.pool_documents(models)
    bar = progress.task(f"campaign {name}", cfg.rounds, unit="rounds")
    for r in range(1, cfg.rounds + 1):
        if name != "ranking" and r > 1:
            docs = c.pool_documents(models)
        picks = c.pick(docs, oracle.revealed, name)
        oracle.reveal(picks)
        calls.append(oracle.calls)
        selected.append(c.ids(picks))
        found.append(float(c.found(oracle.revealed)))
        if name != "ranking":
            models = [
                c.finetune(m, oracle.revealed, cfg.seed + 1000 * k + r)
                for k, m in enumerate(models)
            ]
            fnorms.append(c.heldout_fnorm(models))
        else:
            fnorms.append(fn0)
        logger.info(
            "%s round %d: %d oracle calls, %d of the top-%d found, held-out Fnorm %.4f",
            name, r, oracle.calls, int(found[-1]), cfg.top, fnorms[-1],
        )  # fmt: skip
        bar.advance(1, f"{int(found[-1])} of the top-{cfg.top} found")
    bar.close()
    return StrategyTrace(
        name=name,
        oracle_calls=calls,
        found=found,
        selected=selected,
        heldout_fnorm=list(fnorms),
        seconds=time.perf_counter() - t0,
    )


def pretrain_body(cfg: CampaignConfig, exclude: set[str]) -> tuple[dict[str, Any], dict]:
    """Train a ``cfg.pretrain_task`` model on that task's records whose material id is not in
    ``exclude`` (the campaign's pool and held-out materials); returns its state dict and a
    summary (records used and removed, validation Fnorm of the best epoch)."""
    from atomate2_gmt.training.run import load_records

    assert cfg.pretrain_task is not None
    task = cfg.pretrain_task
    records, _ = load_records(task, cfg.data)
    kept = [r for r in records if r.id not in exclude]
    order = list(range(len(kept)))
    random.Random(cfg.seed).shuffle(order)
    n_val = max(1, len(kept) // 10)
    mcfg = GMTNetConfig(task=task, **cfg.model_overrides)
    data = prepare_records([kept[i] for i in order], mcfg)
    n = len(data.records)
    if n < n_val + 2:
        raise ValueError(f"only {n} {task} records left for pretraining after exclusions")
    val = _subset(data, range(n_val))
    train = _subset(data, range(n_val, n))
    torch.manual_seed(cfg.seed)
    model = GMTNet(mcfg)
    tcfg = TrainConfig(
        epochs=cfg.pretrain_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        device="cpu",
        target_scaling=True,
        warmup_epochs=min(2, max(0, cfg.pretrain_epochs - 1)),
    )
    best, best_row = _fit(model, train, val, tcfg)
    info = {
        "task": task,
        "n_records": len(records),
        "n_excluded": len(records) - len(kept),
        "n_train": n - n_val,
        "n_val": n_val,
        "epochs": cfg.pretrain_epochs,
        "best_val_fnorm": float(best_row["val_fnorm"]),
        "best_epoch": best_row.get("epoch"),
    }
    logger.info("pretrained %s body: %s", task, info)
    return best.state_dict(), info


def campaign_records(cfg: CampaignConfig) -> list[TensorRecord]:
    """The task's records from ``cfg.data`` (the first ``cfg.limit`` when set); the campaign
    itself leaves out what the curation rule names (:func:`curated_records`)."""
    from atomate2_gmt.training.run import load_records

    records, _ = load_records(cfg.task, cfg.data)
    return records[: cfg.limit] if cfg.limit is not None else records


def curated_records(cfg: CampaignConfig, records: Sequence[TensorRecord]) -> list[TensorRecord]:
    """``records`` without the ones the curation rule names when ``cfg.curate`` (else all)."""
    if not cfg.curate:
        return list(records)
    from atomate2_gmt.data.curation import curate

    kept, removed = curate(records)
    if removed:
        logger.info("curation removed %d records: %s", len(removed), ", ".join(removed))
    return kept


def run_campaign(
    cfg: CampaignConfig, records: Sequence[TensorRecord] | None = None
) -> CampaignResult:
    """Run every strategy of ``cfg`` on one seed/held-out/pool split (``records`` default: the
    task's records from ``cfg.data``). Deterministic for a given config."""
    t0 = time.perf_counter()
    c = _Campaign(cfg, list(records) if records is not None else campaign_records(cfg))
    traces: dict[str, StrategyTrace] = {}
    for name in cfg.strategies:
        traces[name] = _random(c) if name == "random" else _model_strategy(c, name)
        if name != "random":
            logger.info("%s done in %.0f s", name, traces[name].seconds)
    n_pool = len(c.pool_idx)
    return CampaignResult(
        config=asdict(cfg),
        n_records=len(c.data.records),
        n_failed=c.n_failed,
        n_no_objective=c.n_undefined,
        seed_ids=c.ids(c.seed_idx),
        heldout_ids=c.ids(c.heldout_idx),
        pool_ids=c.ids(c.pool_idx),
        top_ids=c.top_ids,
        top_threshold=c.top_threshold,
        random_expectation=[
            hypergeometric_mean(r * cfg.per_round, cfg.top, n_pool) for r in range(cfg.rounds + 1)
        ],
        strategies=traces,
        initial_seconds=c.initial_seconds,
        seconds=time.perf_counter() - t0,
        pretrain=c.pretrain_info,
    )


def run_replicates(
    cfg: CampaignConfig, replicates: int = 1, records: Sequence[TensorRecord] | None = None
) -> list[CampaignResult]:
    """``replicates`` campaigns with seeds ``cfg.seed``, ``cfg.seed + 1``, ... (other splits)."""
    from dataclasses import replace

    records = list(records) if records is not None else campaign_records(cfg)
    return [run_campaign(replace(cfg, seed=cfg.seed + k), records) for k in range(replicates)]


def summarize(results: Sequence[CampaignResult], target_factor: float = 3.0) -> dict[str, Any]:
    """Means over the replicates per strategy and round, and the target check: found top-K
    after all oracle calls ≥ ``target_factor`` × the random expectation."""
    if not results:
        raise ValueError("no results to summarize")
    first = results[0]
    calls = first.strategies[next(iter(first.strategies))].oracle_calls
    expectation = np.mean([r.random_expectation for r in results], axis=0)
    out: dict[str, Any] = {
        "replicates": len(results),
        "oracle_calls": calls,
        "random_expectation": [float(x) for x in expectation],
        "strategies": {},
    }
    final_expectation = float(expectation[-1])
    for name in first.strategies:
        found = np.array([r.strategies[name].found for r in results], dtype=np.float64)
        fn = [r.strategies[name].heldout_fnorm for r in results]
        fn_mean = (
            None if fn[0][0] is None else [float(x) for x in np.mean(np.array(fn, float), axis=0)]
        )
        final = float(found[:, -1].mean())
        out["strategies"][name] = {
            "found_mean": [float(x) for x in found.mean(axis=0)],
            "found_per_replicate": found.tolist(),
            "heldout_fnorm_mean": fn_mean,
            "ratio_to_random": final / final_expectation if final_expectation else None,
            "meets_target": bool(final >= target_factor * final_expectation),
            "seconds": float(np.mean([r.strategies[name].seconds for r in results])),
        }
    out["target"] = {
        "factor": target_factor,
        "oracle_calls": calls[-1],
        "random_expectation": final_expectation,
        "needed": target_factor * final_expectation,
        "met_by": [n for n, s in out["strategies"].items() if s["meets_target"] and n != "random"],
    }
    return out
