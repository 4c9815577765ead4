"""GAN networks: the textbook MLPs and the DCGAN conv stacks, optionally label-conditioned.

Objectives (BCE, least squares, Wasserstein with clipping or a gradient penalty, hinge) live in
``sozo.nn.adversarial`` and work on any of these: WGAN and WGAN-GP are the DCGAN networks with another loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.blocks import CondResBlockUp, ResBlockDown, ResBlockUp, SelfAttention, activation, norm2d


def conv_start(size: int) -> int | None:
    """Spatial size of the first generator feature map: 7 for 7*2^k (28, 56…), 4 for 2^k >= 8."""
    for s0 in (4, 7):
        k = math.log2(size / s0) if size >= s0 else -1
        if k >= 1 and k == int(k):
            return s0
    return None


def conv_sizes() -> list[int]:
    return [14, 16, 28, 32, 56, 64, 112, 128, 256]


class PointConvTranspose2d(nn.ConvTranspose2d):
    """A ConvTranspose2d (stride 1, no padding) that, on a 1x1 input, is one matrix product: the
    latent (B, C) times the weight as (C, kh*kw*O), laid out as a channels-last (B, O, kh, kw)
    without a copy. The same parameters and function as the layer it replaces; on other inputs,
    the convolution. (On one CPU thread, DCGAN-28's first layer 100 -> 128x4x4 forward + backward
    took 28-31 ms as a convolution, 10 ms as the product.)"""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (x.shape[-2:] != (1, 1) or output_size is not None or self.stride != (1, 1) or self.padding != (0, 0)
                or self.output_padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1):
            return super().forward(x, output_size)
        kh, kw = self.kernel_size
        w = self.weight.permute(0, 2, 3, 1).reshape(self.in_channels, -1)  # (C, kh*kw*O)
        y = (x.flatten(1) @ w).view(-1, kh, kw, self.out_channels).permute(0, 3, 1, 2)  # (B, O, kh, kw)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class WholeConv2d(nn.Conv2d):
    """A Conv2d (stride 1, no padding) whose kernel covers its whole input: one matrix product of the
    flattened input with the flattened weight, (B, O, 1, 1). The same parameters and function as the
    layer it replaces; on other inputs, the convolution. (DCGAN-28's last critic layer 128x4x4 -> 1,
    forward + backward on one CPU thread: 6-7.5 ms as a convolution, 1-1.7 ms as the product.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (tuple(x.shape[-2:]) != self.kernel_size or self.stride != (1, 1) or self.padding != (0, 0)
                or self.dilation != (1, 1) or self.groups != 1 or self.padding_mode != "zeros"):
            return super().forward(x)
        if x.is_contiguous(memory_format=torch.channels_last):  # flatten (h, w, c): a view of x
            h, w = x.permute(0, 2, 3, 1).flatten(1), self.weight.permute(0, 2, 3, 1).flatten(1)
        else:
            h, w = x.flatten(1), self.weight.flatten(1)
        return F.linear(h, w, self.bias)[:, :, None, None]  # (B, O, 1, 1)


class MLPGenerator(nn.Module):
    """z (B, latent) [+ label embedding] -> hidden layers -> (B, C, H, W) in [-1, 1] (Tanh)."""

    def __init__(self, latent_dim: int, hidden: list[int], shape: tuple[int, int, int],
                 batchnorm: bool, num_classes: int = 0, embed_dim: int = 0, slope: float = 0.2):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        layers: list[nn.Module] = []
        width = latent_dim + (embed_dim if num_classes else 0)
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(width, h))
            if batchnorm and i > 0:  # no norm on the first layer (as in the deep MLP GAN)
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.LeakyReLU(slope, inplace=True))
            width = h
        layers += [nn.Linear(width, math.prod(shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, latent + embed)
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    """(B, C, H, W) [+ label embedding] -> hidden layers with dropout -> (B,) logits
    (``first_bias=False``: the first layer without a bias, as the GAN chapter prints it)."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], dropout: float,
                 num_classes: int = 0, embed_dim: int = 0, slope: float = 0.2, first_bias: bool = True):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        layers: list[nn.Module] = []
        width = math.prod(shape) + (embed_dim if num_classes else 0)
        for i, h in enumerate(hidden):
            layers += [nn.Linear(width, h, bias=first_bias or i > 0), nn.LeakyReLU(slope, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)  # (B, C*H*W)
        if self.embed is not None:
            h = torch.cat([h, self.embed(y)], dim=1)
        return self.net(h).view(-1)


class ConvGenerator(nn.Module):
    """DCGAN generator. ``layout="chapter"`` (the GAN chapter's, as it prints it): z -> 4x4x4w, then
    for 7*2^k sizes a 3x3 stride-2 layer to 7x7, then 4x4 stride-2 doublings, the last one to C (Tanh);
    w=32 at 28x28 gives 100-128-64-32-1, no bias, batch norm. ``layout="sozo"`` (sozo's first network,
    kept as ``preset=wide``): 28x28: z -> 7x7x4w -> 14x14x2w -> 28x28xw -> C (3x3 conv, Tanh). At 2^k
    sizes both are z -> 4x4x(w*2^(k-3)) -> ... -> size/2 x w -> size x C."""

    def __init__(self, latent_dim: int, size: int, channels: int, width: int, norm: str = "batch",
                 act: str = "leaky", num_classes: int = 0, embed_dim: int = 0, layout: str = "sozo"):
        super().__init__()
        s0 = conv_start(size)
        if s0 is None:
            raise ValueError(f"unsupported image size {size}")
        n_up = int(math.log2(size / s0))
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_ch = latent_dim + (embed_dim if num_classes else 0)
        if layout == "chapter" and s0 == 7:  # 4 -> 7 (k3 s2 p1) -> 14 -> ... -> size, the last to C
            widths = [width * 2 ** (n_up - i) for i in range(n_up + 1)]  # 28: [128, 64, 32]
            layers: list[nn.Module] = [PointConvTranspose2d(in_ch, widths[0], 4, 1, 0, bias=False),
                                       norm2d(norm, widths[0]), activation(act)]  # (B, 4w, 4, 4)
            kernels = [3] + [4] * (n_up - 1)
            for k, a, b in zip(kernels, widths[:-1], widths[1:]):
                layers += [nn.ConvTranspose2d(a, b, k, 2, 1, bias=False), norm2d(norm, b), activation(act)]
            layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
            self.net = nn.Sequential(*layers)
            return
        n_hidden = n_up if s0 == 7 else n_up - 1  # upsampling layers that keep hidden widths
        widths = [width * 2 ** (n_hidden - i) for i in range(n_hidden + 1)]  # e.g. [128, 64, 32]
        bias = layout != "chapter"
        layers = [PointConvTranspose2d(in_ch, widths[0], s0, 1, 0, bias=False),
                  norm2d(norm, widths[0]), activation(act)]  # (B, w0, s0, s0)
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), norm2d(norm, b), activation(act)]
        if s0 == 7:
            layers.append(nn.ConvTranspose2d(widths[-1], channels, 3, 1, 1))  # same size, to C
        else:
            layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=bias))  # last doubling, to C
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(z[:, :, None, None])  # (B, C, H, W)


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator/critic: strided convs doubling width until 4x4, then a 4x4 conv to one logit
    (``bias=False``: no bias anywhere, as the GAN chapter prints it; else on the first and last layers).

    A conditional critic gets the label as one extra input plane (an embedding reshaped to HxW).
    """

    def __init__(self, size: int, channels: int, width: int, norm: str = "batch",
                 num_classes: int = 0, bias: bool = True):
        super().__init__()
        self.size = size
        self.embed = nn.Embedding(num_classes, size * size) if num_classes else None
        in_ch = channels + (1 if num_classes else 0)
        layers: list[nn.Module] = []
        s, c_in, c_out, first = size, in_ch, width, True
        while s > 4:
            k = 4 if s % 2 == 0 else 3  # 28 -> 14 -> 7 -> 4 ; 64 -> 32 -> 16 -> 8 -> 4
            layers.append(nn.Conv2d(c_in, c_out, k, 2, 1, bias=bias and (first or norm == "none")))
            if not first:  # no norm on the input layer (DCGAN)
                layers.append(norm2d(norm, c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            s = (s + 2 - k) // 2 + 1
            c_in, c_out, first = c_out, c_out * 2, False
        layers.append(WholeConv2d(c_in, 1, s, 1, 0, bias=bias))  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            plane = self.embed(y).view(-1, 1, self.size, self.size).to(x.dtype)
            x = torch.cat([x, plane], dim=1)
        return self.net(x).view(-1)  # (B,)


class StandardDiscriminator(nn.Module):
    """The "standard CNN" critic of SNGAN (Miyato et al. 2018, table 3b): at each resolution a 3x3
    stride-1 conv then a stride-2 conv (4x4; 3x3 from an odd size: 28 -> 14 -> 7 -> 4) doubling the
    width (w, w, 2w, 2w, 4w, 4w for 32 and 28 px), LeakyReLU 0.1, a 3x3 conv to 8w at 4x4, then one
    linear layer to the logit. No normalisation: spectral norm goes on top."""

    def __init__(self, size: int, channels: int, width: int, slope: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        s, c_in, c = size, channels, width
        while s > 4:
            k = 4 if s % 2 == 0 else 3
            layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.LeakyReLU(slope, inplace=True),
                       nn.Conv2d(c, c, k, 2, 1), nn.LeakyReLU(slope, inplace=True)]
            s = (s + 2 - k) // 2 + 1
            c_in, c = c, c * 2
        layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.LeakyReLU(slope, inplace=True), WholeConv2d(c, 1, s, 1, 0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).view(-1)  # (B,)


class ToMap(nn.Module):
    """z (B, L) -> (B, C, s, s) by one linear layer (the ResNet generator's input)."""

    def __init__(self, latent_dim: int, channels: int, size: int):
        super().__init__()
        self.shape = (channels, size, size)
        self.linear = nn.Linear(latent_dim, channels * size * size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1)).view(-1, *self.shape)


class SumPool(nn.Module):
    """ReLU then the sum over the spatial positions (the SNGAN ResNet critic's pooling): (B, C, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).sum(dim=(2, 3))


class ResNetGenerator(nn.Module):
    """SNGAN's ResNet generator (Miyato et al. 2018, appendix B, for 32 px: z -> 4x4x256, three up
    blocks, BN, ReLU, 3x3 conv, Tanh) at any 2^k or 7*2^k size: z -> s0 x s0 x C (s0 = 4 or 7),
    up blocks of width C doubling to the size, BN, ReLU, 3x3 conv to the image's channels, Tanh."""

    def __init__(self, latent_dim: int, size: int, channels: int, width: int):
        super().__init__()
        s0 = conv_start(size)
        if s0 is None:
            raise ValueError(f"unsupported image size {size}")
        n_up = int(math.log2(size / s0))
        self.net = nn.Sequential(ToMap(latent_dim, width, s0), *[ResBlockUp(width, width) for _ in range(n_up)],
                                 nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.Conv2d(width, channels, 3, 1, 1),
                                 nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)  # (B, C, H, W)


class ResNetDiscriminator(nn.Module):
    """SNGAN's ResNet critic (for 32 px: an optimised first down block, a down block, two plain blocks of
    128, ReLU, global sum pooling, linear): down blocks of width C until the map is at most 8x8
    (28 -> 14 -> 7, 32 -> 16 -> 8), two plain blocks, ReLU, sum pooling, a linear layer to the logit."""

    def __init__(self, size: int, channels: int, width: int):
        super().__init__()
        blocks: list[nn.Module] = [ResBlockDown(channels, width, first=True)]
        s = (size + 1) // 2
        while s > 8:
            blocks.append(ResBlockDown(width, width))
            s = (s + 1) // 2
        blocks += [ResBlockDown(width, width, down=False), ResBlockDown(width, width, down=False)]
        self.net = nn.Sequential(*blocks, SumPool(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).view(-1)  # (B,)


class BigGANGenerator(nn.Module):
    """BigGAN's generator (Brock et al. 2019) on SNGAN's ResNet layout: a shared class embedding and
    hierarchical latents. z (B, L) is cut into one chunk for the input layer and one per up block
    (``torch.tensor_split``: near-equal chunks); the first chunk -> s0 x s0 x C by a linear layer; each
    up block's two batch norms take their gain and bias from [its z chunk, shared embedding(y)]
    (class-conditional BN); then BN, ReLU, 3x3 conv, Tanh. (B, L), (B,) -> (B, channels, size, size)."""

    def __init__(self, latent_dim: int, size: int, channels: int, width: int, num_classes: int, embed_dim: int):
        super().__init__()
        s0 = conv_start(size)
        if s0 is None:
            raise ValueError(f"unsupported image size {size}")
        n_up = int(math.log2(size / s0))
        if latent_dim < n_up + 1:
            raise ValueError(f"latent_dim {latent_dim} cannot be cut into {n_up + 1} chunks")
        self.chunks = n_up + 1
        dims = [len(c) for c in torch.tensor_split(torch.arange(latent_dim), self.chunks)]
        self.shared = nn.Embedding(num_classes, embed_dim)  # one embedding shared by every block
        self.input = ToMap(dims[0], width, s0)
        self.blocks = nn.ModuleList([CondResBlockUp(width, width, d + embed_dim) for d in dims[1:]])
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.Conv2d(width, channels, 3, 1, 1),
                                 nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        assert y is not None, "BigGAN's generator is class-conditional"
        first, *rest = torch.tensor_split(z, self.chunks, dim=1)
        e = self.shared(y)  # (B, E)
        h = self.input(first)  # (B, C, s0, s0)
        for block, zc in zip(self.blocks, rest):
            h = block(h, torch.cat([zc, e], dim=1))  # cond (B, L_i + E)
        return self.out(h)  # (B, C, H, W)


class ProjectionDiscriminator(ResNetDiscriminator):
    """SNGAN's ResNet critic with the projection of Miyato & Koyama (2018), as BigGAN uses it: the pooled
    features h (B, C) give ``linear(h) + <embed(y), h>``, so the class enters as an inner product
    with a learned class vector rather than as an input plane."""

    def __init__(self, size: int, channels: int, width: int, num_classes: int):
        super().__init__(size, channels, width)
        self.embed = nn.Embedding(num_classes, width)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        assert y is not None, "the projection critic is class-conditional"
        h = self.net[:-1](x)  # (B, C) after the blocks and sum pooling
        return self.net[-1](h).view(-1) + (self.embed(y) * h).sum(1)  # (B,)


def map_sizes(net: nn.Sequential, example: torch.Tensor) -> list[int]:
    """The spatial size of each layer's output of ``net`` on ``example`` (0 for outputs that are not maps)."""
    sizes = []
    h = example
    was = net.training
    net.eval()  # batch norm's running statistics stay as they are
    try:
        with torch.no_grad():
            for m in net:
                h = m(h)
                sizes.append(h.size(-1) if h.dim() == 4 else 0)
    finally:
        net.train(was)
    return sizes


def attention_sizes(g_sizes: list[int], d_sizes: list[int], size: int) -> list[int]:
    """The resolutions a self-attention block can go at: below the image size, in both networks' maps."""
    return sorted({s for s in g_sizes if 0 < s < size} & {s for s in d_sizes if 0 < s < size})


def insert_attention(net: nn.Sequential, example: torch.Tensor, res: int) -> SelfAttention:
    """Put a SelfAttention block into ``net`` after the last layer whose output map is ``res`` x ``res``;
    returns the block."""
    sizes = map_sizes(net, example)
    i = max(j for j, s in enumerate(sizes) if s == res)
    was = net.training
    net.eval()
    with torch.no_grad():
        h = net[: i + 1](example)
    net.train(was)
    block = SelfAttention(h.size(1))
    layers = list(net)
    layers.insert(i + 1, block)
    net._modules.clear()  # refill in place, so the names stay 0, 1, 2… in order
    for j, m in enumerate(layers):
        net.add_module(str(j), m)
    return block
