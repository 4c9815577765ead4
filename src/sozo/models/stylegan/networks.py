"""StyleGAN's generator: a mapping network, a constant input, modulated convolutions, noise inputs.

The synthesis network runs over ``resolutions(size)`` (32 px: 4, 8, 16, 32; 28 px: 4, 7, 14, 28),
two modulated 3x3 convs per resolution (bilinear upsampling before the first, except at 4x4 where the
first takes the learned constant), each followed by its noise input, a bias and LeakyReLU(0.2) x sqrt 2;
a toRGB (a modulated 1x1 conv, not demodulated) at every resolution, summed up through bilinear
upsampling (StyleGAN2's skip generator). Conv ``j`` (0-based) takes style ``j``; toRGB at resolution
``i`` takes style ``2i + 1``. So there are ``2 * len(resolutions)`` styles per image.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...nn.progressive import EqualLinear, ModulatedConv2d, NoiseInput, PixelNorm, resize, resolutions, widths

GAIN = math.sqrt(2)  # LeakyReLU's gain: keeps the activations' scale with equalised weights


class MappingNetwork(nn.Module):
    """z (B, latent) -> w (B, w_dim): pixel norm, then ``layers`` equalised dense layers at ``lr_mul``."""

    def __init__(self, latent_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        dims = [latent_dim] + [w_dim] * layers
        self.norm = PixelNorm()
        self.layers = nn.ModuleList([EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.norm(z)
        for layer in self.layers:
            h = nn.functional.leaky_relu(layer(h), 0.2) * GAIN
        return h


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise, bias, LeakyReLU: (B, C_in, r, r), w (B, w_dim) -> (B, C_out, r, r)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, w_dim)
        self.noise = NoiseInput(c_out)
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.leaky_relu(self.noise(self.conv(x, w), noise) + self.bias, 0.2) * GAIN


class ToRGB(nn.Module):
    def __init__(self, c_in: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias


class StyleGenerator(nn.Module):
    """z (B, latent) -> images (B, C, size, size). ``w_avg`` (a buffer) follows the mean of w in
    training (decay ``w_avg_beta``): the centre that truncation pulls towards. In training, each image
    mixes two latents' styles with probability ``mixing`` (at a random crossover layer)."""

    w_avg: torch.Tensor

    def __init__(self, latent_dim: int, w_dim: int, mapping_layers: int, size: int, channels: int, width: int,
                 lr_mul: float = 0.01, mixing: float = 0.9, w_avg_beta: float = 0.995):
        super().__init__()
        self.res = resolutions(size)
        ch = widths(size, width)
        self.latent_dim, self.mixing, self.w_avg_beta = latent_dim, mixing, w_avg_beta
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, lr_mul)
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        convs: list[nn.Module] = []
        c_prev = ch[4]
        for r in self.res:
            convs += [StyledConv(c_prev, ch[r], w_dim), StyledConv(ch[r], ch[r], w_dim)]
            c_prev = ch[r]
        self.convs = nn.ModuleList(convs)
        self.to_rgb = nn.ModuleList([ToRGB(ch[r], channels, w_dim) for r in self.res])
        self.num_ws = len(self.convs)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """The (1, r, r) shape of each conv's noise, in order."""
        return [(1, r, r) for r in self.res for _ in range(2)]

    def styles(self, z: torch.Tensor, truncation: float | None = None) -> torch.Tensor:
        """Per-layer styles (B, num_ws, w_dim): w = mapping(z) at every layer, mixed with a second
        latent's in training, pulled towards ``w_avg`` by ``truncation`` psi (w_avg + psi (w - w_avg))."""
        w = self.mapping(z)  # (B, w_dim)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)  # (B, L, w_dim)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().float().mean(0), 1.0 - self.w_avg_beta)
            if self.mixing > 0:  # per image, no host sync: crossover L (no mixing) unless drawn below p
                b = z.size(0)
                w2 = self.mapping(torch.randn_like(z))
                cut = torch.randint(1, self.num_ws, (b,), device=z.device)
                cut = torch.where(torch.rand(b, device=z.device) < self.mixing, cut, torch.full_like(cut, self.num_ws))
                first = torch.arange(self.num_ws, device=z.device)[None, :] < cut[:, None]  # (B, L)
                ws = torch.where(first[:, :, None], ws, w2.unsqueeze(1))
        if truncation is not None and truncation != 1.0:
            ws = torch.lerp(self.w_avg.to(ws.dtype), ws, truncation)
        return ws

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images (B, C, size, size) from styles (B, num_ws, w_dim); ``noise``: one (B or 1, 1, r, r)
        map per conv (None: fresh draws from the global RNG)."""
        x = self.const.expand(ws.size(0), -1, -1, -1)
        rgb: torch.Tensor | None = None
        for i, r in enumerate(self.res):
            x = resize(x, r, "bilinear")
            for j in (2 * i, 2 * i + 1):
                n = noise[j].expand(x.size(0), -1, -1, -1) if noise is not None else None
                x = self.convs[j](x, ws[:, j], n)
            out = self.to_rgb[i](x, ws[:, 2 * i + 1])
            rgb = out if rgb is None else resize(rgb, r, "bilinear") + out
        assert rgb is not None
        return rgb

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, truncation: float | None = None,
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.synthesis(self.styles(z, truncation), noise)


def style_bands(n_res: int) -> dict[str, list[int]]:
    """Which resolutions (indices into ``resolutions``) are coarse, middle and fine, as in the StyleGAN
    paper's figure 3 (1024 px: 4-8, 16-32, 64-1024): the first two, the next two (at most, leaving the
    last out), the rest. 32 px: 4-8 / 16 / 32; 28 px: 4-7 / 14 / 28; 64 px: 4-8 / 16-32 / 64."""
    coarse = list(range(min(2, max(1, n_res - 2))))
    middle = list(range(len(coarse), max(len(coarse), min(len(coarse) + 2, n_res - 1))))
    fine = list(range(len(coarse) + len(middle), n_res))
    return {"coarse": coarse, "middle": middle, "fine": fine}
