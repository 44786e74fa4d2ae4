"""Fnorm, EwT, zero / equality success, R² and the per-crystal-system report."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from atomate2_gmt.tensors import (
    as_full,
    equality_success,
    evaluate,
    ewt,
    fnorm,
    point_group_info,
    projector,
    r2_per_component,
    relative_error,
    symmetrize,
    symmetry_violation,
    zero_success,
)


def test_fnorm_voigt_and_full_by_hand() -> None:
    true = np.zeros((3, 6))
    pred = np.zeros((3, 6))
    pred[0, 0] = 3.0  # e_xxx: one entry in both forms
    pred[2, 3] = 4.0  # e_zyz: one Voigt entry, two full entries (e_zyz, e_zzy)
    assert fnorm(pred, true, "piezo") == pytest.approx(5.0)
    assert fnorm(pred, true, "piezo", form="full") == pytest.approx(np.sqrt(9 + 2 * 16))
    batch = fnorm(np.stack([pred, 2 * pred]), np.stack([true, true]), "piezo")
    np.testing.assert_allclose(batch, [5.0, 10.0])
    with pytest.raises(ValueError, match="form must be"):
        fnorm(pred, true, "piezo", form="mandel")


def test_ewt_thresholds() -> None:
    true = np.tile(np.eye(3), (4, 1, 1)) * 10.0  # |true|_F = 17.32
    scale = np.array([0.01, 0.07, 0.2, 0.5])  # relative errors 1 %, 7 %, 20 %, 50 %
    pred = true * (1 + scale)[:, None, None]
    np.testing.assert_allclose(relative_error(pred, true, "dielectric"), scale)
    assert ewt(pred, true, "dielectric") == {0.25: 0.75, 0.1: 0.5, 0.05: 0.25}


def test_zero_and_equality_success_at_their_thresholds(zno: Structure) -> None:
    p = projector("piezo", point_group_info(zno))
    e = symmetrize(np.random.default_rng(0).normal(size=(3, 6)), zno, "piezo")
    assert zero_success(e, p)
    assert equality_success(e, p)
    # forbidden entry e11: 0.9e-5 passes, 2e-5 fails; the pair e31 = e32 stays intact
    for delta, ok in [(0.9e-5, True), (2e-5, False)]:
        bad = e.copy()
        bad[0, 0] += delta
        assert zero_success(bad, p) is ok
        assert equality_success(bad, p)
    # tied pair e31 = e32: broken above 1e-4, zeros unaffected
    for delta, ok in [(0.5e-4, True), (3e-4, False)]:
        bad = e.copy()
        bad[2, 0] += delta
        assert equality_success(bad, p) is ok
        assert zero_success(bad, p)
    batch = np.stack([e, e + 1e-3])
    np.testing.assert_array_equal(zero_success(batch, p), [True, False])
    assert symmetry_violation(e, p) < 1e-12
    assert symmetry_violation(e + 0.1, p) > 0.01


def test_r2_per_component() -> None:
    rng = np.random.default_rng(1)
    trues = rng.normal(size=(50, 3, 3))
    np.testing.assert_allclose(r2_per_component(trues, trues), 1.0)
    mean_pred = np.broadcast_to(trues.mean(axis=0), trues.shape)
    np.testing.assert_allclose(r2_per_component(mean_pred, trues), 0.0, atol=1e-12)
    const = np.ones((5, 2))
    assert np.isnan(r2_per_component(const, const)).all()
    with pytest.raises(ValueError, match="at least two samples"):
        r2_per_component(trues[:1], trues[:1])


def test_evaluate_groups_by_crystal_system(zno: Structure, nacl: Structure) -> None:
    rng = np.random.default_rng(5)
    infos = [point_group_info(s) for s in (zno, nacl, zno, nacl)]
    trues = np.stack(
        [symmetrize(200 * np.eye(6) + rng.normal(size=(6, 6)), i, "elastic") for i in infos]
    )
    preds = trues * 1.02  # 2 % error, symmetric
    preds[1] += 0.1  # a cubic prediction that breaks its symmetry
    projs = [projector("elastic", i) for i in infos]
    systems = [i.crystal_system for i in infos]
    report = evaluate(preds, trues, systems, "elastic", projs)
    overall = report["overall"]
    assert overall["n"] == 4
    assert overall["ewt_5"] == 1.0
    assert overall["zero_success"] == 0.75
    assert overall["equality_success"] == 1.0  # a uniform shift keeps ties
    assert overall["fnorm"] == pytest.approx(np.mean(fnorm(preds, trues, "elastic")))
    assert overall["fnorm_full"] == pytest.approx(
        np.mean(fnorm(as_full(preds, "elastic"), as_full(trues, "elastic"), "elastic", "full"))
    )
    assert set(report["by_crystal_system"]) == {"cubic", "hexagonal"}
    assert report["by_crystal_system"]["cubic"]["zero_success"] == 0.5
    assert report["by_crystal_system"]["hexagonal"]["zero_success"] == 1.0
    assert len(overall["r2"]) == 6
    with pytest.raises(ValueError, match="3 crystal systems for 4 samples"):
        evaluate(preds, trues, systems[:3], "elastic")


def test_ranking_metrics_use_the_frame_free_magnitude():
    from scipy.spatial.transform import Rotation

    from atomate2_gmt.tensors.conventions import rotate
    from atomate2_gmt.tensors.metrics import ranking_metrics

    rng = np.random.default_rng(0)
    true = rng.normal(size=(20, 3, 3, 3)) * np.linspace(0.1, 5, 20)[:, None, None, None]
    perfect = ranking_metrics(true, true)
    assert perfect == {"spearman_norm": pytest.approx(1.0), "top10_recall": 1.0}
    # rotating every predicted tensor does not change the ranking (|T|_F is frame-free)
    turned = np.stack(
        [rotate(t, Rotation.random(random_state=i).as_matrix()) for i, t in enumerate(true)]
    )
    assert ranking_metrics(turned, true)["spearman_norm"] == pytest.approx(1.0)
    reversed_ = ranking_metrics(true[::-1], true)
    assert reversed_["spearman_norm"] < -0.9
    assert reversed_["top10_recall"] == 0.0  # the two largest are predicted smallest
    with pytest.raises(ValueError, match="stacks of equal shape"):
        ranking_metrics(true[:3], true)


def test_direction_metrics_separate_sign_direction_and_magnitude():
    from scipy.spatial.transform import Rotation

    from atomate2_gmt.tensors.conventions import rotate
    from atomate2_gmt.tensors.metrics import ALIGNED_COSINE, direction_metrics

    rng = np.random.default_rng(1)
    true = rng.normal(size=(8, 3, 3, 3))
    half = direction_metrics(0.5 * true, true)  # right direction, half the magnitude
    assert half == {
        "median_cosine": pytest.approx(1.0),
        "wrong_sign": 0.0,
        "aligned": 1.0,
        "median_norm_ratio": pytest.approx(0.5),
    }
    flipped = direction_metrics(-2.0 * true, true)
    assert flipped["wrong_sign"] == 1.0
    assert flipped["aligned"] == 0.0
    assert flipped["median_cosine"] == pytest.approx(-1.0)
    # rotating truth and prediction together changes nothing (frame-free)
    rots = [Rotation.random(random_state=i).as_matrix() for i in range(8)]
    turn = lambda x: np.stack([rotate(t, r) for t, r in zip(x, rots, strict=True)])  # noqa: E731
    assert direction_metrics(turn(0.5 * true), turn(true)) == pytest.approx(half)
    # at an angle whose sine is just under / over 0.25 the best-fitting magnitude is / is not
    # within 25 % of the truth
    e1, e2 = np.zeros((3, 3)), np.zeros((3, 3))
    e1[0, 0], e2[1, 1] = 1.0, 1.0
    for sine, aligned in ((0.24, 1.0), (0.26, 0.0)):
        pred = np.sqrt(1 - sine**2) * e1 + sine * e2
        assert direction_metrics(pred[None], e1[None])["aligned"] == aligned
    assert np.sqrt(1 - ALIGNED_COSINE**2) == pytest.approx(0.25)
    # a zero true tensor has no direction: it is left out; all zeros give NaN
    zeros = direction_metrics(np.ones((2, 3, 3)), np.zeros((2, 3, 3)))
    assert all(np.isnan(v) for v in zeros.values())
    mixed = direction_metrics(np.stack([e1, e1]), np.stack([e1, np.zeros((3, 3))]))
    assert mixed["aligned"] == 1.0
    # a zero prediction counts as orthogonal (cos 0), not as a division by zero
    assert direction_metrics(np.zeros((1, 3, 3)), e1[None])["median_cosine"] == 0.0
    # so does a round-off-sized one, whatever its sign
    for tiny in (1e-9, -1e-9):
        m = direction_metrics(tiny * e1[None], e1[None])
        assert (m["median_cosine"], m["wrong_sign"], m["aligned"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="stacks of equal shape"):
        direction_metrics(true[:3], true)


def test_ensemble_coverage_of_a_calibrated_gaussian_ensemble():
    from atomate2_gmt.tensors.metrics import ensemble_coverage

    rng = np.random.default_rng(7)
    n, m = 4000, 64
    true = rng.normal(size=(n, 3, 3)) + 5.0  # norms far from zero: |mean| ~ linear in noise
    # truth and members are draws around one centre: the members' spread is the truth's error
    centre = true + rng.normal(scale=0.05, size=true.shape)
    members = centre[None] + rng.normal(scale=0.05, size=(m, *true.shape))
    cov = ensemble_coverage(members, true)
    assert cov["component_coverage_1sigma"] == pytest.approx(0.683, abs=0.03)
    assert cov["component_coverage_2sigma"] == pytest.approx(0.954, abs=0.02)
    # an over-confident ensemble (spread 10x too small) covers far less
    tight = centre[None] + rng.normal(scale=0.005, size=(m, *true.shape))
    assert ensemble_coverage(tight, true)["component_coverage_1sigma"] < 0.2
    assert ensemble_coverage(tight, true)["median_z"] > 5


def test_a_calibrating_scale_fitted_on_one_set_calibrates_another():
    """An ensemble whose spread is 10x too small: the factor fitted on a validation set makes
    the σ of an independent test set cover 68 % / 95 % of the crystals."""
    from atomate2_gmt.tensors.metrics import ensemble_coverage

    rng = np.random.default_rng(11)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        true = rng.normal(size=(n, 3, 3)) + 5.0
        centre = true + rng.normal(scale=0.05, size=true.shape)
        return centre[None] + rng.normal(scale=0.005, size=(64, *true.shape)), true

    val_members, val_true = draw(3000)
    raw = ensemble_coverage(val_members, val_true)
    assert raw["spread_scale"] == 1.0
    assert 7 < raw["calibrating_scale"] < 13
    test_members, test_true = draw(3000)
    cal = ensemble_coverage(test_members, test_true, spread_scale=raw["calibrating_scale"])
    assert cal["coverage_1sigma"] == pytest.approx(0.683, abs=0.04)
    assert cal["coverage_2sigma"] == pytest.approx(0.954, abs=0.03)
    assert cal["median_z"] == pytest.approx(0.674, abs=0.06)
    with pytest.raises(ValueError, match="spread_scale must be positive"):
        ensemble_coverage(test_members, test_true, spread_scale=0.0)


def test_ensemble_coverage_refuses_a_single_member():
    from atomate2_gmt.tensors.metrics import ensemble_coverage

    with pytest.raises(ValueError, match=r"members must be \(m >= 2, n, ...\)"):
        ensemble_coverage(np.zeros((1, 4, 3, 3)), np.zeros((4, 3, 3)))


def test_ensemble_coverage_of_exact_zero_tensors():
    from atomate2_gmt.tensors.metrics import ensemble_coverage

    zero = np.zeros((3, 5, 3, 3, 3))  # three members predicting the true, symmetry-forbidden 0
    cov = ensemble_coverage(zero, np.zeros((5, 3, 3, 3)))
    assert cov["coverage_1sigma"] == 1.0
    assert cov["median_z"] == 0.0
    assert np.isnan(cov["component_coverage_1sigma"])  # no non-zero component to cover
