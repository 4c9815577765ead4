"""The energy network and Langevin dynamics of the EBM family (torch only: no sozo imports).

The network outputs a *score* s(x) = -E(x), higher for real images (the sign convention of Foster's
Generative Deep Learning, 2nd ed., ch. 7). :func:`langevin` is one sampler for any energy, with the
book's parameterisation (noise first, then a clipped gradient step, each followed by a clamp to
the data's range) and, with ``step_size = eps / 2``, ``noise = sqrt(eps)`` and no clipping or clamp,
the plain unadjusted Langevin algorithm x <- x - (eps/2) grad E(x) + sqrt(eps) N(0, 1).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_out(size: int, kernel: int, stride: int = 2) -> int:
    """Side of a stride-``stride`` conv's output with padding kernel // 2 (Keras' "same": ceil(size / 2))."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class EnergyNet(nn.Module):
    """Strided convs with swish (SiLU) activations, then dense ``hidden`` -> 1: the score s(x) = -E(x).

    The book's network for 32x32 digits: Conv 16 (5x5) / 32 / 64 / 64 (3x3), each stride 2 and
    "same" padding, flatten, Dense 64, Dense 1. Any size works: the flattened width follows it.
    """

    def __init__(self, channels: int, size: int, widths: list[int], hidden: int):
        super().__init__()
        layers: list[nn.Module] = []
        c, side = channels, size
        for i, w in enumerate(widths):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c, w, k, stride=2, padding=k // 2), nn.SiLU()]
            c, side = w, conv_out(side, k)
        self.features = nn.Sequential(*layers)  # (B, C, H, W) -> (B, widths[-1], side, side)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)  # (B,) scores


def langevin(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, step_size: float,
             noise: float, grad_clip: float = 0.0, clamp: tuple[float, float] | None = (-1.0, 1.0),
             generator: torch.Generator | None = None,
             every: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``steps`` of Langevin dynamics on ``energy`` (a function of (B, ...) inputs giving (B,) energies)
    from ``x``; returns the last state (detached) and, with ``every`` > 0, the states at step 0 (the
    start), every ``every``-th step and the last (detached CPU copies, the frames of a chain).

    One step: x <- clamp(x + noise * N(0, 1)); g = -grad_x E(x), clipped to [-grad_clip, grad_clip]
    when grad_clip > 0; x <- clamp(x + step_size * g). Only the input gets gradients: the energy's
    parameters are never touched (no .grad is written). ``generator``: draw the noise on the CPU from
    it (the same chain on any device); None: from the device's global generator.
    """
    x = x.detach().clone()
    frames = [x.cpu()] if every > 0 else []
    for t in range(1, steps + 1):
        if noise > 0:
            z = torch.randn(x.shape, generator=generator).to(x.device) if generator is not None else torch.randn_like(x)
            x = x + noise * z
        if clamp is not None:
            x = x.clamp(*clamp)
        with torch.enable_grad():
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
        g = -grad
        if grad_clip > 0:
            g = g.clamp(-grad_clip, grad_clip)
        x = x.detach() + step_size * g
        if clamp is not None:
            x = x.clamp(*clamp)
        if every > 0 and (t % every == 0 or t == steps):
            frames.append(x.cpu())
    return x.detach(), frames
