"""Tests for sozo.metrics.frechet: Fréchet distance, KID, precision/recall, class histogram."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from sozo.errors import SozoError
from sozo.metrics.frechet import (
    class_histogram,
    fd_from_features,
    feature_stats,
    frechet_distance,
    kid,
    poly_mmd2,
    precision_recall,
)


def _random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _correlated(n: int, d: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


# --------------------------------------------------------------------------- FD: closed forms


def test_fd_diagonal_covariances_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_fd_full_covariances_closed_form():
    rng = np.random.default_rng(1)
    d = 8
    s = _random_spd(d, rng)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    dmu = np.sum((mu1 - mu2) ** 2)
    # same covariance: only the means differ
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(dmu, rel=1e-9)
    # scaled covariance commutes: tr sqrt(s * c^2 s) = c tr s
    c = 1.7
    assert frechet_distance(mu1, s, mu2, c**2 * s) == pytest.approx(dmu + (1 - c) ** 2 * np.trace(s), rel=1e-9)
    # general (non-commuting) pair against scipy's matrix square root
    s2 = _random_spd(d, rng)
    ref = dmu + np.trace(s) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s @ s2)).real
    assert frechet_distance(mu1, s, mu2, s2) == pytest.approx(ref, rel=1e-8)
    # torch inputs work the same
    got_t = frechet_distance(torch.tensor(mu1), torch.tensor(s), torch.tensor(mu2), torch.tensor(s2))
    assert got_t == pytest.approx(ref, rel=1e-8)


def test_fd_identical_stats_is_zero_and_psd_singular_ok():
    rng = np.random.default_rng(2)
    s = _random_spd(5, rng)
    mu = rng.normal(size=5)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-10)
    # a rank-deficient (PSD) covariance is handled (eigenvalues clipped), not an error
    v = rng.normal(size=(5, 2))
    low = v @ v.T
    assert frechet_distance(mu, low, mu, low) == pytest.approx(0.0, abs=1e-8)


def test_fd_on_large_gaussian_samples_matches_closed_form():
    rng = np.random.default_rng(3)
    d, n = 4, 40_000
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    s1 = _random_spd(d, rng)
    a = np.array([0.5, 1.0, 2.0, 0.3])
    x1 = rng.multivariate_normal(mu1, s1, size=n)
    x2 = rng.normal(size=(n, d)) * np.sqrt(a) + mu2
    expected = frechet_distance(mu1, s1, mu2, np.diag(a))
    assert fd_from_features(x1, x2) == pytest.approx(expected, rel=0.05)
    # and the sample stats themselves
    mu, sigma = feature_stats(x1)
    assert mu.dtype == np.float64 and sigma.shape == (d, d)
    np.testing.assert_allclose(sigma, s1, atol=0.05)


def test_feature_stats_matches_numpy_and_torch_input():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    mu, sigma = feature_stats(torch.from_numpy(x))
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


# --------------------------------------------------------------------------- against torchmetrics


class _Identity(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def test_fd_matches_torchmetrics_on_same_features():
    tm_fid = pytest.importorskip("torchmetrics.image.fid")
    rng = np.random.default_rng(5)
    d = 16
    f1 = _correlated(600, d, rng)
    f2 = 1.3 * _correlated(500, d, rng, shift=0.4)
    metric = tm_fid.FrechetInceptionDistance(feature=_Identity(d))
    metric.update(torch.from_numpy(f1), real=True)
    metric.update(torch.from_numpy(f2), real=False)
    ref = float(metric.compute())
    ours = fd_from_features(f1, f2)
    assert ref > 0.1
    assert ours == pytest.approx(ref, rel=1e-6)
    # the closed-form helper agrees on the same stats as well
    mu1, s1 = feature_stats(f1)
    mu2, s2 = feature_stats(f2)
    ref2 = float(tm_fid._compute_fid(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref2, rel=1e-6)


def test_kid_subset_estimator_matches_torchmetrics():
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(6)
    d = 12
    x = _correlated(200, d, rng)
    y = _correlated(200, d, rng, shift=0.3)
    ref = float(tm_kid.poly_mmd(torch.from_numpy(x), torch.from_numpy(y)))
    assert poly_mmd2(x, y) == pytest.approx(ref, rel=1e-6)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_metric_when_subsets_are_whole_sets():
    # with subset_size == n every subset is a permutation of the whole set, so the (random)
    # subsets of torchmetrics and ours give the same MMD and the comparison is deterministic
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(7)
    d, n = 10, 150
    x = _correlated(n, d, rng)
    y = _correlated(n, d, rng, shift=0.5)
    metric = tm_kid.KernelInceptionDistance(feature=_Identity(d), subsets=3, subset_size=n)
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    ref_mean, _ = metric.compute()
    mean, std = kid(x, y, subsets=3, subset_size=n)
    assert mean == pytest.approx(float(ref_mean), rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_kid_properties():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(400, 8))
    same = kid(x, rng.normal(size=(400, 8)), subsets=20, subset_size=100)
    far = kid(x, rng.normal(size=(400, 8)) + 1.0, subsets=20, subset_size=100)
    assert abs(same[0]) < 5 * same[1] + 1e-3  # unbiased: ~0 for the same distribution
    assert far[0] > 10 * abs(same[0]) and far[0] > 0
    # seeded: the same seed gives the same answer; subset_size is capped at min(n1, n2)
    assert kid(x, x + 0.1, subsets=5, subset_size=50, seed=3) == kid(x, x + 0.1, subsets=5, subset_size=50, seed=3)
    mean, std = kid(x[:30], x[:40] + 1, subsets=4, subset_size=1000)
    assert np.isfinite(mean) and np.isfinite(std)


# --------------------------------------------------------------------------- precision / recall


def test_precision_recall_identical_sets():
    x = np.random.default_rng(9).normal(size=(300, 5))
    assert precision_recall(x, x.copy(), k=3) == (1.0, 1.0)


def test_precision_recall_disjoint_far_clouds():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(200, 5))
    fake = rng.normal(size=(200, 5)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_precision_recall_half_the_modes():
    rng = np.random.default_rng(11)
    modes = 10  # 10 well-separated 2-D Gaussian modes on a circle; the fake set has only 5 of them
    angles = 2 * np.pi * np.arange(modes) / modes
    centers = 50.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    real = centers[rng.integers(0, modes, 2000)] + rng.normal(size=(2000, 2))
    fake = centers[rng.integers(0, modes // 2, 1000)] + rng.normal(size=(1000, 2))
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.93
    assert 0.4 < recall < 0.56


def test_precision_recall_chunking_gives_same_answer(monkeypatch):
    import sozo.metrics.frechet as fr

    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(120, 4)), rng.normal(size=(90, 4)) + 0.5
    full = precision_recall(real, fake)
    monkeypatch.setattr(fr, "_chunk_rows", lambda n_other, budget=0: 7)
    assert precision_recall(real, fake) == full


# --------------------------------------------------------------------------- class histogram


def test_class_histogram_collapsed_and_uniform():
    h = class_histogram(np.full(50, 3), 10)
    assert h["counts"][3] == 50 and sum(h["counts"]) == 50 and len(h["counts"]) == 10
    assert h["max_share"] == 1.0
    assert h["entropy"] == 0.0
    assert h["normalized_entropy"] == 0.0
    u = class_histogram(torch.arange(40) % 4, 4)
    assert u["counts"] == [10, 10, 10, 10]
    assert u["entropy"] == pytest.approx(2.0)  # bits
    assert u["normalized_entropy"] == pytest.approx(1.0)
    assert u["max_share"] == pytest.approx(0.25)


def test_class_histogram_rejects_bad_labels():
    with pytest.raises(SozoError, match="0..9"):
        class_histogram([0, 1, 10], 10)
    with pytest.raises(SozoError, match="empty"):
        class_histogram([], 10)


# --------------------------------------------------------------------------- errors


def test_fewer_samples_than_dimensions_is_a_clear_error():
    rng = np.random.default_rng(13)
    with pytest.raises(SozoError, match=r"n=10, d=16") as e:
        fd_from_features(rng.normal(size=(100, 16)), rng.normal(size=(10, 16)))
    assert "singular" in str(e.value) and "--n" in e.value.hint and "17" in e.value.hint
    with pytest.raises(SozoError, match="at least 2"):
        feature_stats(rng.normal(size=(1, 3)))


def test_nan_features_name_the_set():
    rng = np.random.default_rng(14)
    good = rng.normal(size=(50, 4))
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(SozoError, match="generated features"):
        fd_from_features(good, bad)
    with pytest.raises(SozoError, match="real features"):
        kid(torch.from_numpy(bad).float(), good)
    bad[3, 1] = np.inf
    with pytest.raises(SozoError, match="generated features"):
        precision_recall(good, bad)


def test_mismatched_dimensions_are_errors():
    rng = np.random.default_rng(15)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 5))
    for fn in (fd_from_features, kid, precision_recall):
        with pytest.raises(SozoError, match="different feature dimensions"):
            fn(a, b)
    with pytest.raises(SozoError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
