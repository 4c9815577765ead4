"""RealNVP's invertible layers (torch only: no sozo imports).

Every layer maps ``x -> (y, logdet)`` with ``logdet`` the (B,) log |det dy/dx| per example, in fp32,
and has an exact ``inverse(y) -> x``. The s and t networks may run under bf16 autocast; their
outputs are cast to fp32 before the affine map, so log-determinants are always summed in fp32.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

Wrap = Callable[[], contextlib.AbstractContextManager]  # the model's autocast (or nothing)


def _null() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _per_channel(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``v`` (C,) shaped to broadcast over ``x`` (B, C) or (B, C, H, W)."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


def _pixels(x: torch.Tensor) -> int:
    """Positions per channel: H * W for images, 1 for vectors."""
    return int(math.prod(x.shape[2:])) if x.dim() > 2 else 1


class ActNorm(nn.Module):
    """Per-channel affine y = (x + loc) * exp(log_scale) (Glow), initialised from the first training
    batch so that its output has zero mean and unit variance per channel. The initialisation is a
    ``torch.where`` on the ``initialized`` buffer (no host sync), and the buffer travels with the weights."""

    initialized: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _init(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            mean = x.mean(dims)
            std = x.std(dims, unbiased=False) if x.shape[0] * _pixels(x) > 1 else torch.ones_like(mean)
            self.loc.copy_(torch.where(self.initialized, self.loc, -mean))
            self.log_scale.copy_(torch.where(self.initialized, self.log_scale, -torch.log(std + 1e-6)))
            self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self._init(x)
        y = (x + _per_channel(x, self.loc)) * _per_channel(x, self.log_scale.exp())
        return y, (self.log_scale.sum() * _pixels(x)).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * _per_channel(y, (-self.log_scale).exp()) - _per_channel(y, self.loc)


class FlowBatchNorm(nn.Module):
    """Batch normalisation as a flow layer (RealNVP's choice). Training: the batch's statistics (and
    their log-determinant, which depends on the batch); eval: the running averages, a fixed affine map,
    so log_prob and sampling in eval mode are one exact invertible function."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, momentum: float = 0.05, eps: float = 1e-4):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        dims = [0, *range(2, x.dim())]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
        return mean, var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = self._stats(x)
        log_s = self.log_gamma - 0.5 * torch.log(var + self.eps)  # (C,)
        y = (x - _per_channel(x, mean)) * _per_channel(x, log_s.exp()) + _per_channel(x, self.beta)
        return y, (log_s.sum() * _pixels(x)).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        log_s = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        return (y - _per_channel(y, self.beta)) * _per_channel(y, (-log_s).exp()) + _per_channel(y, self.running_mean)


Norm = ActNorm | FlowBatchNorm


def make_norm(kind: str, channels: int) -> Norm | None:
    if kind == "actnorm":
        return ActNorm(channels)
    if kind == "batchnorm":
        return FlowBatchNorm(channels)
    return None


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ConvST(nn.Module):
    """The s and t of a coupling on images: conv 3x3 -> ResNet blocks -> conv 3x3 to 2 x ``out``
    channels, the last conv zero-initialised (every coupling starts as the identity)."""

    def __init__(self, inp: int, out: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(inp, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, 2 * out, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a conv made with bias=True has one

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.blocks(self.inp(h))))


class MLPST(nn.Module):
    """The s and t of a coupling on vectors (the 2-D toy): an MLP with ``layers`` ReLU layers."""

    def __init__(self, dim: int, width: int, layers: int):
        super().__init__()
        mods: list[nn.Module] = []
        d = dim
        for _ in range(layers):
            mods += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*mods)
        self.out = nn.Linear(d, 2 * dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(h))


