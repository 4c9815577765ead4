"""Neural style transfer (Gatys, Ecker & Bethge 2016): optimise the pixels of one image so that its
deep features match a content image at one layer and the Gram matrices of a style image at several.

Losses (images in [0, 1], features of the ImageNet-normalised image):

- content: mean squared difference of the features at the content layer (relu4_2 by default);
- style: for each style layer l, with F_l the (C, H*W) activations and G_l = F_l F_l^T / (C H W),
  the mean squared difference of G_l(x) and G_l(style), times that layer's weight;
- total variation: mean squared difference of neighbouring pixels (vertical + horizontal).

total = content_weight * content + style_weight * style + tv_weight * tv.

This is an optimisation of one image, not the training of a model on a data set, so it does not go
through the trainer (there are no weights, batches, epochs or checkpoints to resume); the loop is
the optimiser's own (L-BFGS's line of steps, or Adam).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import SozoError
from .features import Features


def gram(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) activations -> (B, C, C) Gram matrices divided by C*H*W."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def tv_loss(x: torch.Tensor, chroma: float = 4.0) -> torch.Tensor:
    """Mean squared difference of vertically and of horizontally neighbouring pixels (summed), in YIQ.

    The colour channels (I, Q) count ``chroma`` times as much as the luminance: photographs and
    paintings have fine detail in brightness but little in hue, so colour speckle is what to suppress.
    """
    y = rgb_to_yiq(x)
    dy = (y[..., 1:, :] - y[..., :-1, :]).pow(2).mean(dim=(0, 2, 3))  # (3,) per channel
    dx = (y[..., :, 1:] - y[..., :, :-1]).pow(2).mean(dim=(0, 2, 3))
    w = torch.tensor([1.0, chroma, chroma], device=x.device, dtype=x.dtype)
    return ((dy + dx) * w).sum() / 3


@dataclass
class Weights:
    content: float = 1.0
    style: float = 1e6
    tv: float = 1e-3
    content_layer: str = "relu4_2"
    style_layers: dict[str, float] = field(default_factory=lambda: {
        "relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0})


@dataclass
class Record:
    """Losses of one step (weighted, as they enter the total) and the seconds it took."""

    step: int
    content: float
    style: float
    tv: float
    total: float
    seconds: float
    style_layers: dict[str, float]


def sliced_distance(f: torch.Tensor, target_sorted: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein distance (squared) between the activations ``f`` (1, C, H, W) and a target's
    sorted projections (K, M) on the unit directions ``dirs`` (K, C); M may differ from H*W."""
    proj = dirs @ f[0].reshape(f.shape[1], -1)  # (K, H*W)
    proj, _ = proj.sort(dim=1)
    if target_sorted.shape[1] != proj.shape[1]:  # compare quantiles: resample the target's to this many
        target_sorted = F.interpolate(target_sorted[None], size=proj.shape[1], mode="linear", align_corners=True)[0]
    return (proj - target_sorted).pow(2).mean()


class Objective:
    """Content, style and TV losses against fixed targets; ``__call__(x)`` -> (total, parts).

    Every loss is relative: its squared error is divided by the target's mean square (for a Gram
    matrix) or variance (for a distribution), so the weights mean the same for any network — real
    VGG activations span orders of magnitude between layers — and any image size. A feature network
    may ask for a layer to be matched as a distribution (``net.sliced_layers``, e.g. the pixel colours
    of the random features) instead of by its Gram matrix: sliced Wasserstein, Heitz et al. 2021.
    """

    def __init__(self, net: Features, content: torch.Tensor, style: torch.Tensor, weights: Weights,
                 slices: int = 32, seed: int = 0):
        self.net, self.w = net, weights
        with torch.no_grad():
            fc = net(content)
            fs = net(style)
        self.content_target = fc[weights.content_layer].detach()
        self.content_scale = self.content_target.pow(2).mean().clamp(min=1e-12)
        sliced = set(getattr(net, "sliced_layers", ()))
        g = torch.Generator().manual_seed(seed)
        self.targets: dict[str, tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor]] = {}
        for n in weights.style_layers:
            f = fs[n].detach()
            if n in sliced:
                dirs = torch.randn(slices, f.shape[1], generator=g).to(f)
                dirs = dirs / dirs.norm(dim=1, keepdim=True)
                proj = (dirs @ f[0].reshape(f.shape[1], -1)).sort(dim=1).values  # (K, M)
                self.targets[n] = ("sliced", proj, dirs, proj.var(dim=1).mean().clamp(min=1e-12))
            else:
                t = gram(f)
                self.targets[n] = ("gram", t, None, t.pow(2).mean().clamp(min=1e-12))

    def _style(self, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n, (kind, target, dirs, scale) in self.targets.items():
            if kind == "sliced" and dirs is not None:  # (a sliced target has its directions)
                d = sliced_distance(f[n], target, dirs)
            else:
                d = F.mse_loss(gram(f[n]), target)
            out[n] = d / scale
        return out

    def style_distance(self, x: torch.Tensor) -> dict[str, float]:
        """Unweighted relative distance of ``x`` to the style, per style layer (a progress measure)."""
        with torch.no_grad():
            return {n: v.item() for n, v in self._style(self.net(x.clamp(0, 1))).items()}

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # the losses see the image as it will be saved (clamped to [0, 1]); this also keeps an L-BFGS
        # line search that tries a far-out step from overflowing the Gram matrices
        x = x.clamp(0, 1)
        f = self.net(x)
        content = F.mse_loss(f[self.w.content_layer], self.content_target) / self.content_scale
        per_layer = {n: self.w.style_layers[n] * v for n, v in self._style(f).items()}
        style = torch.stack(list(per_layer.values())).sum()
        tv = tv_loss(x)
        c, s, t = self.w.content * content, self.w.style * style, self.w.tv * tv
        total = c + s + t
        return total, {"content": c, "style": s, "tv": t,
                       **{f"style_{n}": self.w.style * v for n, v in per_layer.items()}}


@dataclass
class Outcome:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]: the image of the lowest total loss seen
    records: list[Record]
    interrupted: bool = False  # Ctrl-C stopped it early
    diverged: bool = False  # a non-finite loss stopped it early


