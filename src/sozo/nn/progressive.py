"""The building blocks of Karras et al.'s networks, shared by ProGAN and StyleGAN.

- ``EqualLinear`` / ``EqualConv2d``: the equalised learning rate (Karras et al. 2018): weights drawn
  from N(0, 1) (divided by ``lr_mul``) and scaled at run time by ``lr_mul / sqrt(fan_in)``, so Adam's
  per-parameter step moves every layer at the same relative speed. No other initialisation applies.
- ``PixelNorm``: each pixel's feature vector divided by its RMS over the channels (ProGAN's G).
- ``MinibatchStdDev``: the standard deviation of each feature over groups of the batch, averaged into
  one extra channel before the critic's last block (ProGAN), so the critic sees a batch's variety.
- ``ModulatedConv2d``: StyleGAN2's modulated convolution with weight demodulation, in its unfused
  form (scale the input by the style, convolve with the shared weight, scale the output by the
  demodulation factor): the same result as the grouped per-sample weight, one plain conv.
- ``resolutions``: the resolutions from 4 up to an image size, each step halving (rounded up) the
  next: 32 -> [4, 8, 16, 32], 28 -> [4, 7, 14, 28].
- ``ProgressiveDiscriminator``: ProGAN's critic (fromRGB at each resolution, two 3x3 convs and a
  downsampling per resolution, minibatch stddev, a 3x3 conv and two dense layers at 4x4), with the
  fade-in of a new resolution; StyleGAN uses it at its full resolution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resolutions(size: int) -> list[int]:
    """The resolutions from 4 up to ``size`` (each the next one halved, rounded up)."""
    out = [size]
    while out[-1] > 4:
        out.append(max(4, -(-out[-1] // 2)))
    return out[::-1]


def resize(x: torch.Tensor, size: int, mode: str = "nearest") -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size): nearest or bilinear up, area (average) down; itself if equal."""
    if x.size(-1) == size:
        return x
    if size < x.size(-1):
        return F.adaptive_avg_pool2d(x, size)
    if mode == "bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(size, size), mode="nearest")


