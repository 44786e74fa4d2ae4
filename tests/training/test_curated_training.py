"""``train --curate``: the curated records leave train and validation, the test split stays raw."""

from __future__ import annotations

from atomate2_gmt.training.trainer import TrainConfig

SMALL = {
    "node_dim": 16, "rbf_bins": 16, "n_invariant_layers": 1, "n_equivariant_layers": 2,
    "scalar_mul": 8, "vector_mul": 2, "out_mul": 2, "radial_hidden": 8, "k_neighbors": 4,
}  # fmt: skip
OUTLIERS = {"mp-33319", "mp-557873"}  # |e|_F 87.6 and 68.0 C/m² (data.curation)


def test_curated_run_reports_raw_and_curated_test(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from atomate2_gmt.training import run

    real = run.load_records

    def few(task: str, data: str = "mp", settings=None):  # type: ignore[no-untyped-def]
        records, info = real(task, data, settings)
        outliers = [r for r in records if r.id in OUTLIERS]
        return [r for r in records if r.id not in OUTLIERS][:58] + outliers, info

    monkeypatch.setattr(run, "load_records", few)
    cfg = TrainConfig(epochs=1, batch_size=16, seed=5, device="cpu")
    raw = run.train_task(
        "piezo", tmp_path / "raw", train_cfg=cfg, model_overrides=SMALL, resume=False,
        progress=False,
    )  # fmt: skip
    assert raw["curation"] is None
    assert "curated_test" not in raw
    report = run.train_task(
        "piezo", tmp_path / "cur", train_cfg=cfg, model_overrides=SMALL, resume=False,
        progress=False, curate=True,
    )  # fmt: skip
    cur = report["curation"]
    removed = {*cur["removed"]["train"], *cur["removed"]["val"], *cur["test_removed"]}
    assert removed == OUTLIERS
    assert all("C/m² > 30 C/m²" in why for why in cur["removed"]["train"].values())
    n_trainval = len(cur["removed"]["train"]) + len(cur["removed"]["val"])
    sizes, raw_sizes = report["split_sizes"], raw["split_sizes"]
    assert sizes["train"] + sizes["val"] == raw_sizes["train"] + raw_sizes["val"] - n_trainval
    assert sizes["test"] == raw_sizes["test"]  # the test split is never curated
    assert report["overall"]["n"] == raw_sizes["test"]
    assert report["curated_test"]["n"] == raw_sizes["test"] - len(cur["test_removed"])
