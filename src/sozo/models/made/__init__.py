"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray, Larochelle 2015).

An autoencoder whose weights are masked so that output ``d`` sees only the pixels before ``d`` in a
fixed order: its D outputs are the logits of p(x_d = 1 | x_<d), and their product is an exact
likelihood, log p(x) = sum_d log p(x_d | x_<d), computed in one forward pass. Training minimises the
negative log-likelihood in nats per image (the Bernoulli cross-entropy summed over pixels); sampling
draws the pixels one at a time, one pass through the network per pixel for the whole batch.

This family is the worked example of docs/adding-a-family.md: one ordering (the natural raster
order by default; ``order=random`` draws a fixed permutation from ``mask_seed``), one set of masks
(no order-agnostic training, no mask ensembles), no direct input-to-output connections.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ...config import replace
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions
from ...registry import register_model
from ...viz.grid import save_grid
from ..images import (
    EXACT_NLL_ROWS,
    IMAGE_TABLE,
    ImageModel,
    exact_nll_measures,
    fit_image_config,
    heldout_nll_callback,
)
from .networks import MADENet

LIKELIHOOD = "made: exact -log p(x), Bernoulli conditionals in one fixed pixel order"


def _notes(results: list[dict[str, Any]]) -> list[str]:
    out = [LIKELIHOOD]
    if any(not d.get("binarized", True) for d in results):
        out.append("made, binarize=false: Bernoulli cross-entropy on grey levels x/255 "
                   "(not a likelihood of binary images)")
    return out


# the image league table with MADE's rows: the held-out likelihood (nats per image, and bits per pixel)
MADE_TABLE = IMAGE_TABLE.with_rows(
    *EXACT_NLL_ROWS, notes=_notes)