class MaskedCoupling(nn.Module):
    """Affine coupling with a binary mask m (a checkerboard on images, alternate coordinates on vectors):
    y = m * x + (1 - m) * (x * exp(s(m x)) + t(m x)), s = scale * tanh(raw s) per channel.
    log |det| = sum of (1 - m) * s. The masked part is passed to the net (images: with the mask as an
    extra channel, so the net knows which positions it sees)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor, net: nn.Module, channels: int, with_mask_channel: bool):
        super().__init__()
        self.register_buffer("mask", mask.float())  # (1, 1, H, W) or (1, D)
        self.net = net
        self.scale = nn.Parameter(torch.ones(channels))
        self.with_mask_channel = with_mask_channel

    def _st(self, xm: torch.Tensor, wrap: Wrap) -> tuple[torch.Tensor, torch.Tensor]:
        inp = torch.cat([xm, self.mask.expand(xm.shape[0], 1, *xm.shape[2:])], 1) if self.with_mask_channel else xm
        with wrap():
            h = self.net(inp)
        raw_s, t = h.float().chunk(2, dim=1)
        keep = 1.0 - self.mask
        s = _per_channel(raw_s, self.scale) * torch.tanh(raw_s) * keep
        return s, t * keep

    def forward(self, x: torch.Tensor, wrap: Wrap = _null) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x * self.mask, wrap)
        return x * s.exp() + t, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, wrap: Wrap = _null) -> torch.Tensor:
        s, t = self._st(y * self.mask, wrap)  # y * m == x * m: the net sees what it saw going forwards
        return (y - t) * (-s).exp()


class ChannelCoupling(nn.Module):
    """Affine coupling across channels: one half of the channels (``flip`` chooses which) conditions
    the other, y_b = x_b * exp(s(x_a)) + t(x_a)."""

    def __init__(self, channels: int, width: int, blocks: int, flip: bool):
        super().__init__()
        self.na = channels // 2
        self.nb = channels - self.na
        self.flip = flip
        cond, moved = (self.nb, self.na) if flip else (self.na, self.nb)
        self.net = ConvST(cond, moved, width, blocks)
        self.scale = nn.Parameter(torch.ones(moved))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, :self.na], x[:, self.na:]
        return (b, a) if self.flip else (a, b)  # (conditioning half, moved half)

    def _join(self, cond: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        return torch.cat([moved, cond] if self.flip else [cond, moved], 1)

    def _st(self, cond: torch.Tensor, wrap: Wrap) -> tuple[torch.Tensor, torch.Tensor]:
        with wrap():
            h = self.net(cond)
        raw_s, t = h.float().chunk(2, dim=1)
        return _per_channel(raw_s, self.scale) * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor, wrap: Wrap = _null) -> tuple[torch.Tensor, torch.Tensor]:
        cond, moved = self._split(x)
        s, t = self._st(cond, wrap)
        return self._join(cond, moved * s.exp() + t), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, wrap: Wrap = _null) -> torch.Tensor:
        cond, moved = self._split(y)
        s, t = self._st(cond, wrap)
        return self._join(cond, (moved - t) * (-s).exp())


class FlowStep(nn.Module):
    """A normalisation layer (actnorm, batch norm or none) then a coupling."""

    norm: Norm | None
    coupling: MaskedCoupling | ChannelCoupling

    def __init__(self, norm: Norm | None, coupling: MaskedCoupling | ChannelCoupling):
        super().__init__()
        self.norm = norm
        self.coupling = coupling

    def forward(self, x: torch.Tensor, wrap: Wrap = _null) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.zeros(x.shape[0], device=x.device)
        if self.norm is not None:
            x, ld = self.norm(x)
        y, ld2 = self.coupling(x, wrap)
        return y, ld + ld2

    def inverse(self, y: torch.Tensor, wrap: Wrap = _null) -> torch.Tensor:
        x = self.coupling.inverse(y, wrap)
        return self.norm.inverse(x) if self.norm is not None else x


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block of a channel becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


def checkerboard(h: int, w: int, parity: int) -> torch.Tensor:
    """(1, 1, H, W) mask, 1 where (i + j) % 2 == parity."""
    ij = torch.arange(h)[:, None] + torch.arange(w)[None, :]
    return ((ij % 2) == parity).float().view(1, 1, h, w)


class MultiScaleFlow(nn.Module):
    """RealNVP's multi-scale architecture (Dinh et al. 2017, section 3.6). Each of ``scales`` levels:
    ``couplings`` checkerboard couplings, a squeeze, ``couplings`` channel couplings, then half the
    channels are factored out (they are latents from here on); the last level gets ``couplings + 1``
    checkerboard couplings and no squeeze. 28 px digits with 2 scales: 1x28x28 -> 4x14x14 (2 out) ->
    8x7x7 (4 out) -> 4x7x7 at the end."""

    def __init__(self, channels: int, size: int, scales: int, couplings: int, width: int, blocks: int, norm: str):
        super().__init__()
        self.levels = nn.ModuleList()
        self.shapes: list[tuple[int, int, int]] = []  # the factored-out latents' shapes, last = the final one
        c, s = channels, size
        for level in range(scales + 1):
            last = level == scales
            checker = nn.ModuleList([
                FlowStep(make_norm(norm, c), MaskedCoupling(checkerboard(s, s, i % 2), ConvST(c + 1, c, width, blocks),
                                                            c, with_mask_channel=True))
                for i in range(couplings + (1 if last else 0))])
            mods = nn.ModuleDict({"checker": checker})
            if not last:
                mods["channel"] = nn.ModuleList([
                    FlowStep(make_norm(norm, 4 * c), ChannelCoupling(4 * c, width, blocks, flip=i % 2 == 1))
                    for i in range(couplings)])
                c, s = 4 * c, s // 2
                self.shapes.append((c - c // 2, s, s))
                c = c // 2
            else:
                self.shapes.append((c, s, s))
            self.levels.append(mods)

    def forward(self, x: torch.Tensor, wrap: Wrap = _null) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x (B, C, H, W) -> (latents, one per entry of ``shapes``; logdet (B,))."""
        ld = torch.zeros(x.shape[0], device=x.device)
        zs = []
        for level in self.levels:
            mods = cast(nn.ModuleDict, level)
            for step in cast(nn.ModuleList, mods["checker"]):
                x, d = step(x, wrap)
                ld = ld + d
            if "channel" in mods:
                x = squeeze(x)
                for step in cast(nn.ModuleList, mods["channel"]):
                    x, d = step(x, wrap)
                    ld = ld + d
                keep = x.shape[1] // 2
                zs.append(x[:, keep:])
                x = x[:, :keep]
        zs.append(x)
        return zs, ld

    def inverse(self, zs: list[torch.Tensor], wrap: Wrap = _null) -> torch.Tensor:
        x = zs[-1]
        for i in range(len(self.levels) - 1, -1, -1):
            mods = cast(nn.ModuleDict, self.levels[i])
            if "channel" in mods:
                x = torch.cat([x, zs[i]], 1)
                for step in reversed(cast(nn.ModuleList, mods["channel"])):
                    x = cast(FlowStep, step).inverse(x, wrap)
                x = unsqueeze(x)
            for step in reversed(cast(nn.ModuleList, mods["checker"])):
                x = cast(FlowStep, step).inverse(x, wrap)
        return x