def optimise(objective: Objective, init: torch.Tensor, steps: int, optimizer: str = "lbfgs", lr: float | None = None,
             on_step: Callable[[int, torch.Tensor, Record], None] | None = None) -> Outcome:
    """Minimise ``objective`` over the pixels of ``init`` (1, 3, H, W) in [0, 1] for ``steps`` evaluations.

    A step is one forward and backward pass. L-BFGS: one run of ``steps`` evaluations with a
    strong-Wolfe line search (lr 1), so the losses may rise for a trial step and fall again. Adam:
    ``steps`` updates (lr 0.02 by default). A Ctrl-C or a non-finite loss stops early; the image of
    the lowest total loss so far is returned either way.
    """
    x = init.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    records: list[Record] = []
    best: dict[str, Any] = {"loss": math.inf, "image": init.detach().clamp(0, 1).clone()}
    state: dict[str, Any] = {"t": time.perf_counter(), "bad": False, "stop": False}

    def evaluate() -> torch.Tensor:
        total, parts = objective(x)
        if not torch.isfinite(total):
            state["bad"] = True
            raise _Stop
        total.backward()
        now = time.perf_counter()
        rec = Record(step=len(records) + 1, content=parts["content"].item(), style=parts["style"].item(),
                     tv=parts["tv"].item(), total=total.item(), seconds=now - state["t"],
                     style_layers={k[6:]: v.item() for k, v in parts.items() if k.startswith("style_")})
        state["t"] = now
        records.append(rec)
        if rec.total < best["loss"]:
            best["loss"], best["image"] = rec.total, x.detach().clamp(0, 1).clone()
        if on_step is not None:
            on_step(rec.step, x.detach(), rec)
        return total

    interrupted = False
    try:
        if optimizer == "lbfgs":
            lbfgs = torch.optim.LBFGS([x], lr=1.0 if lr is None else lr, max_iter=steps, max_eval=steps,
                                      tolerance_grad=-1, tolerance_change=-1, history_size=50,
                                      line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                if len(records) >= steps:
                    raise _Stop
                lbfgs.zero_grad()
                return evaluate()
            lbfgs.step(closure)
        elif optimizer == "adam":
            adam = torch.optim.Adam([x], lr=0.02 if lr is None else lr)
            for _ in range(steps):
                adam.zero_grad()
                evaluate()
                adam.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
            # the last update is not yet measured: measure it so the returned image is the best one
            with torch.no_grad():
                total, _ = objective(x)
            if torch.isfinite(total) and total.item() < best["loss"]:
                best["loss"], best["image"] = total.item(), x.detach().clamp(0, 1).clone()
        else:
            raise SozoError(f"unknown optimizer '{optimizer}'", hint="use lbfgs or adam")
    except _Stop:
        pass
    except KeyboardInterrupt:
        interrupted = True
    if state["bad"] and not records:
        raise SozoError("the loss was not finite at the first step",
                        hint="lower --style-weight or --lr, or use --optimizer adam")
    return Outcome(best["image"], records, interrupted=interrupted, diverged=state["bad"])


class _Stop(Exception):
    """Ends an optimiser run from inside its closure."""


# --------------------------------------------------------------------------- colour

_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2YIQ).to(x), x)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 3, H, W) grey (Y repeated), the input of a luminance-only transfer."""
    return rgb_to_yiq(x)[:, :1].repeat(1, 3, 1, 1)


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and standard deviation."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp(min=1e-6)
    return ((style_y - s_mean) * (content_y.std() / s_std) + content_y.mean()).clamp(0, 1)


def recolour(result_grey: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content's chroma (I, Q): Gatys et al. 2016, colour preservation."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([rgb_to_yiq(result_grey)[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _sqrtm(c: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp(min=1e-8)
    return vecs @ torch.diag(vals.rsqrt() if inverse else vals.sqrt()) @ vecs.T


def match_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image's colours moved to the content's mean and covariance (a linear colour transfer)."""
    s = style[0].reshape(3, -1).double()
    c = content[0].reshape(3, -1).double()
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    cov_s = torch.cov(s) + 1e-5 * torch.eye(3, dtype=s.dtype)
    cov_c = torch.cov(c) + 1e-5 * torch.eye(3, dtype=s.dtype)
    a = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    out = a @ (s - mu_s) + mu_c
    return out.reshape(style.shape).to(style.dtype).clamp(0, 1)


def noise_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(x.shape, generator=g).to(x)


def seconds_per_step(records: list[Record]) -> float:
    """Median seconds of a step, the first (warm-up) left out when there are more."""
    times = sorted(r.seconds for r in (records[1:] if len(records) > 1 else records))
    return times[len(times) // 2] if times else math.nan
