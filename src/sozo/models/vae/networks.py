"""Encoders and decoders of the autoencoder family: MLPs (the PyTorch example's 784-400-20) and
strided conv stacks (28x28 grey, 64x64 RGB, any size s0 * 2^n with s0 in {4, 7}).

Encoders map pixel intensities in [0, 1] to a flat vector (2 * latent for a VAE: mean and log
variance; latent for a plain autoencoder). Decoders map latents to per-pixel logits. A
conditional network gets the label as a one-hot vector (or a soft one, for interpolating between
classes): concatenated to the MLP input and to the latent, or as k constant planes of the image.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def conv_plan(size: int) -> tuple[int, int] | None:
    """(s0, n) with size == s0 * 2**n, s0 in {4, 7}, n >= 1: n stride-2 convs reach s0 x s0."""
    for s0 in (4, 7):
        n = math.log2(size / s0) if size >= s0 else -1
        if n >= 1 and n == int(n):
            return s0, int(n)
    return None


def conv_sizes() -> list[int]:
    return [14, 16, 28, 32, 56, 64, 112, 128, 256]


def _cat_label(h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return h if y is None else torch.cat([h, y.to(h.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """(B, C, H, W) [+ one-hot (B, k)] -> hidden ReLU layers -> (B, out_dim)."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], out_dim: int, num_classes: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(shape) + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_cat_label(x.flatten(1), y))


class MLPDecoder(nn.Module):
    """(B, latent) [+ one-hot] -> hidden ReLU layers (the encoder's, reversed) -> logits (B, C, H, W)."""

    def __init__(self, latent_dim: int, hidden: list[int], shape: tuple[int, int, int], num_classes: int = 0):
        super().__init__()
        self.shape = shape
        layers: list[nn.Module] = []
        width = latent_dim + num_classes
        for h in reversed(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, math.prod(shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_cat_label(z, y)).view(-1, *self.shape)


def _widths(width: int, n: int) -> list[int]:
    """Channels after each of the n stride-2 convs: w, 2w, 4w… capped at 8w."""
    return [width * min(2 ** i, 8) for i in range(n)]


class ConvEncoder(nn.Module):
    """Strided 4x4 convs (ReLU) halving the size to s0 (28 -> 14 -> 7; 64 -> 32 -> 16 -> 8 -> 4),
    then a linear layer to ``out_dim``. A label enters as k constant planes beside the image."""

    def __init__(self, size: int, channels: int, width: int, out_dim: int, num_classes: int = 0):
        super().__init__()
        plan = conv_plan(size)
        if plan is None:
            raise ValueError(f"unsupported image size {size}")
        s0, n = plan
        widths = _widths(width, n)
        layers: list[nn.Module] = []
        c_in = channels + num_classes
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU(inplace=True)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * s0 * s0, out_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:  # (B, k) -> (B, k, H, W) constant planes
            x = torch.cat([x, y.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
        return self.head(self.convs(x).flatten(1))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """Linear to (8w.., s0, s0), then 4x4 transposed convs (ReLU) doubling to the image size; the last
    one gives C channels of logits. 28x28, w=32: z -> 64x7x7 -> 32x14x14 -> Cx28x28."""

    def __init__(self, latent_dim: int, size: int, channels: int, width: int, num_classes: int = 0):
        super().__init__()
        plan = conv_plan(size)
        if plan is None:
            raise ValueError(f"unsupported image size {size}")
        s0, n = plan
        widths = _widths(width, n)[::-1]  # e.g. [64, 32]
        self.start = (widths[0], s0, s0)
        self.fc = nn.Sequential(nn.Linear(latent_dim + num_classes, math.prod(self.start)), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:] + [channels]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU(inplace=True)]
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation after the last: logits

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(_cat_label(z, y)).view(-1, *self.start)  # (B, 8w.., s0, s0)
        return self.deconvs(h)  # (B, C, H, W) logits
