"""Small building blocks shared by the families."""
from __future__ import annotations

from torch import nn


def norm2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name: batch, instance (affine), layer (GroupNorm(1)), none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'")


def activation(kind: str) -> nn.Module:
    """relu or leaky (slope 0.2, as in DCGAN)."""
    return nn.LeakyReLU(0.2, inplace=True) if kind == "leaky" else nn.ReLU(inplace=True)
