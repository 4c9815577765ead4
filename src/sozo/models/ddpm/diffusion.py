"""The diffusion process and its samplers, as functions of a denoiser (torch only: no sozo imports).

Forward process (Ho et al. 2020): q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), with
abar_t = prod_{s<=t} (1 - beta_s) for t = 0..T-1 (index t here is the paper's t + 1).

- schedules: ``linear`` (beta from 1e-4 to 0.02 over T = 1000, scaled by 1000 / T for other T, as
  Nichol and Dhariwal 2021 do) and ``cosine`` (Nichol and Dhariwal 2021: abar_t = f(t) / f(0),
  f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, s = 0.008, betas clipped at 0.999);
- predictions: ``eps`` (the noise) or ``v`` = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans and
  Ho 2022); :func:`to_eps_x0` turns either into (eps, x_0);
- samplers over any increasing subsequence of the timesteps: :func:`ddim` (Song, Meng and Ermon
  2021; eta = 0 deterministic, eta = 1 the ancestral sampler's variance) and :func:`ancestral` (the
  DDPM posterior q(x_{t'} | x_t, x_0) with the respaced betas; on the full schedule it is Ho et
  al.'s sampler with sigma^2 = beta-tilde).

Noise comes from a CPU ``torch.Generator`` and is moved to the device, so a seed gives the same
images on any device.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch


def betas_for(schedule: str, timesteps: int) -> torch.Tensor:
    """(T,) float64 betas of the ``linear`` or ``cosine`` schedule."""
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {schedule!r}")


def alphas_bar(betas: torch.Tensor) -> torch.Tensor:
    """(T,) abar_t = prod_{s<=t} (1 - beta_s)."""
    return torch.cumprod(1 - betas, dim=0)


def _at(a: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """a[t] (B,) shaped to broadcast over x (B, ...), in x's dtype and device."""
    return a.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: a draw from q(x_t | x_0) (closed form)."""
    a = _at(abar, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def v_target(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
    a = _at(abar, t, x0)
    return a.sqrt() * eps - (1 - a).sqrt() * x0


def to_eps_x0(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, abar: torch.Tensor,
              prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, x_0) from a network's output ``out`` for x_t at t: an eps- or a v-prediction."""
    a = _at(abar, t, x_t)
    sa, s1 = a.sqrt(), (1 - a).sqrt()
    if prediction == "eps":
        eps = out
        x0 = (x_t - s1 * eps) / sa
    elif prediction == "v":  # x_t = sa x0 + s1 eps, v = sa eps - s1 x0, sa^2 + s1^2 = 1
        x0 = sa * x_t - s1 * out
        eps = s1 * x_t + sa * out
    else:
        raise ValueError(f"unknown prediction {prediction!r}")
    return eps, x0


def timesteps_for(steps: int, timesteps: int) -> list[int]:
    """``steps`` timesteps evenly spaced over 0..T-1, always including T-1 (descending order is
    the caller's): the DDIM paper's uniform skipping."""
    steps = max(1, min(steps, timesteps))
    if steps == timesteps:
        return list(range(timesteps))
    return sorted({round(i * (timesteps - 1) / (steps - 1)) for i in range(steps)} if steps > 1 else {timesteps - 1})


EpsX0 = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (x_t, t (B,)) -> (eps, x0)


def _noise(shape: torch.Size, gen: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(like.device, like.dtype)


@torch.no_grad()
def ddim(fn: EpsX0, x: torch.Tensor, abar: torch.Tensor, steps: list[int], eta: float = 0.0,
         gen: torch.Generator | None = None, clip: bool = True) -> torch.Tensor:
    """DDIM from x = x_T over the timesteps ``steps`` (increasing): x_{t'} = sqrt(abar') x0 +
    sqrt(1 - abar' - sigma^2) eps + sigma z, sigma = eta sqrt((1 - abar')/(1 - abar) (1 - abar/abar'))."""
    abar = abar.double()
    for i in reversed(range(len(steps))):
        t, prev = steps[i], steps[i - 1] if i > 0 else None
        tt = torch.full((len(x),), t, dtype=torch.long)
        eps, x0 = fn(x, tt)
        if clip:
            x0 = x0.clamp(-1, 1)
            a = float(abar[t])
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)  # the eps that goes with the clipped x0
        if prev is None:
            x = x0
            break
        a, ap = float(abar[t]), float(abar[prev])
        sigma = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        x = math.sqrt(ap) * x0 + math.sqrt(max(1 - ap - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _noise(x.shape, gen, x)
    return x


@torch.no_grad()
def ancestral(fn: EpsX0, x: torch.Tensor, abar: torch.Tensor, steps: list[int],
              gen: torch.Generator | None = None, clip: bool = True) -> torch.Tensor:
    """DDPM ancestral sampling from x = x_T: x_{t'} ~ q(x_{t'} | x_t, x0_hat), the Gaussian posterior
    with beta = 1 - abar_t / abar_{t'} (the respaced chain; Ho et al.'s on the full schedule)."""
    abar = abar.double()
    for i in reversed(range(len(steps))):
        t, prev = steps[i], steps[i - 1] if i > 0 else None
        tt = torch.full((len(x),), t, dtype=torch.long)
        _, x0 = fn(x, tt)
        if clip:
            x0 = x0.clamp(-1, 1)
        if prev is None:
            x = x0
            break
        a, ap = float(abar[t]), float(abar[prev])
        beta = 1 - a / ap
        mean = (math.sqrt(ap) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - ap) / (1 - a)) * x
        var = beta * (1 - ap) / (1 - a)  # beta-tilde
        x = mean + math.sqrt(var) * _noise(x.shape, gen, x)
    return x