@dataclass
class MADEConfig:
    """Masks, networks and optimiser of a MADE. Sizes left at None follow the data."""

    preset: str = ""
    hidden: list[int] = field(default_factory=lambda: [500])  # widths of the masked ReLU layers
    order: Literal["natural", "random"] = "natural"  # natural: raster order of the flattened (C, H, W)
    mask_seed: int = 0  # seeds the hidden units' degrees (and the permutation of order=random)
    # pixels are 0/1 (threshold 0.5), as sampling feeds its own binary draws back in; false: grey levels
    # x/255 as inputs and Bernoulli targets (the VAE's default), which binary samples then do not match
    binarize: bool = True
    image_size: int | None = None  # None: the data's size
    channels: int | None = None  # None: the data's channels
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0  # Adam's L2 penalty (1e-4 in some re-implementations)

    def validate(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise SozoError(f"'hidden' needs at least one layer of width 1 or more, got {self.hidden}",
                            hint="for example --set hidden=[500]")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if not self.weight_decay >= 0:
            raise SozoError(f"'weight_decay' must be at least 0, got {self.weight_decay}")
        if self.image_size is not None and self.image_size < 2:
            raise SozoError(f"'image_size' must be at least 2, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")


@register_model("made")
class MADE(ImageModel):
    """Masked autoencoder: an exact autoregressive likelihood over the pixels in one fixed order."""

    description = ("MADE (Germain et al. 2015): masked MLP 784-500-784, exact likelihood of binarised images "
                   "in the natural pixel order, sampled pixel by pixel; preset=2hl: two hidden layers")
    Config = MADEConfig
    train_defaults = {"batch_size": 100}

    def __init__(self, config: MADEConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        if c.channels is None or c.image_size is None:
            raise SozoError("a MADE is built from a resolved config", hint="MADE.resolve_config sets the sizes")
        self.dim = c.channels * c.image_size * c.image_size  # D: one conditional per pixel (and channel)
        if c.order == "natural":
            order = torch.arange(self.dim)
        else:  # a fixed permutation from the mask seed (a generator of its own: the degrees use mask_seed too)
            order = torch.randperm(self.dim, generator=torch.Generator().manual_seed(c.mask_seed + 1))
        self.net = MADENet(self.dim, c.hidden, order, seed=c.mask_seed)

    # --- config and data -----------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"paper": {}, "2hl": {"hidden": [500, 500]}, "small": {"hidden": [100]}}

    @classmethod
    def resolve_config(cls, config: MADEConfig, data: Any) -> MADEConfig:
        """The data's size and channels (a MADE takes any size: no conv net to fit)."""
        changes = fit_image_config(cls.family, config, data, fits=lambda size: True, sizes=[])
        if changes["channels"] * changes["image_size"] ** 2 < 2:
            raise SozoError("MADE needs images of at least 2 pixels")
        return replace(config, **changes)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 or floats in [-1, 1], (B, C, H, W) -> (B, D) in [0, 1] on the model's device;
        0/1 with ``binarize`` (x/255 >= 0.5, the VAE's threshold)."""
        x = images.to(self.device)
        t = x.float() / 255.0 if x.dtype == torch.uint8 else ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if self.config.binarize:
            t = (t >= 0.5).float()
        return t.flatten(1)

    # --- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay,
                                                    **self.adam_options())}
        return self.optimizers

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) -log p(x) in nats of (B, D) pixels in [0, 1]: the cross-entropy summed over pixels."""
        with self.autocast():
            logits = self.net(x)
        return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").sum(1)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        loss = self.nll(self._pixels(batch["images"])).mean()  # nats per image
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}  # a tensor on the device: the trainer reads it only when it logs

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        x = self._pixels(self.check_image_batch(batch))
        with torch.no_grad():
            logits = self.net(x)
        if logits.shape != x.shape:
            raise SozoError(f"the network gives {tuple(logits.shape)} logits for {tuple(x.shape)} pixels")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """The held-out NLL (nats per image) in metrics.jsonl after every epoch: a likelihood model
        overfits a few thousand digits, and this shows when (``eval_every``'s image measures are not
        logged for made; ``sozo evaluate`` gives them)."""
        return [heldout_nll_callback(self.log_prob)]

    # --- likelihood ----------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N,) exact log p(x) in nats of images (uint8 (N, C, H, W) 0..255 or floats in [-1, 1]),
        pixels binarised as in training; on the CPU."""
        was = self.training
        self.eval()
        try:
            out = [-self.nll(self._pixels(images[i:i + batch_size])).cpu() for i in range(0, len(images), batch_size)]
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.empty(0)

    # --- sampling ------------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None, labels: Any = None, batch_size: int = 2048) -> torch.Tensor:
        """``n`` binary images (n, C, H, W) in {-1, 1}, drawn pixel by pixel; a seed gives the same images
        every time (the uniform draws come from a CPU generator, so any device agrees)."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        self.label_ids(labels, n)  # --label on an unconditional model: a clear error
        c = self.config
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out = torch.empty(n, self.dim)
        for i in range(0, n, batch_size):
            u = torch.rand(min(batch_size, n - i), self.dim, generator=gen)  # (B, D) one draw per pixel
            out[i:i + len(u)] = self.net.sample(u.to(self.device)).cpu()
        return (out * 2 - 1).view(n, -1, c.image_size, c.image_size)  # (n, C, H, W)

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A grid of ``n`` samples from ``seed`` (the trainer's epoch grids, `sozo sample`)."""
        return save_grid(self.sample(n, seed=seed), path)

    # --- evaluation: the image measures of samples, and the exact held-out likelihood ---------
    eval_table = MADE_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures of ``options.n`` samples (FD, KID, precision/recall, class histogram),
        then the exact NLL of the held-out images in nats per image and bits per pixel, and the same
        on the training images (the gap shows overfitting)."""
        res = super().measure(context, options)
        return {**res, **exact_nll_measures(self, context), "binarized": self.config.binarize,
                "likelihood": LIKELIHOOD}
