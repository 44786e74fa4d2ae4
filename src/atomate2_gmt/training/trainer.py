"""Training loop for GMTNet (and the baselines): Huber loss, AdamW, polynomial LR decay.

Seeded and deterministic: the split, the shuffling and the initial weights follow ``seed``. The best
model on the validation set is saved as ``best.pt`` (a weights-only checkpoint); the full training
state (weights, optimiser, scheduler, RNG, history) is saved as ``state.pt`` after every epoch, so
``resume=True`` continues exactly where a run stopped. A CSV and a JSON log are written per epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from atomate2_gmt.data.records import TensorRecord, records_hash
from atomate2_gmt.model.batch import PreparedCrystal, collate_crystals, prepare_crystal
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.factory import GMTNET_ARCH, model_arch
from atomate2_gmt.model.predict import resolve_device
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.tensors.isotropic import isotropic_part
from atomate2_gmt.tensors.metrics import fnorm, ranking_metrics, relative_error

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings (paper: lr 1e-3, 200 epochs, batch 64, AdamW wd 1e-5)."""

    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_power: float = 1.0  # polynomial decay power (1 = linear to end_lr_factor·lr)
    end_lr_factor: float = 0.01
    warmup_epochs: int = 2
    huber_delta: float = 1.0  # on scaled targets
    # weight of a relative term: Huber (delta 0.1) of |pred - true|_F / |true|_F per crystal, the
    # quantity EwT thresholds; 0 = absolute Huber only (denominator floored at 0.1·target scale)
    relative_loss_weight: float = 0.0
    target_scaling: bool = True  # divide targets by a scale of the training targets
    # the scale: "rms" (root mean square of all components) or "median_norm" (median Frobenius
    # norm of the per-crystal tensors: robust to a heavy tail of a few huge tensors)
    scale_statistic: str = "rms"
    # weight of a log-magnitude term: Huber (delta 0.5) of log(|pred|_F + f) - log(|true|_F + f)
    # per crystal, f = 0.05·target scale; it penalises shrinking as much as inflating
    log_magnitude_loss_weight: float = 0.0
    # the validation figure that picks best.pt: "val_fnorm" (lowest), "val_ewt25" (highest),
    # "val_median_rel" (lowest median relative error), "val_spearman" (highest Spearman
    # correlation of predicted and true |T|_F: the ranking a screening uses)
    select_on: str = "val_fnorm"
    # per-epoch metrics on up to this many training crystals (learning curves); 0 = off
    train_metrics_size: int = 0
    center_targets: bool = False  # learn the residual from the isotropic part of the train mean
    grad_clip: float = 10.0
    seed: int = 32
    device: str = "auto"
    eval_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedSet:
    """Records turned into model inputs once (graph + symmetry), with targets, in one order."""

    records: list[TensorRecord]
    crystals: list[PreparedCrystal]
    targets: torch.Tensor  # (n, 3, ..., 3) float64
    failed: dict[str, str]  # record id → reason it could not be prepared

    def subset(self, keep: Callable[[TensorRecord], bool]) -> PreparedSet:
        """The records for which ``keep(record)`` is true, in the same order (no re-preparation)."""
        idx = [i for i, r in enumerate(self.records) if keep(r)]
        return PreparedSet(
            [self.records[i] for i in idx],
            [self.crystals[i] for i in idx],
            self.targets[idx],
            {},
        )


def prepare_records(records: Sequence[TensorRecord], config: GMTNetConfig) -> PreparedSet:
    """Prepare every record; records that fail (bad structure) are reported, not fatal."""
    from atomate2_gmt import progress

    kept, crystals, targets, failed = [], [], [], {}
    with progress.task("preparing crystals", len(records), unit="crystals") as bar:
        for rec in records:
            try:
                crystal = prepare_crystal(rec.structure, config)
            except ValueError as exc:
                failed[rec.id] = str(exc)
            else:
                crystals.append(crystal)
                kept.append(rec)
                targets.append(torch.from_numpy(np.asarray(rec.tensor, dtype=np.float64)))
            bar.advance(1)
    if not kept:
        raise ValueError("no record could be prepared for training")
    return PreparedSet(kept, crystals, torch.stack(targets), failed)


