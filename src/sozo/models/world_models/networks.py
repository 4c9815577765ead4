"""The world model's three networks (Ha & Schmidhuber 2018): V, a convolutional VAE of the frames;
M, an MDN-RNN (an LSTM with a mixture of Gaussians per z dimension, and a done head); C, a linear
controller on [z, h]. Torch only: no sozo imports."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class ConvVAE(nn.Module):
    """Frames (B, 3, S, S) in [0, 1] -> z (B, Z) -> frames. Stride-2 4x4 convolutions halve the size
    down to 4x4 (the paper's 32-64-128-256 at 64x64 pixels), deconvolutions back up to S."""

    def __init__(self, size: int, z_dim: int, channels: list[int]):
        super().__init__()
        if size != 4 * 2 ** len(channels):
            raise ValueError(f"{len(channels)} stride-2 layers take {4 * 2 ** len(channels)}-pixel frames, not {size}")
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.ReLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())  # (B, C * 4 * 4)
        flat = channels[-1] * 16
        self.mu = nn.Linear(flat, z_dim)
        self.logvar = nn.Linear(flat, z_dim)
        self.expand = nn.Linear(z_dim, flat)
        back: list[nn.Module] = []
        rev = list(reversed(channels))
        for c_in, c_out in zip(rev, rev[1:] + [3]):
            back += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        back[-1] = nn.Sigmoid()
        self.decoder = nn.Sequential(*back)
        self.top = channels[-1]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-12.0, 8.0)  # (B, Z) each

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.expand(z)).view(len(z), self.top, 4, 4)
        return self.decoder(h)  # (B, 3, S, S) in [0, 1]


def mdn_nll(target: torch.Tensor, logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor) -> torch.Tensor:
    """Exact negative log-likelihood of ``target`` (..., Z) under a mixture of K Gaussians per dimension:
    -log sum_k pi_k N(x; mu_k, sigma_k), with logpi / mu / logsigma (..., Z, K), logpi log-softmaxed over K.
    Returns (..., Z) nats."""
    x = target.unsqueeze(-1)  # (..., Z, 1)
    log_normal = -0.5 * ((x - mu) / logsigma.exp()) ** 2 - logsigma - LOG_SQRT_2PI  # (..., Z, K)
    return -torch.logsumexp(logpi + log_normal, dim=-1)


def sample_mdn(logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor, temperature: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per dimension (B, Z) from the mixtures (B, Z, K), at ``temperature`` as in the paper: the
    mixture weights' logits divided by it, each Gaussian's sigma times its square root."""
    probs = F.softmax(logpi / temperature, dim=-1)  # (B, Z, K)
    b, z, k = probs.shape
    u = torch.rand(b, z, 1, generator=generator, device="cpu").to(probs.device)
    comp = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=k - 1)  # (B, Z, 1) inverse-CDF pick
    m = mu.gather(-1, comp).squeeze(-1)
    s = logsigma.gather(-1, comp).squeeze(-1).exp() * math.sqrt(temperature)
    eps = torch.randn(b, z, generator=generator, device="cpu").to(probs.device)
    return m + s * eps


class MDNRNN(nn.Module):
    """(z_t, a_t) -> LSTM -> a mixture of K Gaussians for each dimension of z_{t+1}, and the logit of
    the episode ending at t+1 (the done head)."""

    def __init__(self, z_dim: int, action_dim: int, hidden: int, gaussians: int):
        super().__init__()
        self.z_dim, self.k, self.hidden = z_dim, gaussians, hidden
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_dim * gaussians + 1)

    def mixture(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """LSTM outputs (..., H) -> logpi, mu, logsigma (..., Z, K) and the done logit (...)."""
        p = self.head(out)
        zk = self.z_dim * self.k
        shape = (*out.shape[:-1], self.z_dim, self.k)
        logpi = F.log_softmax(p[..., :zk].reshape(shape), dim=-1)
        mu = p[..., zk:2 * zk].reshape(shape)
        logsigma = p[..., 2 * zk:3 * zk].reshape(shape).clamp(-7.0, 3.0)
        return logpi, mu, logsigma, p[..., -1]

    def forward(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor]]:
        """z (B, T, Z), a (B, T, A) -> (the mixture of each step's next z and done logit, the LSTM state)."""
        out, state = self.lstm(torch.cat([z, a], -1), state)  # (B, T, H), one fused call over time
        return self.mixture(out), state

    def step(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
             ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor]]:
        """One step for a batch: z (B, Z), a (B, A); state ((1, B, H), (1, B, H)) or None."""
        (logpi, mu, logsigma, done), state = self(z[:, None], a[:, None], state)
        return (logpi[:, 0], mu[:, 0], logsigma[:, 0], done[:, 0]), state


    def advance(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the LSTM's next state for z (B, Z), a (B, A) (playing needs h, not the mixture)."""
        _, state = self.lstm(torch.cat([z, a], -1)[:, None], state)
        return state


class Controller(nn.Module):
    """a = tanh(W [z, h] + b): the only part trained by evolution (its parameters as one flat vector)."""

    def __init__(self, z_dim: int, hidden: int, action_dim: int):
        super().__init__()
        self.fc = nn.Linear(z_dim + hidden, action_dim)

    def size(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(torch.cat([z, h], -1)))


def batched_controller(params: torch.Tensor, z: torch.Tensor, h: torch.Tensor, action_dim: int) -> torch.Tensor:
    """Many controllers at once: ``params`` (B, P) flat (W row-major, then b), one per row of z (B, Z) and
    h (B, H) -> actions (B, A). The same as ``Controller`` with each row's parameters."""
    x = torch.cat([z, h], -1)  # (B, Z + H)
    d = x.shape[-1]
    w = params[:, :action_dim * d].view(-1, action_dim, d)
    b = params[:, action_dim * d:action_dim * d + action_dim]
    return torch.tanh(torch.bmm(w, x[:, :, None]).squeeze(-1) + b)
