"""The pieces of a VAE's objective, per example, in nats.

- ``bernoulli_nll``: -log p(x | z) of a Bernoulli decoder with logits, summed over pixels
  (binary cross-entropy; with grey-level targets in [0, 1] as in the PyTorch example)
- ``gaussian_kl``: KL(N(mu, diag exp(logvar)) || N(0, I)), the analytic form
- ``log_weights``: log p(x|z) + log p(z) - log q(z|x) for given draws, the importance weights
  whose log-mean-exp estimates log p(x) (Burda et al., the IWAE bound)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
# what the likelihood figures of sozo's VAEs are (eval.json says it beside them)
LIKELIHOOD_NOTE = ("Bernoulli decoder; targets are grey levels x/255 as in the PyTorch example "
                   "(not binarised MNIST), so figures compare with other sozo runs, not with papers")


def bernoulli_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) logits, targets in [0, 1] (broadcast) -> (...,) cross-entropy summed over pixels.

    softplus(l) - l * t is -t log sigmoid(l) - (1 - t) log(1 - sigmoid(l)), stable for any logit.
    """
    logits = logits.float()
    return (F.softplus(logits) - logits * targets).flatten(-3).sum(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B,): 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def posterior_logpdf(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag sigma^2) of z = mu + sigma * eps, summed over the last dimension."""
    return -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)


def log_weights(logpx: torch.Tensor, z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x); shapes (K, B) from (K, B, L) draws."""
    return logpx + std_normal_logpdf(z) - posterior_logpdf(eps, logvar)


def iw_nll(log_w: torch.Tensor) -> torch.Tensor:
    """(K, B) log weights -> (B,) importance-sampled -log p(x) = -(logsumexp_k log w_k - log K)."""
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.size(0)))