class VectorFlow(nn.Module):
    """A coupling flow on D-dimensional points (the 2-D toy): ``couplings`` MLP couplings with
    alternating coordinate masks, each after a normalisation layer, and one more at the end."""

    final: Norm | None

    def __init__(self, dim: int, couplings: int, width: int, layers: int, norm: str):
        super().__init__()
        masks = [(torch.arange(dim) % 2 == i % 2).float().view(1, dim) for i in range(couplings)]
        self.steps = nn.ModuleList([FlowStep(make_norm(norm, dim), MaskedCoupling(m, MLPST(dim, width, layers), dim,
                                                                                  with_mask_channel=False))
                                    for m in masks])
        self.final = make_norm(norm, dim)

    def forward(self, x: torch.Tensor, wrap: Wrap = _null) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.zeros(x.shape[0], device=x.device)
        for step in self.steps:
            x, d = step(x, wrap)
            ld = ld + d
        if self.final is not None:
            x, d = self.final(x)
            ld = ld + d
        return x, ld

    def inverse(self, z: torch.Tensor, wrap: Wrap = _null) -> torch.Tensor:
        x = self.final.inverse(z) if self.final is not None else z
        for step in reversed(self.steps):
            x = cast(FlowStep, step).inverse(x, wrap)
        return x


def standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """(B,) log N(z; 0, I) summed over all but the first dimension, in fp32."""
    z = z.float().flatten(1)
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * math.log(2 * math.pi))
