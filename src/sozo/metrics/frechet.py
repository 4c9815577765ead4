"""Distances between two sets of features: Fréchet distance, KID, precision/recall, class histogram.

Everything here is a pure function of feature matrices ``(n, d)`` (numpy arrays or torch tensors)
and is computed in float64. Which network produced the features is the caller's business (see
:mod:`sozo.metrics.features`); name the figure after it (``FD-LeNet``, ``FD-Inception``).

References:
    Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium" (FID). Bińkowski et al. 2018, "Demystifying MMD GANs" (KID). Kynkäänniemi et al.
    2019, "Improved precision and recall metric for assessing generative models".
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sozo.errors import SozoError

__all__ = [
    "feature_stats",
    "frechet_distance",
    "fd_from_features",
    "kid",
    "poly_mmd2",
    "precision_recall",
    "class_histogram",
]


# --------------------------------------------------------------------------- validation helpers


def _as_matrix(feats: Any, name: str) -> np.ndarray:
    """A float64 ``(n, d)`` numpy copy of ``feats``; SozoError on bad shape or non-finite values."""
    if isinstance(feats, torch.Tensor):
        arr = feats.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise SozoError(
            f"{name} must be a 2-D matrix (samples x feature dimensions), got shape {tuple(arr.shape)}",
            hint="flatten each sample's features to one vector",
        )
    if arr.shape[0] == 0:
        raise SozoError(f"{name} is empty (0 samples)", hint="generate or load at least a few samples")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise SozoError(
            f"{name} contain NaN or infinite values ({bad} of {arr.shape[0]} samples)",
            hint="the model (or the images fed to the extractor) produced NaN/inf; check the "
            "training run for divergence",
        )
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise SozoError(
            f"{name_a} and {name_b} have different feature dimensions ({a.shape[1]} vs {b.shape[1]})",
            hint="compute both sets with the same feature extractor",
        )


def _check_full_rank_possible(n: int, d: int, name: str) -> None:
    if n < 2:
        raise SozoError(
            f"{name}: need at least 2 samples to estimate a covariance, got {n}",
            hint="use --n 2 or more (several times the feature dimension for a stable estimate)",
        )
    if n <= d:
        raise SozoError(
            f"{name}: the covariance is singular: the Fréchet distance needs more samples than "
            f"feature dimensions (n={n}, d={d})",
            hint=f"use --n ≥ {d + 1} (several times {d} for a stable estimate)",
        )


# --------------------------------------------------------------------------- Fréchet distance


def feature_stats(feats: Any, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` of ``feats`` ``(n, d)``, both float64.

    Raises SozoError when ``n < 2`` or ``n <= d`` (the covariance would be singular).
    """
    x = _as_matrix(feats, name)
    n, d = x.shape
    _check_full_rank_possible(n, d, name)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = (xc.T @ xc) / (n - 1)
    return mu, sigma


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    w = np.clip(w, 0.0, None)
    return (v * np.sqrt(w)) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(s1) + tr(s2) - 2 tr(sqrt(s1 s2))``, where
    ``tr sqrt(s1 s2) = sum sqrt(eig(sqrt(s1) s2 sqrt(s1)))``: the matrix inside is symmetric
    positive semi-definite, so ``eigh`` applies and tiny negative eigenvalues are rounding noise
    (clipped to 0). The result is clipped at 0 for the same reason.
    """
    mu1 = np.atleast_1d(np.asarray(_np64(mu1)))
    mu2 = np.atleast_1d(np.asarray(_np64(mu2)))
    s1 = np.atleast_2d(np.asarray(_np64(sigma1)))
    s2 = np.atleast_2d(np.asarray(_np64(sigma2)))
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise SozoError(
            "Fréchet distance: shapes do not match: "
            f"mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}",
            hint="compute both sets of statistics with the same feature extractor",
        )
    for name, a in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise SozoError(f"Fréchet distance: {name} contains NaN or infinite values")
    root1 = _sym_sqrt(s1)
    m = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def _np64(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def fd_from_features(f1: Any, f2: Any) -> float:
    """Fréchet distance between two feature sets ``(n1, d)`` and ``(n2, d)``."""
    a = _as_matrix(f1, "real features")
    b = _as_matrix(f2, "generated features")
    _same_dim(a, b, "real features", "generated features")
    mu1, s1 = feature_stats(a, "real features")
    mu2, s2 = feature_stats(b, "generated features")
    return frechet_distance(mu1, s1, mu2, s2)


# --------------------------------------------------------------------------- KID


def poly_mmd2(x: Any, y: Any, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased MMD² estimate between equal-size sets ``x``, ``y`` ``(m, d)`` with the polynomial
    kernel ``k(a, b) = (a·b / d + coef) ** degree`` (Bińkowski et al. 2018; same estimator as
    torchmetrics' ``poly_mmd`` and torch-fidelity: the cross term keeps its diagonal)."""
    x = _np64(x)
    y = _np64(y)
    m, d = x.shape
    if y.shape != (m, d):
        raise SozoError(f"KID subsets must have the same shape, got {x.shape} and {y.shape}")
    if m < 2:
        raise SozoError("KID needs at least 2 samples per subset", hint="use --n 2 or more")
    k_xx = (x @ x.T / d + coef) ** degree
    k_yy = (y @ y.T / d + coef) ** degree
    k_xy = (x @ y.T / d + coef) ** degree
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(f1: Any, f2: Any, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (over whatever features are given): mean and standard deviation
    of :func:`poly_mmd2` over ``subsets`` random subsets of ``min(subset_size, n1, n2)`` samples
    drawn without replacement (seeded). The std is the population std over subsets, as in
    torchmetrics and torch-fidelity."""
    a = _as_matrix(f1, "real features")
    b = _as_matrix(f2, "generated features")
    _same_dim(a, b, "real features", "generated features")
    if subsets < 1:
        raise SozoError(f"KID needs at least one subset, got subsets={subsets}")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m < 2:
        raise SozoError(
            f"KID needs at least 2 samples in each set (real n={a.shape[0]}, generated n={b.shape[0]})",
            hint="use --n 2 or more",
        )
    rng = np.random.default_rng(seed)
    scores = np.empty(subsets)
    for i in range(subsets):
        ia = rng.choice(a.shape[0], m, replace=False)
        ib = rng.choice(b.shape[0], m, replace=False)
        scores[i] = poly_mmd2(a[ia], b[ib])
    return float(scores.mean()), float(scores.std())


# --------------------------------------------------------------------------- precision / recall


def _chunk_rows(n_other: int, budget: int = 1 << 24) -> int:
    """Rows per chunk so a chunk of the distance matrix holds about ``budget`` float64 entries."""
    return max(1, budget // max(1, n_other))


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (the row itself excluded)."""
    n = x.shape[0]
    step = _chunk_rows(n)
    radii = torch.empty(n, dtype=x.dtype)
    for start in range(0, n, step):
        d = torch.cdist(x[start : start + step], x)
        # the k+1 smallest include the point itself at distance 0
        radii[start : start + step] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query, whether it lies within the k-NN ball of at least one support point."""
    step = _chunk_rows(support.shape[0])
    inside = torch.empty(queries.shape[0], dtype=torch.bool)
    for start in range(0, queries.shape[0], step):
        d = torch.cdist(queries[start : start + step], support)
        inside[start : start + step] = (d <= radii[None, :]).any(dim=1)
    return inside


def precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour. Precision is the share of generated samples inside the real
    manifold (quality); recall is the share of real samples inside the generated manifold
    (coverage). Distances are computed in float64 in chunks, so 10k x 10k sets fit in memory.
    """
    a = _as_matrix(real, "real features")
    b = _as_matrix(fake, "generated features")
    _same_dim(a, b, "real features", "generated features")
    if k < 1:
        raise SozoError(f"precision/recall needs k ≥ 1, got k={k}")
    for name, arr in (("real features", a), ("generated features", b)):
        if arr.shape[0] <= k:
            raise SozoError(
                f"precision/recall with k={k} needs more than {k} samples in each set; "
                f"{name} has {arr.shape[0]}",
                hint=f"use --n ≥ {k + 1}",
            )
    ta = torch.from_numpy(a)
    tb = torch.from_numpy(b)
    radii_real = _knn_radii(ta, k)
    radii_fake = _knn_radii(tb, k)
    precision = _inside_manifold(tb, ta, radii_real).double().mean().item()
    recall = _inside_manifold(ta, tb, radii_fake).double().mean().item()
    return float(precision), float(recall)


# --------------------------------------------------------------------------- class histogram


def class_histogram(labels: Any, num_classes: int) -> dict:
    """How generated samples spread over classes (as judged by a classifier): mode collapse shows
    as a high ``max_share`` and a low entropy.

    Returns ``{"counts": [int]*num_classes, "n": int, "entropy": bits, "max_share": float,
    "normalized_entropy": entropy / log2(num_classes)}`` (1.0 = perfectly uniform, 0.0 = one
    class; defined as 0.0 when ``num_classes == 1``). Entropy is in **bits**.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    lab = np.asarray(labels).reshape(-1)
    if num_classes < 1:
        raise SozoError(f"class histogram needs num_classes ≥ 1, got {num_classes}")
    if lab.size == 0:
        raise SozoError("class histogram of an empty set of labels", hint="generate at least one sample")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.equal(np.mod(lab, 1), 0)):
            raise SozoError("class labels must be integers")
        lab = lab.astype(np.int64)
    if lab.min() < 0 or lab.max() >= num_classes:
        raise SozoError(
            f"class labels must lie in 0..{num_classes - 1}, got values in {int(lab.min())}..{int(lab.max())}"
        )
    counts = np.bincount(lab, minlength=num_classes)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    normalized = entropy / math.log2(num_classes) if num_classes > 1 else 0.0
    return {
        "counts": [int(c) for c in counts],
        "n": int(counts.sum()),
        "entropy": entropy,
        "max_share": float(p.max()),
        "normalized_entropy": float(normalized),
    }
