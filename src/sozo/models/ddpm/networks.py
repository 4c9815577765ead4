"""The DDPM U-Net (Ho, Jain and Abbeel 2020): residual blocks with group norm and a sinusoidal
time embedding, self-attention at the lowest resolution(s), skip connections between the two
halves; optionally a class embedding (with one extra "null" class for classifier-free guidance).

torch only: no sozo imports.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features (the Transformer's positional encoding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _zero(conv: nn.Module) -> None:
    """Zero a conv's weight and bias (a residual branch that starts as nothing)."""
    for p in conv.parameters():
        nn.init.zeros_(p)


def groups_for(ch: int, most: int = 32) -> int:
    """The largest group count <= ``most`` that divides ``ch`` (32 in the paper)."""
    return next(g for g in range(min(most, ch), 0, -1) if ch % g == 0)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the time (and class) embedding as a per-channel shift, twice; a
    1x1 conv on the skip path when the width changes."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups_for(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups_for(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        _zero(self.conv2)  # each block starts as the identity (as the paper's code)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, cout, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups_for(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        _zero(self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # (B, HW, C) each
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps (or v) of noisy images x_t (B, C, H, W) at timesteps t (B,), given class ids y (B,) or None.

    ``mults`` sets the levels: width ``base * m`` at level i, each level but the last halving the
    size (28 -> 14 -> 7 for (1, 2, 2)); ``attn_levels`` are the levels (0 = full size) with
    self-attention after each residual block; the middle always has one.
    """

    def __init__(self, channels: int, base: int = 32, mults: tuple[int, ...] = (1, 2, 2), blocks: int = 1,
                 attn_levels: tuple[int, ...] = (2,), dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        self.base = base
        emb_dim = 4 * base
        self.time = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # num_classes + 1 rows: the last is the "no label" class of classifier-free guidance
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.num_classes = num_classes
        self.stem = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base]
        ch = base
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(nn.ModuleList([ResBlock(ch, base * m, emb_dim, dropout),
                                                AttnBlock(base * m) if i in attn_levels else nn.Identity()]))
                ch = base * m
                skips.append(ch)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # halve (ceil for odd sizes)
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch),
                                  ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(ch + skips.pop(), base * m, emb_dim, dropout),
                                              AttnBlock(base * m) if i in attn_levels else nn.Identity()]))
                ch = base * m
            if i > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))  # after a nearest-neighbour upsampling
        self.out = nn.Sequential(nn.GroupNorm(groups_for(ch), ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))
        _zero(self.out[-1])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.base))  # (B, 4 base)
        if self.label is not None:
            if y is None:  # unconditional: the null class
                y = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label(y)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, emb))
            else:
                h = layer(h)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], dim=1), emb))
            else:  # up to the size of the skip that comes next (odd sizes: 7 -> 14, 4 -> 7…)
                h = layer(F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
        return self.out(h)
