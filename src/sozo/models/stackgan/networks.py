"""StackGAN's networks (Zhang et al. 2017): a text encoder, conditioning augmentation, the two
generators and their text-conditioned critics, and the image encoder that trains the text encoder.

Sizes: Stage I makes ``s1``-px images (the final size over ``upscale``: 14 for 28 px digits), Stage II
``size``-px ones from Stage I's image and the text. Every critic takes the text embedding (B, T)
through its own linear layer, tiled over its last map (StackGAN's matching-aware critic).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class TextEncoder(nn.Module):
    """Word embeddings + a bidirectional GRU; the sentence is its two final states joined:
    tokens (B, L) int64 (0 = padding, at least one token each) -> (B, text_dim)."""

    def __init__(self, vocab_size: int, text_dim: int, word_dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.rnn = nn.GRU(word_dim, text_dim // 2, batch_first=True, bidirectional=True)
        self.text_dim = 2 * (text_dim // 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (2, B, H): the forward state after the last word, the backward after the first
        return torch.cat([h[0], h[1]], dim=1)  # (B, text_dim)


class ImageEncoder(nn.Module):
    """A small conv net mapping real images to the text embedding's space (B, C, H, W) -> (B, text_dim):
    the text encoder is trained by matching captions to their images (a contrastive loss) with it."""

    def __init__(self, channels: int, width: int, text_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, text_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CondAugment(nn.Module):
    """Conditioning augmentation: the text embedding (B, T) -> mu, log sigma^2 of a diagonal Gaussian
    (B, D) each, by one linear layer and a GLU-free split (StackGAN's ``CA_NET`` uses ReLU there; a
    plain linear layer lets mu take both signs). ``forward`` samples c = mu + sigma * eps and returns
    (c, mu, logvar); ``kl`` is KL(N(mu, sigma^2) || N(0, I)) in closed form."""

    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.fc = nn.Linear(text_dim, 2 * dim)

    def forward(self, e: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(e).chunk(2, dim=1)
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps, mu, logvar

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) summed over the dimensions, averaged over the batch:
        0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()


def _up(c_in: int, c_out: int, size: int) -> list[nn.Module]:
    """Nearest upsampling to ``size``, a 3x3 conv, batch norm, ReLU (StackGAN's upBlock)."""
    return [nn.Upsample(size=(size, size), mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _up_to_image(c: int, s: int, n_up: int, channels: int) -> nn.Sequential:
    """``n_up`` up blocks from a (c, s, s) map, each doubling the side and halving the channels, then a 3x3
    conv to ``channels`` and Tanh: the image end of both stages' generators."""
    layers: list[nn.Module] = []
    for _ in range(n_up):
        s *= 2
        layers += _up(c, c // 2, s)
        c //= 2
    return nn.Sequential(*layers, nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh())


def _start(size: int) -> int:
    """The first map's side: size / 2^k as small as possible but at least 4 (7 for 28, 4 for 32)."""
    s = size
    while s % 2 == 0 and s // 2 >= 4:
        s //= 2
    return s


class Stage1Generator(nn.Module):
    """[z, c] (B, L + D) -> linear -> (8w, s0, s0) -> up blocks halving the width to ``size`` -> 3x3 conv
    to the channels, Tanh: the low-resolution image from text and noise."""

    def __init__(self, latent_dim: int, cond_dim: int, size: int, channels: int, width: int):
        super().__init__()
        s0 = _start(size)
        n_up = int(round(math.log2(size / s0)))
        c0 = width * 2 ** n_up
        self.shape = (c0, s0, s0)
        self.fc = nn.Sequential(nn.Linear(latent_dim + cond_dim, c0 * s0 * s0, bias=False),
                                nn.BatchNorm1d(c0 * s0 * s0), nn.ReLU(inplace=True))
        self.net = _up_to_image(c0, s0, n_up, channels)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(torch.cat([z, c], 1)).view(-1, *self.shape))  # (B, C, s1, s1)


class ResBlock(nn.Module):
    """3x3 conv, BN, ReLU, 3x3 conv, BN, plus the input, ReLU (Stage II's residual blocks)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Stage2Generator(nn.Module):
    """Stage I's image (B, C, s1, s1) and c (B, D) -> ``size`` px: encode the image (3x3 conv, then a
    stride-2 conv when s1 is even), join c tiled over the map, a 3x3 conv, residual blocks, up blocks to
    ``size``, 3x3 conv, Tanh (StackGAN's Stage II, at sizes that suit the digits)."""

    def __init__(self, cond_dim: int, s1: int, size: int, channels: int, width: int, n_res: int = 2):
        super().__init__()
        down = s1 % 2 == 0 and s1 // 2 >= 4
        s_enc = s1 // 2 if down else s1
        n_up = int(round(math.log2(size / s_enc)))
        if s_enc * 2 ** n_up != size:
            raise ValueError(f"Stage II cannot go from {s1} to {size} px")
        c = width * 2 ** n_up  # 28 from 14: 4w at 7x7, then 2w, w
        enc: list[nn.Module] = [nn.Conv2d(channels, c // 2, 3, 1, 1), nn.ReLU(inplace=True)]
        if down:
            enc += [nn.Conv2d(c // 2, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        else:
            enc += [nn.Conv2d(c // 2, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.encode = nn.Sequential(*enc)
        self.joint = nn.Sequential(nn.Conv2d(c + cond_dim, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                   nn.ReLU(inplace=True), *[ResBlock(c) for _ in range(n_res)])
        self.up = _up_to_image(c, s_enc, n_up, channels)

    def forward(self, image: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.encode(image)  # (B, 4w, s, s)
        tiled = c[:, :, None, None].expand(-1, -1, h.size(2), h.size(3))
        return self.up(self.joint(torch.cat([h, tiled], 1)))  # (B, C, size, size)


class TextCritic(nn.Module):
    """Strided 4x4 convs (LeakyReLU 0.2, batch norm after the first) doubling the width down to a map of
    at most 7 px; the text embedding (B, T) -> linear -> LeakyReLU (B, E), tiled and joined; a 3x3 conv,
    then one conv over the whole map to the logit (B,)."""

    def __init__(self, size: int, channels: int, width: int, text_dim: int, embed_dim: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        s, c_in, c = size, channels, width
        while s > 7:
            k = 4 if s % 2 == 0 else 3
            layers += [nn.Conv2d(c_in, c, k, 2, 1, bias=False)]
            if c_in != channels:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            s = (s + 2 - k) // 2 + 1
            c_in, c = c, 2 * c
        if not layers:  # a small image: one 3x3 conv
            layers = [nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.text = nn.Sequential(nn.Linear(text_dim, embed_dim), nn.LeakyReLU(0.2, inplace=True))
        self.joint = nn.Sequential(nn.Conv2d(c_in + embed_dim, c_in, 3, 1, 1, bias=False), nn.BatchNorm2d(c_in),
                                   nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(c_in, 1, s, 1, 0))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, C, s, s)
        t = self.text(e)[:, :, None, None].expand(-1, -1, h.size(2), h.size(3))
        return self.joint(torch.cat([h, t], 1)).view(-1)  # (B,)
