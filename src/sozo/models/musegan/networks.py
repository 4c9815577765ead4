"""MuseGAN's networks (shapes in comments: B batch, K tracks, N bars, S steps a bar, P pitches, z latent)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MuseGANConfig


class TemporalNetwork(nn.Module):
    """(B, z) -> (B, N, z): one latent a bar, by transposed 1-D convs along time (Foster's design)."""

    def __init__(self, z: int, hidden: int, n_bars: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose1d(z, hidden, 2), nn.BatchNorm1d(hidden), nn.ReLU(),  # length 2
            nn.ConvTranspose1d(hidden, z, n_bars - 1), nn.BatchNorm1d(z), nn.ReLU())  # length n_bars

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.unsqueeze(-1)).transpose(1, 2)  # (B, N, z)


class ChannelNorm(nn.Module):
    """Batch norm over the last (channel) axis of a channels-last tensor: BatchNorm2d/3d's statistics."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.size(-1))).view(x.shape)


class BarGenerator(nn.Module):
    """(B, 4z) -> (B, S, P) in [-1, 1]: dense, 3 transposed convs doubling time, then pitch: octaves x 12.

    Every transposed conv of the book's bar generator has kernel == stride, so each is a linear map
    from one position's channels to (kernel x channels) outputs: written as nn.Linear on a
    channels-last tensor, the same function and parameters, 4-5x faster than ConvTranspose2d on a CPU.
    """

    def __init__(self, in_dim: int, channels: list[int], steps: int, n_pitches: int, output: str = "tanh"):
        super().__init__()
        c0, c1, c2, c3, c4 = channels
        self.output = output
        self.rows, self.c0, self.octaves = steps // 8, c0, n_pitches // 12
        self.dense = nn.Sequential(nn.Linear(in_dim, c0 * self.rows), nn.BatchNorm1d(c0 * self.rows), nn.ReLU())
        self.time = nn.ModuleList(nn.Linear(cin, 2 * cout) for cin, cout in ((c0, c1), (c1, c2), (c2, c3)))
        self.time_norm = nn.ModuleList(ChannelNorm(c) for c in (c1, c2, c3))
        self.octave = nn.Linear(c3, self.octaves * c4)
        self.octave_norm = ChannelNorm(c4)
        self.semitone = nn.Linear(c4, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.size(0)
        h = self.dense(x).view(B, self.rows, self.c0)  # (B, S/8, c0) channels last
        for lin, norm in zip(self.time, self.time_norm):
            h = lin(h).view(B, h.size(1) * 2, -1)  # (B, 2T, c): each step makes two
            h = F.relu(norm(h))
        h = self.octave(h).view(B, h.size(1), self.octaves, -1)  # (B, S, P/12, c4)
        h = F.relu(self.octave_norm(h))
        h = self.semitone(h).flatten(2)  # (B, S, P): pitch = octave * 12 + semitone
        if self.output == "softmax":  # one distribution over pitches per step, scaled to [-1, 1] like the data
            return 2 * torch.softmax(h.float(), -1).to(h.dtype) - 1
        return torch.tanh(h)


class Generator(nn.Module):
    """chords (B, z), style (B, z), melody (B, K, z), groove (B, K, z) -> (B, K, N, S, P) in [-1, 1]."""

    def __init__(self, c: MuseGANConfig):
        super().__init__()
        self.n_tracks, self.n_bars = c.n_tracks, c.n_bars
        self.chords_time = TemporalNetwork(c.z_dim, c.temporal_hidden, c.n_bars)
        self.melody_time = nn.ModuleList(TemporalNetwork(c.z_dim, c.temporal_hidden, c.n_bars)
                                         for _ in range(c.n_tracks))
        self.bars = nn.ModuleList(BarGenerator(4 * c.z_dim, c.g_channels, c.steps_per_bar, c.n_pitches, c.output)
                                  for _ in range(c.n_tracks))

    def forward(self, chords: torch.Tensor, style: torch.Tensor, melody: torch.Tensor,
                groove: torch.Tensor) -> torch.Tensor:
        B, N = chords.size(0), self.n_bars
        chords_t = self.chords_time(chords)  # (B, N, z)
        out = []
        for k in range(self.n_tracks):
            melody_t = self.melody_time[k](melody[:, k])  # (B, N, z)
            x = torch.cat([chords_t, style.unsqueeze(1).expand(-1, N, -1), melody_t,
                           groove[:, k].unsqueeze(1).expand(-1, N, -1)], -1)  # (B, N, 4z)
            out.append(self.bars[k](x.reshape(B * N, -1)).unflatten(0, (B, N)))  # (B, N, S, P)
        return torch.stack(out, 1)  # (B, K, N, S, P)


class Critic(nn.Module):
    """(B, K, N, S, P) -> (B,): the book's 3-D conv critic, collapsing bars, then pitch (an octave, then
    the octaves), then time (halving), then dense layers.

    Its convs have kernel == stride (or cover the whole axis), so each is written as nn.Linear over the
    channels of a patch of a channels-last tensor (the same function, far faster on a CPU, and cheap
    in the gradient penalty's double backward). The last two time layers are the book's padded
    kernel-4 and kernel-3 stride-2 convs.
    """

    def __init__(self, c: MuseGANConfig):
        super().__init__()
        ch, K = c.d_channels, c.n_tracks
        self.n_bars, self.octaves, self.diff = c.n_bars, c.n_pitches // 12, c.critic_diff
        K = 2 * K if self.diff else K  # the differences come in as extra channels
        self.bars1 = nn.Linear(2 * K, ch[0])  # kernel 2 over bars: N -> N-1
        self.bars2 = nn.Linear((c.n_bars - 1) * ch[0], ch[1])  # the remaining bars -> 1
        self.pitch1 = nn.Linear(12 * ch[1], ch[2])  # an octave -> 1: P -> P/12
        self.pitch2 = nn.Linear(self.octaves * ch[2], ch[3])  # the octaves -> 1
        halves, s, cin, i = [], c.steps_per_bar, ch[3], 4
        while s > 4:  # time halves until 4 steps (two layers for 16 steps, as in the book)
            cout = ch[min(i, 5)]
            halves.append(nn.Linear(2 * cin, cout))
            s, cin, i = s // 2, cout, i + 1
        self.time = nn.ModuleList(halves)
        self.time4 = nn.Linear(4 * cin, ch[6])  # kernel 4, stride 2, padding 1: 4 -> 2
        self.time2 = nn.Linear(2 * ch[6], ch[7])  # kernel 3, stride 2, padding 1 on 2 steps: -> 1
        self.dense = nn.Linear(ch[7], c.d_dense)
        self.out = nn.Linear(c.d_dense, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        B, K, N, S, P = x.shape
        if self.diff:  # x[t] - x[t-1] along the whole phrase (0 at the first step): onsets +2, offsets -2
            t = x.flatten(2, 3)
            d = torch.cat([torch.zeros_like(t[:, :, :1]), t[:, :, 1:] - t[:, :, :-1]], 2)
            x = torch.cat([x, d.view(B, K, N, S, P)], 1)
        h = x.permute(0, 2, 3, 4, 1)  # (B, N, S, P, K) channels last
        h = act(self.bars1(torch.cat([h[:, :-1], h[:, 1:]], -1)))  # (B, N-1, S, P, c)
        h = act(self.bars2(h.permute(0, 2, 3, 1, 4).flatten(3)))  # (B, S, P, c)
        h = act(self.pitch1(h.reshape(B, S, P // 12, -1)))  # (B, S, P/12, c)
        h = act(self.pitch2(h.flatten(2)))  # (B, S, c)
        for lin in self.time:
            h = act(lin(h.reshape(B, h.size(1) // 2, -1)))  # (B, T/2, c)
        h = F.pad(h, (0, 0, 1, 1)).unfold(1, 4, 2).flatten(2)  # (B, 2, c*4): the two padded windows
        h = act(self.time4(h))  # (B, 2, c)
        h = act(self.time2(h.flatten(1)))  # (B, c)
        return self.out(act(self.dense(h))).squeeze(1)
