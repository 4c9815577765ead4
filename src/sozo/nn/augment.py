"""Differentiable augmentation for GAN critics on little data: DiffAugment and ADA's heuristic.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
the same random, differentiable transformations are applied to the real and to the fake batch before
the critic sees them, in the critic's update and in the generator's, so the critic cannot memorise
a few hundred images and the generator's gradient flows back through the augmentation. The three
ops of the paper's code (images in [-1, 1], each example its own draw):

- ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2) about the example's channel mean,
  contrast x U(0.5, 1.5) about the example's mean;
- ``translation``: a shift of up to 1/8 of the size in each direction, whole pixels, zero padding;
- ``cutout``: a square of half the size set to 0 at a random place.

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"): each op is
applied to an example with probability ``p``, and every few steps ``p`` moves toward where the
overfitting heuristic r_t = E[sign(D(real))] stays at a target (0.6): up when r_t is above it (the
critic is sure of the training images), down when below, by (images seen since) / ``speed``.
``Ada`` keeps p and the running sums in buffers, so they are in a model's state dict (checkpoint,
exact resume).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import SozoError, did_you_mean


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.size(0)
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy  # (B, H, 1): the source row of each output row
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx  # (B, 1, W)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)  # (B, 1, H, W)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).flatten(1)  # (B, H*W) a gather index, differentiable in x
    flat = x.flatten(2)  # (B, C, H*W)
    moved = flat.gather(2, idx.unsqueeze(1).expand(-1, x.size(1), -1)).view_as(x)
    return moved * inside.to(x.dtype)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)  # the square's centre, anywhere (clipped at the edges)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cut = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~cut).unsqueeze(1).to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": _color, "translation": _translation, "cutout": _cutout,
}


def check_policy(policy: list[str] | tuple[str, ...], option: str = "diffaug") -> None:
    """A SozoError naming the known ops if ``policy`` has an unknown one."""
    for op in policy:
        if op not in OPS:
            raise SozoError(f"unknown DiffAugment op '{op}' in '{option}' (known: {', '.join(OPS)})",
                            hint=did_you_mean(op, list(OPS)) or f"for example --set {option}=color,translation,cutout")


def diff_augment(x: torch.Tensor, policy: list[str] | tuple[str, ...], p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``x`` (B, C, H, W) through each op of ``policy`` in turn, each example taking each op with
    probability ``p`` (1: always, DiffAugment; ADA's p otherwise). Differentiable in ``x``; an empty
    policy (or p = 0) returns ``x`` itself. Draws from the global RNG of x's device."""
    check_policy(policy)
    if not policy:
        return x
    always = not isinstance(p, torch.Tensor) and p >= 1
    if not isinstance(p, torch.Tensor) and p <= 0:
        return x
    for op in policy:
        y = OPS[op](x)
        if always:
            x = y
        else:
            take = torch.rand(x.size(0), 1, 1, 1, device=x.device) < p  # (B, 1, 1, 1)
            x = torch.where(take, y, x)
    return x


class Ada(nn.Module):
    """ADA's augmentation probability p, adjusted from the critic's outputs on real images.

    ``observe(sign_mean, n)`` accumulates sign(D(real)); ``step(i)`` every ``interval`` steps moves p by
    sign(r_t - target) * (images seen in the interval) / ``speed`` (the paper: p can go from 0 to 1
    in 500k images; sozo's default 20k suits a CPU run of a few thousand steps), clamped to [0, 1].
    Buffers: p, the sum of signs and their count since the last adjustment, the last r_t."""

    p: torch.Tensor
    sign_sum: torch.Tensor
    sign_count: torch.Tensor
    rt: torch.Tensor

    def __init__(self, target: float = 0.6, interval: int = 4, speed: float = 20_000.0, p: float = 0.0):
        super().__init__()
        self.target, self.interval, self.speed = target, interval, speed
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("sign_sum", torch.tensor(0.0))
        self.register_buffer("sign_count", torch.tensor(0.0))
        self.register_buffer("rt", torch.tensor(0.0))

    @torch.no_grad()
    def observe(self, sign_mean: torch.Tensor, n: int) -> None:
        """Add a batch of ``n`` real images whose critic outputs had mean sign ``sign_mean``
        (``critic_loss(..., real_sign=True)``'s ``real_sign``)."""
        self.sign_sum += sign_mean.detach().float() * n
        self.sign_count += n

    def step(self, step: int) -> None:
        """After training step ``step`` (0, 1, …): adjust p when ``interval`` steps have been observed
        (by the step count, so a resumed run adjusts at the same steps; no host sync)."""
        if (step + 1) % self.interval == 0:
            self.adjust()

    @torch.no_grad()
    def adjust(self) -> None:
        rt = self.sign_sum / self.sign_count.clamp(min=1)
        self.p.add_(torch.sign(rt - self.target) * self.sign_count / self.speed).clamp_(0.0, 1.0)
        self.rt.copy_(rt)
        self.sign_sum.zero_()
        self.sign_count.zero_()
