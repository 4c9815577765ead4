"""The floors a flow must beat: a full-covariance Gaussian fitted (maximum likelihood) to the training
examples, scored on the held-out ones, in float64. For images both sides are dequantised the same way
as the flow's (x + u) / 256 with u uniform (seeded), and the score is converted to the density of
x + u in [0, 256)^D, so its bits per dimension are in the same units as the flow's. And the plainest
floor of all: independent per-pixel histograms (no pixel-to-pixel dependence learned)."""
from __future__ import annotations

import math

import torch

DEQUANT_SEED_TRAIN = 1  # the uniform noise of the floor's fit (fixed: the floor is a fixed number)
DEQUANT_SEED_HELD = 2   # and of the held-out images it scores
RIDGE = 1e-2  # x the mean pixel variance on the diagonal, only when the MLE covariance is singular (N <= D)


def gaussian_nll(train: torch.Tensor, held: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """(M,) -log N(held; mean, cov) in nats, with mean and cov the MLE of ``train`` (N, D); ``ridge``
    times the mean variance is added to the diagonal (needed when N <= D: the MLE is singular)."""
    x = train.double().flatten(1)
    y = held.double().flatten(1)
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / len(x)
    if ridge:
        cov = cov + ridge * torch.diagonal(cov).mean() * torch.eye(len(cov), dtype=cov.dtype)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ValueError("the covariance is singular")
    d = x.shape[1]
    sol = torch.linalg.solve_triangular(chol, (y - mean).T, upper=False)  # L^-1 (y - mean), (D, M)
    maha = sol.pow(2).sum(0)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    return 0.5 * (maha + logdet + d * math.log(2 * math.pi))


def histogram_nll(train: torch.Tensor, held: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """(M,) -log p(held) in nats under independent per-pixel histograms of the uint8 ``train`` images
    (256 bins each, ``smoothing`` added to every count: Laplace's rule). A bin is one unit wide, so this
    is also the density of x + u in [0, 256)^D: the same units as the flow's dequantised likelihood."""
    x, y = train.flatten(1).long(), held.flatten(1).long()
    counts = torch.zeros(x.shape[1], 256, dtype=torch.float64)
    counts.scatter_add_(1, x.T.contiguous(), torch.ones(x.shape[1], x.shape[0], dtype=torch.float64))
    logp = torch.log(counts + smoothing) - math.log(len(x) + 256 * smoothing)
    return -logp.gather(1, y.T.contiguous()).sum(0)


def dequantise(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, D) float64 (x + u) / 256 in [0, 1), u ~ U[0, 1) from a CPU generator."""
    x = images.flatten(1).double()
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (x + u) / 256.0


def logit(y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow's preprocessing of y in [0, 1): logit(alpha + (1 - 2 alpha) y), and its (N,) log-determinant
    with respect to x + u = 256 y."""
    p = alpha + (1 - 2 * alpha) * y
    pre = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).sum(1) - y.shape[1] * math.log(256.0)
    return torch.log(p) - torch.log1p(-p), pre


def image_floor(train: torch.Tensor, held: torch.Tensor, alpha: float = 0.05) -> dict[str, float]:
    """The Gaussian floors of uint8 images, NLL in nats per image and bits/dim of x + u in [0, 256)^D:
    fitted to the dequantised pixels themselves (``floor_*``), and to their logit as the flow sees them
    (``floor_logit_*``: a flow with no couplings, the preprocessing's log-determinant counted); and
    independent per-pixel histograms (``floor_pixels_*``: what a model that learns no pixel-to-pixel
    dependence at all scores; the Gaussians' covariances overfit when the training set is small)."""
    d = int(train[0].numel())
    x, y = dequantise(train, DEQUANT_SEED_TRAIN), dequantise(held, DEQUANT_SEED_HELD)
    (zx, _), (zy, pre) = logit(x, alpha), logit(y, alpha)
    try:
        logit_nll = (gaussian_nll(zx, zy) - pre).mean().item()
    except ValueError:
        logit_nll = (gaussian_nll(zx, zy, ridge=RIDGE) - pre).mean().item()
    ridge = 0.0
    try:
        nll01 = gaussian_nll(x, y)
    except ValueError:  # fewer training images than pixels: the MLE covariance is singular
        ridge = RIDGE
        nll01 = gaussian_nll(x, y, ridge=ridge)
    nll = nll01.mean().item() + d * math.log(256.0)  # density of (x+u)/256 -> of x+u: -D log 256 in log p
    return {"floor_nll_8bit": nll, "floor_bpd_8bit": nll / (d * math.log(2)), "floor_ridge": ridge,
            "floor_logit_bpd_8bit": logit_nll / (d * math.log(2)),
            "floor_pixels_bpd_8bit": histogram_nll(train, held).mean().item() / (d * math.log(2))}
