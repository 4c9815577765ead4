"""PixelCNN's networks: convolutions that see only the pixels before the one they predict.

Two architectures, both autoregressive over the pixels in raster order (row by row, left to right):

- ``PlainPixelCNN``, the book's (Foster, *Generative Deep Learning*, 2nd ed., ch. 5; van den Oord,
  Kalchbrenner and Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"): a k x k convolution whose
  kernel is masked (``MaskedConv2d``): type A, the first layer, zeroes the centre and everything after
  it; type B, the later layers, keeps the centre (a feature at (i, j) already sees only pixels before
  (i, j)). Stacked masked 3 x 3 convolutions have a *blind spot*: the receptive field of (i, j) grows
  by one column to the right per row up, so pixels above and far to the right are never seen.
- ``GatedPixelCNN`` (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu 2016,
  "Conditional Image Generation with PixelCNN Decoders"): two stacks. The *vertical* stack sees the
  rows strictly above (a (k//2 [+1]) x k kernel, padded above: type A excludes the current row, type
  B adds the current row of features that themselves see only rows above); the *horizontal* stack
  sees the pixels to the left in the current row (a 1 x (k//2 [+1]) kernel, padded on the left). Each
  layer links the vertical stack's pre-activations into the horizontal one (a 1 x 1 convolution),
  gates both with tanh(a) * sigmoid(b), and adds a residual connection in the horizontal stack. The
  vertical stack's field covers whole rows above, so there is no blind spot.

The masks of the gated stacks are expressed as kernel shape and one-sided padding: the zeros of a
masked k x k kernel are never stored nor computed. Both networks take (B, 1, H, W) pixels in [-1, 1]
and add a channel of ones (zero in the padding) so that they know where the border is; they return
(B, L, H, W) logits of the L grey levels of each pixel.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def with_border(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 2, H, W): the pixels and a channel of ones (the padding's zeros mark the border)."""
    return torch.cat([x, torch.ones_like(x)], 1)