def widths(size: int, width: int) -> dict[int, int]:
    """Channels at each resolution: ``width`` at the full size, doubling as the maps halve, at most 4x."""
    return {r: min(4 * width, width * max(1, size // r)) for r in resolutions(size)}


class EqualLinear(nn.Module):
    """A linear layer with the equalised learning rate (weights N(0, 1) / lr_mul, scaled at run time)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((d_out,), float(bias_init) / lr_mul)) if bias else None
        self.scale, self.lr_mul = lr_mul / math.sqrt(d_in), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, b)


class EqualConv2d(nn.Module):
    """A conv layer with the equalised learning rate; same padding for odd kernels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale, self.padding = 1 / math.sqrt(c_in * kernel * kernel), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """x / sqrt(mean over channels of x^2 + eps): dim 1 of (B, C, ...) or (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MinibatchStdDev(nn.Module):
    """One extra channel: the std of each feature over groups of ``group`` examples, averaged over
    features and pixels (Karras et al. 2018, section 3). (B, C, H, W) -> (B, C + 1, H, W)."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(min(self.group, b), b)  # a group size that divides the batch
        y = x.float().view(g, -1, c, h, w)  # (G, B/G, C, H, W): example i is in group i % (B/G)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/G,)
        y = y.to(x.dtype).repeat(g).view(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv: w' = w * s (per input channel, s from the style through an affine
    layer, bias 1), demodulated by 1 / sqrt(sum w'^2) per output channel (when ``demodulate``).
    (B, C_in, H, W), style (B, w_dim) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.scale, self.padding, self.demodulate = 1 / math.sqrt(c_in * kernel * kernel), kernel // 2, demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)  # (B, C_in)
        weight = self.weight * self.scale  # (O, I, k, k)
        out = F.conv2d(x * s[:, :, None, None], weight, padding=self.padding)  # (B, O, H, W)
        if self.demodulate:  # sum over (I, k, k) of (w * s)^2 = (sum_k w^2) @ s^2
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (B, O)
            out = out * d[:, :, None, None]
        return out


class NoiseInput(nn.Module):
    """Per-pixel noise (B, 1, H, W) added with a learned per-channel strength (starts at 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.size(0), 1, x.size(2), x.size(3), device=x.device, dtype=x.dtype)
        return x + self.strength * noise.to(x.dtype)


class ProgressiveDiscriminator(nn.Module):
    """ProGAN's critic over ``resolutions(size)``. ``stage`` i (0: 4x4) takes images at the i-th
    resolution; with ``alpha`` < 1 (fading in stage i) the input also goes, downsampled, through the
    previous stage's fromRGB, and the two paths are blended (1 - alpha, alpha) after block i.
    (B, C, r, r) -> (B,) one logit each."""

    def __init__(self, size: int, channels: int, width: int, mbstd_group: int = 4):
        super().__init__()
        self.res = resolutions(size)
        ch = widths(size, width)
        self.from_rgb = nn.ModuleList([EqualConv2d(channels, ch[r], 1) for r in self.res])
        # blocks[i] takes resolution res[i] to res[i - 1] (blocks[0]: the 4x4 head is separate)
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.Sequential(EqualConv2d(ch[r], ch[r], 3), nn.LeakyReLU(0.2), EqualConv2d(ch[r], ch[p], 3),
                          nn.LeakyReLU(0.2)) for p, r in zip(self.res[:-1], self.res[1:])])
        c4 = ch[4]
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.head_conv = EqualConv2d(c4 + 1, c4, 3)
        self.head_fc = EqualLinear(c4 * 16, c4)
        self.out = EqualLinear(c4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, stage: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        stage = len(self.res) - 1 if stage is None else stage
        act = nn.functional.leaky_relu
        h = act(self.from_rgb[stage](x), 0.2)
        for i in range(stage, 0, -1):
            h = resize(self.blocks[i](h), self.res[i - 1])
            if i == stage and alpha < 1.0:  # fade in: the previous stage's path on the downsampled image
                low = act(self.from_rgb[i - 1](resize(x, self.res[i - 1])), 0.2)
                h = torch.lerp(low, h, alpha)
        h = act(self.head_conv(self.mbstd(h)), 0.2)  # (B, C4, 4, 4)
        h = act(self.head_fc(h.flatten(1)), 0.2)
        return self.out(h).squeeze(1)


class ProgressiveGenerator(nn.Module):
    """ProGAN's generator over ``resolutions(size)``: z (pixel-normed) -> a dense layer to 4x4 and a 3x3
    conv; then per resolution nearest upsampling and two 3x3 convs, each with LeakyReLU(0.2) and pixel
    norm; a toRGB (1x1 conv) at every resolution. ``stage`` i makes images at the i-th resolution; with
    ``alpha`` < 1 (stage i fading in) the image is (1 - alpha) x the previous stage's toRGB, upsampled,
    plus alpha x this stage's. ``full``: the image upsampled (nearest) to the full size.
    ``stage`` / ``alpha`` default to the attributes of the same names (the model sets them)."""

    def __init__(self, latent_dim: int, size: int, channels: int, width: int):
        super().__init__()
        self.res, self.size = resolutions(size), size
        ch = widths(size, width)
        c4 = ch[4]
        self.norm = PixelNorm()
        self.dense = EqualLinear(latent_dim, c4 * 16)
        self.conv4 = EqualConv2d(c4, c4, 3)
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.ModuleList([EqualConv2d(ch[p], ch[r], 3), EqualConv2d(ch[r], ch[r], 3)])
            for p, r in zip(self.res[:-1], self.res[1:])])
        self.to_rgb = nn.ModuleList([EqualConv2d(ch[r], channels, 1) for r in self.res])
        self.stage, self.alpha = len(self.res) - 1, 1.0

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.leaky_relu(x, 0.2))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, stage: int | None = None,
                alpha: float | None = None, full: bool = True) -> torch.Tensor:
        stage = self.stage if stage is None else stage
        alpha = self.alpha if alpha is None else alpha
        h = self._act(self.dense(self.norm(z)).view(z.size(0), -1, 4, 4))
        h = self._act(self.conv4(h))  # (B, C4, 4, 4)
        prev = h
        for i in range(1, stage + 1):
            prev = h
            block = self.blocks[i]
            assert isinstance(block, nn.ModuleList)
            h = resize(h, self.res[i])
            for conv in block:
                h = self._act(conv(h))
        img = self.to_rgb[stage](h)
        if stage > 0 and alpha < 1.0:  # fade in: the lower resolution's image, upsampled, blended
            img = torch.lerp(resize(self.to_rgb[stage - 1](prev), self.res[stage]), img, alpha)
        return resize(img, self.size) if full else img
