"""GAN objectives, separate from the networks: the same critic can be trained with any of them.

- ``bce``: the original GAN loss, non-saturating for the generator (logits + BCEWithLogits,
  which is safe under autocast).
- ``wasserstein-clip``: WGAN (Arjovsky et al. 2017): critic maximises D(real) - D(fake),
  weights clipped to [-c, c] after each critic update.
- ``wasserstein-gp``: WGAN-GP (Gulrajani et al. 2017): the same, plus lambda * (||grad D(x_hat)|| - 1)^2
  on random interpolates; no clipping, no batch norm in the critic.
- ``least-squares``: LSGAN (Mao et al. 2017), CycleGAN's choice: D pushes real outputs to 1 and fake
  to 0 by squared error, G pushes fake outputs to 1.

Outputs may have any shape (one logit per image, or a PatchGAN's map of patch logits): every loss
is a mean over all of them.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

OBJECTIVES = ("bce", "wasserstein-clip", "wasserstein-gp", "least-squares")


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator / critic loss to minimise, from its outputs on real and fake batches."""
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    if kind == "least-squares":
        return F.mse_loss(real_logits, torch.ones_like(real_logits)) + F.mse_loss(fake_logits, torch.zeros_like(fake_logits))
    return fake_logits.mean() - real_logits.mean()  # the negated Wasserstein estimate


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss to minimise from the discriminator's outputs on fakes."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "least-squares":
        return F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    return -fake_logits.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps*real + (1-eps)*fake, in float32.

    Needs a double backward, so it runs outside autocast and must not be torch.compiled.
    """
    eps = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    x_hat = (eps * real.float() + (1 - eps) * fake.float()).requires_grad_(True)  # (B, C, H, W)
    with torch.autocast(device_type=real.device.type, enabled=False):
        out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """WGAN weight clipping: every parameter of the critic into [-c, c]."""
    for p in module.parameters():
        p.clamp_(-c, c)


def generator_update(critic: nn.Module, score_fakes, opt_g: torch.optim.Optimizer, kind: str,
                     autocast) -> torch.Tensor:
    """One generator step: ``score_fakes()`` runs the critic on the fakes (with their graph), the
    critic's own weights need no gradient meanwhile; returns the detached generator loss."""
    critic.requires_grad_(False)
    try:
        with autocast:
            loss_g = g_loss(kind, score_fakes().float())
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    finally:
        critic.requires_grad_(True)
    return loss_g.detach()