def draw(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B,) level ids drawn from (B, L) logits with uniform draws ``u`` (B,): the inverse of the CDF."""
    cdf = torch.softmax(logits.float(), 1).cumsum(1)
    return (cdf < u[:, None].to(cdf.dtype)).sum(1).clamp(max=logits.size(1) - 1)


def to_pixels(q: torch.Tensor, levels: int) -> torch.Tensor:
    """Level ids 0..L-1 -> values in [-1, 1] (the network's input)."""
    return q.float() * (2.0 / (levels - 1)) - 1.0


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution ("same" padding) whose kernel is zero at the centre's row after the centre
    and at every row below it; type A also at the centre. One input group (grey images)."""

    mask: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel: int, mask_type: str):
        if mask_type not in ("A", "B") or kernel % 2 == 0:
            raise ValueError(f"a masked convolution needs type A or B and an odd kernel, got {mask_type}, {kernel}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        c = kernel // 2
        mask = torch.ones(out_channels, in_channels, kernel, kernel, dtype=torch.bool)
        mask[:, :, c, c + (mask_type == "B"):] = False  # the centre row: after the centre (and A: the centre)
        mask[:, :, c + 1:] = False  # every row below the centre
        self.register_buffer("mask", mask)  # saved with the weights
        self.mask_type = mask_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class BookResidualBlock(nn.Module):
    """The book's residual block: 1 x 1 to half the width, a masked 3 x 3 (type B), 1 x 1 back, ReLUs, + input."""

    def __init__(self, width: int, kernel: int, dropout: float):
        super().__init__()
        half = max(1, width // 2)
        self.conv1 = nn.Conv2d(width, half, 1)
        self.pixel_conv = MaskedConv2d(half, half, kernel, "B")
        self.conv2 = nn.Conv2d(half, width, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.pixel_conv(F.relu(self.conv1(x))))
        return x + F.relu(self.conv2(self.drop(y)))


def _head(width: int, head: int, levels: int) -> nn.Sequential:
    """ReLU, 1 x 1, ReLU, 1 x 1 to the L logits (a 1 x 1 convolution is a type B mask of size 1)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(width, head, 1), nn.ReLU(), nn.Conv2d(head, levels, 1))


class PlainPixelCNN(nn.Module):
    """The book's PixelCNN: masked k x k type A, residual blocks with masked 3 x 3 type B, a 1 x 1 head."""

    def __init__(self, levels: int, width: int, layers: int, first_kernel: int = 7, kernel: int = 3,
                 head: int = 64, dropout: float = 0.0):
        super().__init__()
        self.levels = levels
        self.first = MaskedConv2d(2, width, first_kernel, "A")
        self.blocks = nn.ModuleList(BookResidualBlock(width, kernel, dropout) for _ in range(layers))
        self.head = _head(width, head, levels)
        self.reach = first_kernel // 2 + layers * (kernel // 2)  # rows up and columns either side it can see

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [-1, 1] -> (B, L, H, W) logits; those of (i, j) depend on pixels before (i, j) only."""
        h = F.relu(self.first(with_border(x)))
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    @torch.no_grad()
    def sample(self, u: torch.Tensor, tick: Callable[[], object] = lambda: None) -> torch.Tensor:
        """(B, H, W) level ids drawn pixel by pixel in raster order from uniform draws ``u`` (B, H, W).

        One forward per pixel for the whole batch, on the window the pixel's logits depend on (``reach``
        rows up, ``reach`` columns either side): the same logits as the whole image gives, at less cost."""
        b, hgt, wid = u.shape
        x = torch.zeros(b, 1, hgt, wid, device=u.device)
        q = torch.zeros(b, hgt, wid, dtype=torch.long, device=u.device)
        r = self.reach
        for i in range(hgt):
            top = max(0, i - r)
            for j in range(wid):
                left, right = max(0, j - r), min(wid, j + r + 1)
                logits = self(x[:, :, top:i + 1, left:right])[:, :, -1, j - left]  # (B, L)
                q[:, i, j] = draw(logits, u[:, i, j])
                x[:, 0, i, j] = to_pixels(q[:, i, j], self.levels)
                tick()
        return q


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


class VerticalConv(nn.Module):
    """Rows above (type A: strictly above; type B: above and the current row) x k columns centred."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, first: bool):
        super().__init__()
        self.p, self.first = kernel // 2, first
        self.conv = nn.Conv2d(in_channels, out_channels, (self.p if first else self.p + 1, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, (self.p, self.p, self.p, 0)))  # output row o sees rows o-p .. o (A: .. o-1)
        return y[:, :, :-1] if self.first else y  # A: H + 1 rows, the last one sees the last row: dropped


class HorizontalConv(nn.Module):
    """The current row, columns to the left (type A: strictly left; type B: and the current column)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, first: bool):
        super().__init__()
        self.p, self.first = kernel // 2, first
        self.conv = nn.Conv2d(in_channels, out_channels, (1, self.p if first else self.p + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, (self.p, 0, 0, 0)))
        return y[..., :-1] if self.first else y


class GatedLayer(nn.Module):
    """One gated layer: vertical conv -> gate; horizontal conv + link(vertical pre-activations) -> gate
    -> 1 x 1 (+ the horizontal input, except in the first layer, whose input is the pixel itself)."""

    def __init__(self, in_channels: int, width: int, kernel: int, first: bool, dropout: float):
        super().__init__()
        self.v = VerticalConv(in_channels, 2 * width, kernel, first)
        self.h = HorizontalConv(in_channels, 2 * width, kernel, first)
        self.link = nn.Conv2d(2 * width, 2 * width, 1)  # vertical -> horizontal
        self.out = nn.Conv2d(width, width, 1)
        self.drop = nn.Dropout(dropout)
        self.residual = not first

    def vertical(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.v(v)  # (B, 2W, H, W)
        return _gate(pre), pre

    def horizontal(self, h: torch.Tensor, v_pre: torch.Tensor) -> torch.Tensor:
        y = self.out(self.drop(_gate(self.h(h) + self.link(v_pre))))
        return h + y if self.residual else y


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN: a first gated layer of type A (kernel ``first_kernel``), ``layers`` of type B."""

    def __init__(self, levels: int, width: int, layers: int, first_kernel: int = 7, kernel: int = 3,
                 head: int = 64, dropout: float = 0.0):
        super().__init__()
        self.levels = levels
        self.layers = nn.ModuleList([GatedLayer(2, width, first_kernel, True, dropout)]
                                    + [GatedLayer(width, width, kernel, False, dropout) for _ in range(layers)])
        self.head = _head(width, head, levels)
        self.reach = first_kernel // 2 + layers * (kernel // 2)  # rows up (vertical) and columns left it sees

    def gated(self) -> list[GatedLayer]:
        return list(self.layers)  # type: ignore[arg-type]

    def vertical(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The vertical stack's pre-activations of every layer (what each links into the horizontal stack)."""
        v, pres = with_border(x), []
        for layer in self.gated():
            v, pre = layer.vertical(v)
            pres.append(pre)
        return pres

    def horizontal(self, x: torch.Tensor, pres: list[torch.Tensor]) -> torch.Tensor:
        h = with_border(x)
        for layer, pre in zip(self.gated(), pres):
            h = layer.horizontal(h, pre)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [-1, 1] -> (B, L, H, W) logits; those of (i, j) depend on pixels before (i, j) only."""
        return self.horizontal(x, self.vertical(x))

    @torch.no_grad()
    def sample(self, u: torch.Tensor, tick: Callable[[], object] = lambda: None) -> torch.Tensor:
        """(B, H, W) level ids drawn pixel by pixel in raster order from uniform draws ``u`` (B, H, W).

        The vertical stack sees only rows above, so it runs once per row (on the ``reach`` rows above);
        the horizontal stack and the head run once per pixel for the whole batch, on the ``reach``
        columns to its left. Both windows are what the logits depend on: the same as the whole image's."""
        b, hgt, wid = u.shape
        x = torch.zeros(b, 1, hgt, wid, device=u.device)
        q = torch.zeros(b, hgt, wid, dtype=torch.long, device=u.device)
        r = self.reach
        for i in range(hgt):
            pres = [p[:, :, -1:] for p in self.vertical(x[:, :, max(0, i - r):i + 1])]  # (B, 2W, 1, W) each
            for j in range(wid):
                left = max(0, j - r)
                logits = self.horizontal(x[:, :, i:i + 1, left:j + 1], [p[..., left:j + 1] for p in pres])
                q[:, i, j] = draw(logits[:, :, 0, -1], u[:, i, j])
                x[:, 0, i, j] = to_pixels(q[:, i, j], self.levels)
                tick()
        return q