def relative_huber(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean Huber (delta 0.1) of the per-crystal relative Frobenius error of full tensors.

    The denominator is floored at 0.1·``scale`` so a (near-)zero target does not blow up.
    """
    err = (pred - target).flatten(1).norm(dim=1)
    den = target.flatten(1).norm(dim=1).clamp_min(0.1 * float(scale))
    rel = err / den
    return F.huber_loss(rel, torch.zeros_like(rel), delta=0.1)


SELECTION_METRICS: dict[str, int] = {
    "val_fnorm": 1,
    "val_ewt25": -1,
    "val_median_rel": 1,
    "val_spearman": -1,
}
"""Validation figures that may pick the best checkpoint: +1 lower is better, -1 higher is better."""


def _target_scale(targets: torch.Tensor, statistic: str) -> float:
    """The target scale of ``statistic`` ("rms" or "median_norm") of (n, 3, ..., 3) targets."""
    if statistic == "rms":
        return float(targets.pow(2).mean().sqrt())
    if statistic == "median_norm":
        norms = targets.flatten(1).norm(dim=1)
        norms = norms[norms > 0]
        return float(norms.median()) if len(norms) else 0.0
    raise ValueError(f"scale_statistic must be 'rms' or 'median_norm', got {statistic!r}")


def log_magnitude_huber(
    pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Mean Huber (delta 0.5) of log(|pred|_F + f) − log(|true|_F + f) per crystal, f =
    0.05·``scale``: a shrunken prediction costs as much as an inflated one by the same factor."""
    floor = 0.05 * float(scale)
    lp = torch.log(pred.flatten(1).norm(dim=1) + floor)
    lt = torch.log(target.flatten(1).norm(dim=1) + floor)
    return F.huber_loss(lp, lt, delta=0.5)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.warmup_epochs * steps_per_epoch

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        frac = min(1.0, (step - warm) / max(1, total - warm))
        return cfg.end_lr_factor + (1 - cfg.end_lr_factor) * (1 - frac) ** cfg.lr_power

    return f


def predict_prepared(
    model: torch.nn.Module, data: PreparedSet, batch_size: int = 64, device: Any = "cpu"
) -> np.ndarray:
    """Predicted full tensors (n, 3, ..., 3) float64 for a prepared set, eval mode, no grad."""
    model.eval()
    outs = []
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for start in range(0, len(data.crystals), batch_size):
            batch = collate_crystals(data.crystals[start : start + batch_size], dtype)
            outs.append(model(batch.to(device, dtype)).cpu())
    return torch.cat(outs).numpy()


class Trainer:
    """Train one model on (train, val) prepared sets into ``out_dir``."""

    def __init__(
        self,
        model: TensorModel,
        train: PreparedSet,
        val: PreparedSet,
        out_dir: str | Path,
        cfg: TrainConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.train_set, self.val_set = train, val
        self.cfg = cfg or TrainConfig()
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(self.cfg.device)
        self.kind = model.config.kind
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("training_data_hash", records_hash(train.records))
        self.metadata.setdefault("n_train", len(train.records))
        self.metadata.setdefault("n_val", len(val.records))
        centered = train.targets
        if self.cfg.center_targets:
            if not hasattr(model, "target_offset"):
                raise ValueError(f"{type(model).__name__} has no target_offset to center on")
            # only the isotropic part of the training mean: a constant that is the same in every
            # frame, so the trained model stays exactly O(3)-equivariant
            mean = torch.from_numpy(isotropic_part(train.targets.mean(dim=0).numpy()))
            model.target_offset.copy_(mean)
            centered = train.targets - mean
        if self.cfg.target_scaling:
            scale = _target_scale(centered, self.cfg.scale_statistic)
            model.target_scale.fill_(scale if scale > 0 else 1.0)
        if self.cfg.select_on not in SELECTION_METRICS:
            raise ValueError(
                f"select_on must be one of {', '.join(SELECTION_METRICS)}, "
                f"got {self.cfg.select_on!r}"
            )
        self.model.to(self.device)
        self.steps_per_epoch = math.ceil(len(train.crystals) / self.cfg.batch_size)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(self.cfg, self.steps_per_epoch)
        )
        self.epoch = 0
        self.best: dict[str, Any] = {
            "val_fnorm": math.inf,
            "epoch": -1,
            self.cfg.select_on: SELECTION_METRICS[self.cfg.select_on] * math.inf,
        }
        self.history: list[dict[str, Any]] = []
        self.generator = torch.Generator().manual_seed(self.cfg.seed)

    # -- state -------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        """Full training state, rewritten after every epoch."""
        return self.out_dir / "state.pt"

    @property
    def best_path(self) -> Path:
        """Best-on-validation weights-only checkpoint."""
        return self.out_dir / "best.pt"

    def save_state(self) -> None:
        """Write the resumable state atomically."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_json": json.dumps(self.best),
            "history_json": json.dumps(self.history),
            "generator": self.generator.get_state(),
            "config_json": json.dumps(self.model.config.as_dict()),
            "arch": model_arch(self.model),
            "train_json": json.dumps(asdict(self.cfg)),
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def load_state(self) -> bool:
        """Resume from ``state.pt`` if present (weights-only load); returns whether it resumed."""
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        stored = json.loads(state["config_json"])
        if state.get("arch", GMTNET_ARCH) != model_arch(self.model):
            raise ValueError(
                f"{self.state_path}: cannot resume, it holds a {state.get('arch', GMTNET_ARCH)!r} "
                f"model, not {model_arch(self.model)!r}"
            )
        if stored != self.model.config.as_dict():
            raise ValueError(
                f"{self.state_path}: cannot resume, the model config differs from the stored one"
            )
        stored_train = json.loads(state.get("train_json", "{}"))
        stored_select = stored_train.get("select_on", "val_fnorm")
        if stored_select != self.cfg.select_on:
            raise ValueError(
                f"{self.state_path}: cannot resume, its best epoch was chosen on "
                f"{stored_select}, this run chooses on {self.cfg.select_on}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best = json.loads(state["best_json"])
        self.history = json.loads(state["history_json"])
        self.generator.set_state(state["generator"])
        self._adopt_schedule(stored_train)
        logger.info("resumed %s at epoch %d", self.out_dir, self.epoch)
        return True

    def _adopt_schedule(self, stored: dict[str, Any]) -> None:
        """Resuming with another peak ``lr`` or ``batch_size`` than the saved run (what the
        custodian handlers change): continue the current config's schedule at the resumed epoch."""
        if stored.get("lr") == self.cfg.lr and stored.get("batch_size") == self.cfg.batch_size:
            return
        step = self.epoch * self.steps_per_epoch
        factor = self.scheduler.lr_lambdas[0](step)
        self.scheduler.base_lrs = [self.cfg.lr for _ in self.optimizer.param_groups]
        self.scheduler.last_epoch = step
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.cfg.lr
            group["lr"] = self.cfg.lr * factor
        logger.info(
            "resumed with lr %g (was %s), batch size %d (was %s)",
            self.cfg.lr, stored.get("lr"), self.cfg.batch_size, stored.get("batch_size"),
        )  # fmt: skip

    def _check_finite_weights(self) -> None:
        """FloatingPointError if an update made any weight non-finite (never saved as state)."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise FloatingPointError(f"non-finite weights after epoch {self.epoch}")

    # -- loop --------------------------------------------------------------------------------
    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scale = self.model.target_scale
        loss = F.huber_loss(pred / scale, target / scale, delta=self.cfg.huber_delta)
        if self.cfg.relative_loss_weight > 0:
            loss = loss + self.cfg.relative_loss_weight * relative_huber(pred, target, scale)
        if self.cfg.log_magnitude_loss_weight > 0:
            loss = loss + self.cfg.log_magnitude_loss_weight * log_magnitude_huber(
                pred, target, scale
            )
        return loss

    def train_epoch(self) -> float:
        """One pass over the training set; returns the mean loss."""
        self.model.train()
        n = len(self.train_set.crystals)
        order = torch.randperm(n, generator=self.generator).tolist()
        dtype = self.model.dtype
        losses = []
        for start in range(0, n, self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            batch = collate_crystals([self.train_set.crystals[i] for i in idx], dtype)
            target = self.train_set.targets[idx].to(self.device)
            pred = self.model(batch.to(self.device, dtype))
            loss = self._loss(pred, target)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {self.epoch}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else math.nan

    def validate(self) -> dict[str, float]:
        """Validation figures (Voigt form, task units): mean Fnorm, EwT25, EwT50, median relative
        error, median |pred|_F / |true|_F (below 1: the model shrinks its tensors), and the
        ranking by |T|_F (Spearman, top-10 % recall; ``tensors.metrics.ranking_metrics``)."""
        return {f"val_{k}": v for k, v in self._figures(self.val_set).items()}

    def _figures(self, data: PreparedSet) -> dict[str, float]:
        pred = predict_prepared(self.model, data, self.cfg.batch_size, self.device)
        true = data.targets.numpy()
        fn = np.asarray(fnorm(pred, true, self.kind))
        rel = np.asarray(relative_error(pred, true, self.kind))
        norm_p = np.linalg.norm(pred.reshape(len(pred), -1), axis=1)
        norm_t = np.linalg.norm(true.reshape(len(true), -1), axis=1)
        nonzero = norm_t > 0
        ratio = norm_p[nonzero] / norm_t[nonzero]
        ranking = ranking_metrics(pred, true) if len(pred) > 1 else {}
        return {
            "fnorm": float(fn.mean()),
            "ewt25": float((rel < 0.25).mean()),
            "ewt50": float((rel < 0.5).mean()),
            "median_rel": float(np.median(rel)),
            "median_ratio": float(np.median(ratio)) if len(ratio) else math.nan,
            "spearman": ranking.get("spearman_norm", math.nan),
            "top10_recall": ranking.get("top10_recall", math.nan),
        }

    def _train_figures(self) -> dict[str, float]:
        """The same figures on the first ``train_metrics_size`` training crystals (learning
        curves: does the model fit what it is trained on?)."""
        ids = {r.id for r in self.train_set.records[: self.cfg.train_metrics_size]}
        subset = self.train_set.subset(lambda r: r.id in ids)
        if not subset.crystals:
            return {}
        return {f"train_{k}": v for k, v in self._figures(subset).items()}

    def _improved(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` beats the best epoch on ``select_on``. The first evaluation is kept
        even if its figure is undefined (a NaN Spearman: one validation crystal, or constant
        norms); a defined figure then replaces an undefined one, never the other way round, and
        while both are undefined the validation Fnorm decides."""
        key = self.cfg.select_on
        sign = SELECTION_METRICS[key]  # +1: lower is better, -1: higher is better
        if self.best.get("epoch", -1) < 1:
            return True
        new, old = float(row[key]), float(self.best.get(key, math.nan))
        if math.isnan(old):
            if not math.isnan(new):
                return True
            return bool(row["val_fnorm"] < self.best.get("val_fnorm", math.inf))
        return not math.isnan(new) and sign * new < sign * old

    def fit(self, resume: bool = True, progress: bool = True) -> dict[str, Any]:
        """Train to ``cfg.epochs``; returns the best validation record. ``progress``: report
        the epochs to the installed :mod:`atomate2_gmt.progress` reporter (if any)."""
        from atomate2_gmt import progress as progress_report

        torch.manual_seed(self.cfg.seed)
        if resume:
            self.load_state()
        if not progress:
            self._epochs(None)
            return self.best
        label = f"training {self.model.config.task}"
        with progress_report.task(label, self.cfg.epochs, unit="epochs", done=self.epoch) as bar:
            self._epochs(bar)
        return self.best

    def _epochs(self, bar: Any) -> None:
        """The epochs from ``self.epoch`` to ``cfg.epochs`` (``bar``: a progress task or None)."""
        for _ in range(self.epoch, self.cfg.epochs):
            t0 = time.perf_counter()
            loss = self.train_epoch()
            self._check_finite_weights()
            self.epoch += 1
            row: dict[str, Any] = {
                "epoch": self.epoch,
                "train_loss": loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "epoch_s": time.perf_counter() - t0,
            }
            if self.epoch % self.cfg.eval_every == 0 or self.epoch == self.cfg.epochs:
                row.update(self.validate())
                if self.cfg.train_metrics_size > 0:
                    row.update(self._train_figures())
                if self._improved(row):
                    self.best = {
                        "val_fnorm": row["val_fnorm"],
                        "epoch": self.epoch,
                        "val_ewt25": row["val_ewt25"],
                        self.cfg.select_on: row[self.cfg.select_on],
                    }
                    save_checkpoint(
                        self.best_path,
                        self.model,
                        {**self.metadata, "best_epoch": self.epoch, "val": self.best},
                    )
            self.history.append(row)
            self._write_logs()
            self.save_state()
            if bar is not None:
                val = f", val Fnorm {row['val_fnorm']:.3f}" if "val_fnorm" in row else ""
                bar.advance(1, f"loss {loss:.4f}{val}")

    def _write_logs(self) -> None:
        keys = sorted({k for row in self.history for k in row})
        with open(self.out_dir / "log.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        (self.out_dir / "log.json").write_text(
            json.dumps({"history": self.history, "best": self.best}, indent=1)
        )
