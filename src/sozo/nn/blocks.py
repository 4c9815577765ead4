"""Small building blocks shared by the families."""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


# --- residual blocks and self-attention (SNGAN's ResNet networks, SAGAN) ----------------------------

class ResBlockUp(nn.Module):
    """A generator residual block (Miyato et al. 2018, appendix B; Gulrajani et al. 2017): BN, ReLU,
    nearest upsampling to ``size`` (twice the input's usually; 7 from 4 works too), 3x3 conv, BN, ReLU,
    3x3 conv; the shortcut upsamples and, when the widths differ, projects with a 1x1 conv.
    (B, C_in, H, W) -> (B, C_out, size, size)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        size = size or 2 * x.size(-1)
        h = F.interpolate(F.relu(self.bn1(x)), size=(size, size), mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.skip(F.interpolate(x, size=(size, size), mode="nearest"))


class ResBlockDown(nn.Module):
    """A critic residual block (Miyato et al. 2018): [ReLU], 3x3 conv, ReLU, 3x3 conv, [2x2 average
    pool]; the shortcut: 1x1 conv (when the widths differ or it pools) and the same pooling.
    ``first``: the network's first block (no ReLU before its first conv, the shortcut pools before its
    conv: the "optimized" block of the SNGAN code). No normalisation: spectral norm goes on top."""

    def __init__(self, c_in: int, c_out: int, down: bool = True, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else nn.Identity()

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2, ceil_mode=True) if self.down else x  # 7 -> 4 with ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        s = self.skip(self._pool(x)) if self.first else self._pool(self.skip(x))
        return h + s


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019): queries f(x) and keys g(x) (1x1 convs to C/8), values
    h(x) (1x1 to C/2), attention = softmax over key positions of q_i . k_j, output o(sum_j a_ij v_j)
    (1x1 back to C), added as x + gamma * out with a learned gamma that starts at 0 (so the block
    starts as the identity). ``keep``: keep the last attention (B, N, N), rows = query positions
    (row-major over H x W), for ``sozo sample --attention-map``."""

    def __init__(self, channels: int):
        super().__init__()
        k = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, k, 1, bias=False)
        self.key = nn.Conv2d(channels, k, 1, bias=False)
        self.value = nn.Conv2d(channels, max(channels // 2, 1), 1, bias=False)
        self.out = nn.Conv2d(max(channels // 2, 1), channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.keep = False
        self.attention: torch.Tensor | None = None

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the block's residual out (B, C, H, W) before gamma, the attention (B, N, N))."""
        b, c, hh, ww = x.shape
        q = self.query(x).flatten(2)  # (B, K, N)
        k = self.key(x).flatten(2)  # (B, K, N)
        v = self.value(x).flatten(2)  # (B, C/2, N)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N): row i sums to 1 over keys j
        o = (v @ attn.transpose(1, 2)).view(b, -1, hh, ww)  # (B, C/2, H, W)
        return self.out(o), attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o, attn = self.attend(x)
        self.attention = attn.detach() if self.keep else None
        return x + self.gamma * o


# --- class-conditional batch norm (BigGAN) -----------------------------------------------------------

class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine part, whose per-channel gain and bias are linear functions of
    a conditioning vector (BigGAN, Brock et al. 2019: the shared class embedding joined with this
    block's chunk of z): ``(1 + gain(cond)) * BN(x) + bias(cond)``; the gain starts at 1 because its
    linear layer starts near 0. (B, C, H, W), (B, D) -> (B, C, H, W)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        g = 1 + self.gain(cond)[:, :, None, None]  # (B, C, 1, 1)
        return self.bn(x) * g + self.bias(cond)[:, :, None, None]


class CondResBlockUp(ResBlockUp):
    """``ResBlockUp`` with class-conditional batch norm in place of both batch norms (BigGAN's G block):
    (B, C_in, H, W), cond (B, D) -> (B, C_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__(c_in, c_out)
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim)  # type: ignore[assignment]
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        size = 2 * x.size(-1)
        h = F.interpolate(F.relu(self.bn1(x, cond)), size=(size, size), mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, size=(size, size), mode="nearest"))
