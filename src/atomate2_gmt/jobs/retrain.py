"""``GMTRetrainMaker``: retrain a task's model on the shipped data plus the DFPT feedback.

One job (``gmt_retrain``) that

1. gathers the data: the seed-32 80/10/10 split of the shipped MP records of the task, whose
   **test split is the fixed held-out set** (never trained on: every version is measured on the
   same crystals, named in ``metrics_set``), plus every training document of the task in the
   training store (split 90/10 into train/val with the same seed; documents of a held-out
   structure are left out);
2. is a no-op (with the reason) when no document is new for the promoted model, fewer than
   ``min_new`` are, or a registered version was already trained on exactly this data;
3. fine-tunes the promoted registry version (or trains from scratch, ``from_scratch=True``) under
   custodian (:mod:`atomate2_gmt.training.custodian`: NaN-loss and out-of-memory recovery);
4. registers the new version (parent = the promoted one, training-data hash and size, held-out
   metrics, ``created_by`` with the job uuid) and promotes it only if it is not worse than the
   promoted model on the held-out ``metric`` (within ``tolerance``), recording the reason.

"New" documents: the checkpoint of a retrained version stores the ids of the feedback documents
it saw (``feedback_record_ids``) and the latest ``last_updated`` among them
(``feedback_cutoff``). A document is new for the promoted model if its id is not among them or it
was updated after the cutoff; for a model without these fields (the shipped ones) every document
is new.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Maker, job

from atomate2_gmt.data.records import TensorRecord, records_hash, split_records
from atomate2_gmt.routing import job_role
from atomate2_gmt.training.heldout import HELDOUT_SEED, heldout_set

if TYPE_CHECKING:
    from maggma.core import Store

    from atomate2_gmt.registry import ModelRegistry, ModelVersionDoc
    from atomate2_gmt.settings import GMTSettings

__all__ = [
    "HELDOUT_SEED",
    "FeedbackData",
    "GMTRetrainMaker",
    "count_new_documents",
    "heldout_set",
    "retrain",
]

logger = logging.getLogger(__name__)


@dataclass
class FeedbackData:
    """The training documents of a task, sorted into usable/new/left out."""

    records: list[TensorRecord]
    new_ids: list[str]
    cutoff: str | None  # latest last_updated (ISO) among the usable documents
    n_heldout_overlap: int
    n_invalid: int


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _seen(checkpoint_meta: dict[str, Any] | None) -> tuple[set[str], str | None]:
    meta = checkpoint_meta or {}
    return set(meta.get("feedback_record_ids") or []), _iso(meta.get("feedback_cutoff"))


def gather_feedback(
    store: Store, task: str, heldout: list[TensorRecord], promoted_meta: dict[str, Any] | None
) -> FeedbackData:
    """Usable feedback records of ``task`` (held-out structures dropped) and which are new."""
    from atomate2_gmt.data.store_source import record_from_training_dict
    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    held_keys = {structure_key(r.structure) for r in heldout}
    seen, cutoff = _seen(promoted_meta)
    store.connect()
    records, new, stamps = [], [], []
    overlap = invalid = 0
    for d in store.query(criteria={"task": task}, sort={"record_id": 1}):
        try:
            rec = record_from_training_dict(d)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping training document %r: %s", d.get("record_id"), exc)
            invalid += 1
            continue
        key = d.get("structure_key") or structure_key(rec.structure)
        if key in held_keys:
            overlap += 1
            continue
        records.append(rec)
        stamp = _iso(d.get("last_updated"))
        stamps.append(stamp or "")
        if rec.id not in seen or (stamp and cutoff and stamp > cutoff):
            new.append(rec.id)
    return FeedbackData(records, new, max(stamps) if stamps else None, overlap, invalid)


def _promoted_or_seeded(
    registry: ModelRegistry, task: str
) -> tuple[ModelVersionDoc | None, ModelVersionDoc | None]:
    """(the promoted version of ``task``, the version seeded now from the shipped checkpoint
    when the registry had no promoted ``task`` model, else None)."""
    from atomate2_gmt.registry import seed_from_pretrained

    doc = registry.promoted(task)
    if doc is not None:
        return doc, None
    try:
        seed_from_pretrained(registry, tasks=[task])
    except ValueError:  # no shipped model of this task
        return None, None
    doc = registry.promoted(task)
    return doc, doc


def _seeded_note(doc: ModelVersionDoc | None, registry: ModelRegistry) -> str | None:
    from atomate2_gmt.stores import describe_store

    if doc is None:
        return None
    return (
        f"the registry ({describe_store(registry.store)}) had no promoted {doc.task} model: "
        f"registered the shipped checkpoint as {doc.version} and promoted it"
    )


def _checkpoint_meta(registry: ModelRegistry, doc: ModelVersionDoc | None) -> dict[str, Any]:
    from atomate2_gmt.model.checkpoint import read_checkpoint

    if doc is None:
        return {}
    return dict(read_checkpoint(registry.fetch_weights(doc.model_id)).get("metadata") or {})


def count_new_documents(task: str, settings: GMTSettings | None = None) -> dict[str, Any]:
    """How many training documents of ``task`` are new for the promoted model (no training)."""
    from atomate2_gmt.registry import ModelRegistry
    from atomate2_gmt.stores import training_store

    with ModelRegistry(settings=settings) as registry:
        promoted, seeded = _promoted_or_seeded(registry, task)
        seeded_note = _seeded_note(seeded, registry)
        meta = _checkpoint_meta(registry, promoted)
    heldout = heldout_set(task)[2]
    store = training_store(settings)
    try:
        fb = gather_feedback(store, task, heldout, meta)
    finally:
        store.close()
    return {
        "task": task,
        "n_new": len(fb.new_ids),
        "n_feedback": len(fb.records),
        "promoted": None if promoted is None else promoted.version,
        "seeded": seeded_note,
    }


def _better_or_equal(after: float, before: float, metric: str, tolerance: float) -> bool:
    from atomate2_gmt.registry import LOWER_IS_BETTER

    if metric.split(".")[-1].lower() in LOWER_IS_BETTER:
        return after <= before + tolerance
    return after >= before - tolerance


def _metric(metrics: dict[str, Any], metric: str) -> float:
    value: Any = metrics
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"metric {metric!r} is not in the evaluation ({sorted(metrics)})")
        value = value[part]
    return float(value)


def _summary(
    task: str,
    maker: GMTRetrainMaker,
    promoted: ModelVersionDoc | None,
    metrics_set: str,
    fb: FeedbackData,
    seeded: str | None,
) -> dict[str, Any]:
    """The summary of a retraining before anything is trained (the no-op answer)."""
    return {
        "task": task,
        "model_id": None,
        "version": None,
        "promoted": False,
        "parent": None if promoted is None else promoted.model_id,
        "metric": maker.metric,
        "metrics_set": metrics_set,
        "metrics_before": None,
        "metrics_after": None,
        "n_new": len(fb.new_ids),
        "n_feedback": len(fb.records),
        "n_heldout_overlap": fb.n_heldout_overlap,
        "seeded": seeded,
    }


def _verdict(
    maker: GMTRetrainMaker,
    promoted: ModelVersionDoc | None,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    mode: str,
    n_new: int,
) -> tuple[bool, str]:
    """Whether the retrained model may be promoted (held-out ``maker.metric``), and why."""
    if before is None:
        return True, f"retrain ({mode}): no promoted model to compare with"
    b, a = _metric(before, maker.metric), _metric(after, maker.metric)
    ok = _better_or_equal(a, b, maker.metric, maker.tolerance)
    assert promoted is not None
    verdict = "not worse than" if ok else "worse than"
    reason = (
        f"retrain ({mode}, {n_new} new documents): held-out {maker.metric} "
        f"{a:.4g} is {verdict} {b:.4g} of the promoted {promoted.version} "
        f"(tolerance {maker.tolerance:g})"
    )
    if not ok:
        reason = f"not promoted: {reason}"
    return ok, reason


def retrain(maker: GMTRetrainMaker, settings: GMTSettings | None = None) -> dict[str, Any]:
    """Run one retraining as ``maker`` describes (module docstring). Returns the summary:
    ``model_id``/``version`` (None for a no-op), ``promoted``, ``reason``, ``metrics_before``/
    ``metrics_after`` (held-out overall metrics), ``n_new``."""
    from atomate2_gmt.model.config import check_task
    from atomate2_gmt.registry import CreatedBy, ModelRegistry, PromotionRefusedError
    from atomate2_gmt.settings import resolve_settings
    from atomate2_gmt.stores import training_store

    task = check_task(maker.task)
    settings = settings or resolve_settings()
    registry = ModelRegistry(settings=settings).connect()
    try:
        promoted, seeded = _promoted_or_seeded(registry, task)
        if promoted is None and not maker.from_scratch:
            raise ValueError(
                f"no promoted {task!r} model to fine-tune and none shipped; "
                "retrain with from_scratch=True (--from-scratch)"
            )
        meta = _checkpoint_meta(registry, promoted)
        b_train, b_val, heldout, metrics_set = heldout_set(task)
        store = training_store(settings)
        try:
            fb = gather_feedback(store, task, heldout, meta)
        finally:
            store.close()
        out = _summary(task, maker, promoted, metrics_set, fb, _seeded_note(seeded, registry))
        need = max(1, maker.min_new)
        if len(fb.new_ids) < need and not maker.force:
            out["reason"] = (
                f"no-op: {len(fb.new_ids)} new {task} training document(s) since "
                f"{promoted.version if promoted else 'the start'}, {need} needed"
            )
            logger.info(out["reason"])
            return out
        if maker.base_limit is not None:
            b_train, b_val = b_train[: maker.base_limit], b_val[: max(2, maker.base_limit // 8)]
        f_train, f_val = split_records(fb.records, (0.9, 0.1, 0.0), seed=HELDOUT_SEED)[:2]
        train, val = b_train + f_train, b_val + f_val
        data_hash = records_hash(train + val)
        mode = "scratch" if maker.from_scratch else "finetune"
        same = [v for v in registry.list_versions(task) if v.training_data_hash == data_hash]
        if same and not maker.force:
            out["reason"] = (
                f"no-op: {same[0].version} was already trained on exactly this data "
                f"(hash {data_hash[:12]}); pass force=True to train again"
            )
            return out
        before = _evaluate_promoted(registry, promoted, heldout, maker.batch_size)
        out["metrics_before"] = before
        run_dir = _run_dir(maker, settings, task, data_hash, mode)
        result = _train(maker, registry, promoted, run_dir, train, val, heldout, fb)
        after = result["test"]
        out["metrics_after"] = after
        out["corrections"] = result.get("corrections", [])
        out["run_dir"] = str(run_dir)
        ok, reason = _verdict(maker, promoted, before, after, mode, len(fb.new_ids))
        doc = registry.register(
            Path(result["best_path"]),
            task,
            metrics=after,
            parent=None if promoted is None else promoted.model_id,
            created_by=CreatedBy.current(command=f"gmt_retrain {task} ({mode})"),
            metrics_set=metrics_set,
            training_data_hash=data_hash,
            training_data_size=len(train),
            notes=reason,
        )
        if ok:
            try:
                doc = registry.promote(doc.model_id, reason)
            except PromotionRefusedError as exc:  # e.g. not rotation-equivariant
                ok, reason = False, f"not promoted: {exc}"
        out.update(model_id=doc.model_id, version=doc.version, promoted=ok, reason=reason)
        logger.info("%s: %s", doc.version, reason)
        return out
    finally:
        registry.close()


def _evaluate_promoted(
    registry: ModelRegistry,
    promoted: ModelVersionDoc | None,
    heldout: list[TensorRecord],
    batch_size: int,
) -> dict[str, Any] | None:
    """Overall metrics of the promoted model on the held-out records (None if none)."""
    if promoted is None:
        return None
    from atomate2_gmt.model.checkpoint import load_checkpoint
    from atomate2_gmt.training.evaluate import evaluate_prepared
    from atomate2_gmt.training.trainer import prepare_records

    model, _ = load_checkpoint(registry.fetch_weights(promoted.model_id), task=promoted.task)
    report = evaluate_prepared(model, prepare_records(heldout, model.config), batch_size)
    overall: dict[str, Any] = report["overall"]
    return overall


def _run_dir(
    maker: GMTRetrainMaker, settings: GMTSettings, task: str, data_hash: str, mode: str
) -> Path:
    """``work_dir`` or ``PROJECT_DIR/retrain/<task>-<mode>-<data hash>``: a rerun resumes."""
    if maker.work_dir is not None:
        return Path(maker.work_dir).expanduser()
    root = Path(settings.PROJECT_DIR).expanduser() / "retrain"
    return root / f"{task}-{mode}-{data_hash[:12]}"


def _train(
    maker: GMTRetrainMaker,
    registry: ModelRegistry,
    promoted: ModelVersionDoc | None,
    run_dir: Path,
    train: list[TensorRecord],
    val: list[TensorRecord],
    heldout: list[TensorRecord],
    fb: FeedbackData,
) -> dict[str, Any]:
    from atomate2_gmt.training.custodian import (
        run_train_spec,
        run_training_with_custodian,
        write_train_spec,
    )
    from atomate2_gmt.training.trainer import TrainConfig

    init = None
    overrides = dict(maker.model_overrides)
    if not maker.from_scratch:
        assert promoted is not None
        init = registry.fetch_weights(promoted.model_id)
    elif promoted is not None:  # same architecture as the promoted model unless overridden
        overrides = {**{k: v for k, v in promoted.config.items() if k != "task"}, **overrides}
    lr = maker.lr if maker.lr is not None else (1e-3 if maker.from_scratch else 2e-4)
    epochs = maker.epochs if maker.epochs is not None else (200 if maker.from_scratch else 20)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=maker.batch_size,
        lr=lr,
        device=maker.device,
        seed=HELDOUT_SEED,
        warmup_epochs=maker.warmup_epochs,
    )
    metadata = {
        "name": f"gmtnet-{maker.task}",
        "data": {"source": "mp+store", "n_base": len(train) + len(val) - len(fb.records)},
        "feedback_record_ids": sorted(r.id for r in fb.records),
        "feedback_cutoff": fb.cutoff,
        "parent": None if promoted is None else promoted.model_id,
        "mode": "scratch" if maker.from_scratch else "finetune",
    }
    write_train_spec(run_dir, maker.task, train, val, heldout, cfg, init, overrides, metadata)
    if maker.use_custodian:
        return run_training_with_custodian(run_dir)
    return run_train_spec(run_dir)


@dataclass
class GMTRetrainMaker(Maker):
    """Retrain ``task`` on shipped + feedback data; register, promote if not worse.

    ``epochs``/``lr`` default to 20 / 2e-4 when fine-tuning and 200 / 1e-3 from scratch.
    ``min_new``: the no-op threshold (new feedback documents needed, at least 1); ``force``
    trains even without new data. ``metric``/``tolerance``: the promotion policy on the held-out
    set (``fnorm``: lower is better; promoted if new ≤ old + tolerance). ``model_overrides``:
    GMTNetConfig fields for a from-scratch model. ``base_limit``: use only the first N base
    records (quick runs; the held-out set is never cut). ``work_dir``: the run folder (default
    ``PROJECT_DIR/retrain/<task>-<mode>-<data hash>``, so a rerun resumes).
    """

    name: str = "gmt_retrain"
    task: str = "dielectric"
    from_scratch: bool = False
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 64
    warmup_epochs: int = 2
    device: str = "auto"
    min_new: int = 1
    force: bool = False
    metric: str = "fnorm"
    tolerance: float = 0.0
    model_overrides: dict[str, Any] = field(default_factory=dict)
    base_limit: int | None = None
    use_custodian: bool = True
    work_dir: str | None = None

    @job(**job_role("gmt"))
    def make(self, upstream: Any = None) -> dict[str, Any]:
        """The ``gmt_retrain`` job; its output is the JSON-safe summary dict of :func:`retrain`.

        ``upstream``: an output the job waits for and otherwise ignores (in a campaign, the
        round's selection, so that the retraining starts after its DFPT feedback is stored).
        """
        summary = retrain(self)
        return json.loads(json.dumps(summary, default=str))
