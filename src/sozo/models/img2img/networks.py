"""Image-to-image networks: the U-Net and ResNet-block generators and the PatchGAN discriminator.

The shapes follow the pix2pix / CycleGAN reference code (Isola et al. 2017, Zhu et al. 2017):

- U-Net: ``depth`` stride-2 4x4 convs down (64-128-256-512-512…, no norm on the first, none at the
  1x1 bottleneck), the mirror image up with a skip connection from each level, Tanh. Depth 8 takes
  256x256 to 1x1; its stride is 2^depth, so an image side must be a multiple of it.
- ResNet: c7s1-w, two stride-2 downs, ``blocks`` residual blocks (reflection padding), two
  stride-2 ups, c7s1-C, Tanh (9 blocks at 256 px, 6 at 128). Stride 4.
- PatchGAN: ``layers`` stride-2 4x4 convs (64-128-256), a stride-1 4x4 conv (512), a stride-1 4x4
  conv to one logit per patch. Three layers see 70x70 patches.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...nn.blocks import norm2d


def _norm(kind: str, ch: int) -> nn.Module:
    # batch norm as in the reference code; instance norm without affine there, affine here (harmless)
    return norm2d(kind, ch)


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and the skip (concatenation)."""

    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        bias = norm != "batch"  # a conv followed by batch norm needs no bias
        down: list[nn.Module] = [nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias)]
        up: list[nn.Module]
        layers: list[nn.Module]
        if sub is None and not innermost:
            raise ValueError("a U-Net block above the bottleneck wraps the block below it (sub)")
        inside: list[nn.Module] = [] if sub is None else [sub]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = down + inside + up
        elif innermost:  # the bottleneck: no norm (a 1x1 map cannot be normalised per image)
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + [_norm(norm, inner)] + inside + up
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # the skip: (B, C_in + C_out, H, W)


class UnetGenerator(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W) in [-1, 1]; H and W multiples of 2^depth."""

    def __init__(self, in_ch: int, out_ch: int, depth: int = 8, width: int = 64, norm: str = "instance",
                 dropout: float = 0.0):
        super().__init__()
        if depth < 2:
            raise ValueError("a U-Net needs depth >= 2")
        self.stride = 2 ** depth
        # feature widths after each down conv: w, 2w, 4w, 8w, 8w, … (capped at 8w as in the paper)
        widths = [min(width * 2 ** i, width * 8) for i in range(depth)]
        block = UnetBlock(widths[-2], widths[-1], norm=norm, innermost=True)
        for i in range(depth - 2, 0, -1):  # the levels between the outermost and the bottleneck
            # dropout (pix2pix's only noise) in the 8w -> 8w levels, as in the reference code
            drop = dropout if widths[i - 1] == widths[i] == width * 8 else 0.0
            block = UnetBlock(widths[i - 1], widths[i], sub=block, norm=norm, dropout=drop)
        self.model = UnetBlock(out_ch, widths[0], in_ch=in_ch, sub=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, norm: str, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=norm != "batch"), _norm(norm, ch),
                                   nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=norm != "batch"), _norm(norm, ch)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W) in [-1, 1]; H and W multiples of 4."""

    stride = 4

    def __init__(self, in_ch: int, out_ch: int, blocks: int = 9, width: int = 64, norm: str = "instance",
                 dropout: float = 0.0):
        super().__init__()
        bias = norm != "batch"
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, w, 7, bias=bias), _norm(norm, w),
                                   nn.ReLU(True)]
        for m in (1, 2):  # down: w -> 2w -> 4w
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1, bias=bias), _norm(norm, w * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(w * 4, norm, dropout) for _ in range(blocks)]
        for m in (4, 2):  # up: 4w -> 2w -> w
            layers += [nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1, bias=bias),
                       _norm(norm, w * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> (B, 1, h, w): a logit for each overlapping patch (70x70 with 3 layers)."""

    def __init__(self, in_ch: int, layers: int = 3, width: int = 64, norm: str = "instance"):
        super().__init__()
        bias = norm != "batch"
        seq: list[nn.Module] = [nn.Conv2d(in_ch, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no norm first
        ch = width
        for i in range(1, layers):
            nxt = width * min(2 ** i, 8)
            seq += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=bias), _norm(norm, nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        nxt = width * min(2 ** layers, 8)
        seq += [nn.Conv2d(ch, nxt, 4, 1, 1, bias=bias), _norm(norm, nxt), nn.LeakyReLU(0.2, True),
                nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def patch_receptive_field(layers: int) -> int:
    """Receptive field in pixels of one PatchGAN output: 70 for 3 layers, 34 for 2, 142 for 4."""
    kernels_strides = [(4, 2)] * layers + [(4, 1), (4, 1)]
    rf = 1
    for k, s in reversed(kernels_strides):
        rf = (rf - 1) * s + k
    return rf


def patch_output_size(size: int, layers: int) -> int:
    """Side of the PatchGAN's output map for an input side ``size`` (< 1: the image is too small)."""
    for _ in range(layers):
        size = (size + 2 - 4) // 2 + 1
    for _ in range(2):
        size = size + 2 - 4 + 1
    return size


def unet_depth(size: int, depth: int | None) -> int:
    """The U-Net depth to use: as asked, or the deepest up to 8 (256 px -> 1x1) whose stride fits ``size``."""
    if depth:
        return depth
    return max(2, min(8, int(math.log2(max(size, 4)))))
