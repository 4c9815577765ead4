"""RealNVP: density estimation with real-valued non-volume-preserving transformations (Dinh,
Sohl-Dickstein and Bengio 2017).

An invertible network f maps an image x to a Gaussian latent z; the change of variables gives an
exact log-likelihood, log p(x) = log N(f(x); 0, I) + log |det df/dx|, which training maximises.
The layers are affine couplings: half of the values (a checkerboard, or half of the channels)
pass unchanged and give a scale s (tanh-bounded) and shift t for the other half, so the Jacobian is
triangular and its log-determinant is the sum of s. The multi-scale architecture squeezes 2x2
blocks into channels and factors out half of the channels at each scale (28 px: 28 -> 14 -> 7).

Pixels are 8-bit: training and evaluation add uniform noise u (dequantisation), map (x + u) / 256
through the logit of alpha + (1 - 2 alpha) y, and count that map's log-determinant, so the reported
bits per dimension is the standard bound on the discrete log-likelihood (-log2 p(x + u) / D over
[0, 256)^D; RealNVP and Glow reach about 1.05 on all of MNIST). Sampling draws z at a temperature
(``sozo sample RUN --temperature 0.7``) and inverts f.

The 2-D toy of the book (``--data moons``): scikit-learn's two moons, seeded, fitted by a coupling
flow with MLP s and t networks; its pictures show the learned density over the data and the data
mapped into the latent plane.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ...config import DataConfig, replace
from ...data.images import to_uint8
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row
from ...registry import register_model
from ...viz.grid import save_grid
from ..images import IMAGE_TABLE, ImageModel, fit_image_config, heldout_images
from .floor import gaussian_nll, image_floor
from .networks import MultiScaleFlow, VectorFlow, standard_normal_logp

LIKELIHOOD = ("realnvp: exact -log p(x + u) of 8-bit pixels dequantised by u ~ U[0, 1), in [0, 256)^D "
              "(the floor: a full-covariance Gaussian fitted to the training images, the same units)")
POINT_SOURCES = ("moons",)  # the 2-D toy data this family makes itself


def _notes(results: list[dict[str, Any]]) -> list[str]:
    out = []
    if any("bpd_8bit" in r for r in results):
        out.append(LIKELIHOOD)
    if any(r.get("floor_ridge") for r in results):
        out.append("realnvp floor: fewer training images than pixels, so the Gaussian's covariance has a ridge "
                   "(0.01 x the mean pixel variance) on its diagonal")
    if any("nll_points" in r for r in results):
        out.append("realnvp on points: -log p(x) in nats per point; floor: a full-covariance Gaussian")
    return out


# the image league table with the flow's rows; a moons run fills only the point rows (the others show '-')
REALNVP_TABLE = IMAGE_TABLE.with_rows(
    Row("nll_8bit", "NLL, 8-bit dequantised (nats)", "{:.1f}"), Row("bpd_8bit", "  bits/dim", "{:.4f}"),
    Row("floor_bpd_8bit", "  Gaussian floor, bits/dim", "{:.4f}"),
    Row("floor_logit_bpd_8bit", "  Gaussian floor on the logits, bits/dim", "{:.4f}"),
    Row("floor_pixels_bpd_8bit", "  independent-pixel floor, bits/dim", "{:.4f}"),
    Row("bpd_8bit_train", "  bits/dim on training images", "{:.4f}"),
    Row("nll_points", "NLL per point (nats)", "{:.4f}"), Row("floor_nll_points", "  Gaussian floor (nats)", "{:.4f}"),
    Row("nll_points_train", "  on training points", "{:.4f}"),
    Row("n_heldout", "held-out examples", "{}"), notes=_notes)


@dataclass
class PointData:
    """Points in the plane that the family makes itself (``--data moons``)."""

    name: str
    points: torch.Tensor  # (N, 2) float32
    size: int | None = None
    channels: int | None = None
    class_names: list[str] | None = None
    num_classes: int = 0


@dataclass
class RealNVPConfig:
    """Couplings, networks and optimiser of a RealNVP. Sizes left at None follow the data."""

    preset: str = ""
    # images: the multi-scale flow
    scales: int = 2  # squeeze + factor-out levels (28 px: 28 -> 14 -> 7); the size must divide by 2^scales
    couplings: int = 3  # checkerboard couplings per level, and channel couplings after each squeeze (last: +1)
    width: int = 32  # channels of the s/t ResNets
    blocks: int = 1  # residual blocks per s/t ResNet
    # actnorm: a per-channel affine initialised from the first batch (exact in train and eval alike);
    # batchnorm: RealNVP's batch norm (batch statistics in training, running averages in eval)
    norm: Literal["actnorm", "batchnorm", "none"] = "actnorm"
    alpha: float = 0.05  # logit preprocessing of y in [0, 1]: logit(alpha + (1 - 2 alpha) y)
    # points (--data moons): the MLP coupling flow
    point_couplings: int = 8  # couplings with alternating coordinate masks
    hidden: int = 128  # width of the s/t MLPs
    hidden_layers: int = 2  # ReLU layers of the s/t MLPs
    moons_points: int = 3000  # how many points make_moons draws (seeded: random_state=0)
    moons_noise: float = 0.05  # make_moons' noise
    # sampling and training
    temperature: float = 1.0  # scale of the latent Gaussian for the epoch grids (sozo sample --temperature: its own)
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0  # Adam's L2 penalty (the paper: 5e-5)
    grad_clip: float = 100.0  # clip the gradient's norm (0: never); flows spike early on
    kind: str | None = None  # images or points: the data decides
    image_size: int | None = None  # None: the data's size
    channels: int | None = None  # None: the data's channels

    def validate(self) -> None:
        for name in ("scales", "couplings", "width", "blocks", "point_couplings", "hidden", "hidden_layers",
                     "moons_points"):
            low = 0 if name in ("scales", "blocks") else 1
            if getattr(self, name) < low:
                raise SozoError(f"'{name}' must be at least {low}, got {getattr(self, name)}")
        if self.point_couplings < 2:
            raise SozoError(f"'point_couplings' must be at least 2 (each coordinate moved once), "
                            f"got {self.point_couplings}")
        if not 0.0 < self.alpha < 0.5:
            raise SozoError(f"'alpha' must be in (0, 0.5), got {self.alpha}", hint="for example --set alpha=0.05")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}")
        if not (self.weight_decay >= 0 and self.grad_clip >= 0 and self.moons_noise >= 0):
            raise SozoError("'weight_decay', 'grad_clip' and 'moons_noise' must be at least 0")
        if self.kind not in (None, "images", "points"):
            raise SozoError(f"'kind' is images or points (the data decides), got {self.kind}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")


def squeezable(size: int, scales: int) -> bool:
    return size >= 2 ** scales and size % 2 ** scales == 0


def make_moons(n: int, noise: float) -> torch.Tensor:
    """(n, 2) float32 two moons, always the same for the same n and noise."""
    from sklearn.datasets import make_moons as sk_moons
    x, _ = sk_moons(n_samples=n, noise=noise, random_state=0)
    return torch.as_tensor(x, dtype=torch.float32)


@register_model("realnvp")
class RealNVP(ImageModel):
    """A normalizing flow of affine couplings: an exact likelihood, sampled in one inverse pass."""

    description = ("RealNVP (Dinh et al. 2017): affine couplings (checkerboard and channel masks), squeeze, "
                   "multi-scale factoring out, actnorm; exact bits/dim of dequantised 8-bit pixels; "
                   "--temperature sampling; --data moons: the 2-D toy with its density picture")
    takes = ImageModel.takes + "; or moons (scikit-learn's two moons in 2-D)"
    Config = RealNVPConfig
    train_defaults = {"batch_size": 64}
    sample_options = ("temperature",)

    def __init__(self, config: RealNVPConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        self.flow: MultiScaleFlow | VectorFlow
        if c.kind == "points":
            self.dim = 2
            self.flow = VectorFlow(2, c.point_couplings, c.hidden, c.hidden_layers, c.norm)
            return
        if c.channels is None or c.image_size is None:
            raise SozoError("a RealNVP is built from a resolved config", hint="RealNVP.resolve_config sets the sizes")
        self.dim = c.channels * c.image_size * c.image_size
        self.flow = MultiScaleFlow(c.channels, c.image_size, c.scales, c.couplings, c.width, c.blocks, c.norm)

    @property
    def points(self) -> bool:
        return self.config.kind == "points"

    # --- config and data -----------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"small": {"width": 16, "couplings": 2}, "paper": {"width": 64, "blocks": 4, "norm": "batchnorm"},
                "wide": {"width": 64, "blocks": 2}}

    @classmethod
    def load_data(cls, data: DataConfig, config: Any, log: Callable[[str], None] = print) -> tuple[Any, dict]:
        """Images as every image family loads them; ``moons``: points made here (make_moons, seeded)."""
        if str(data.source).lower() in POINT_SOURCES:
            pts = make_moons(config.moons_points, config.moons_noise)
            if data.limit:
                pts = pts[:data.limit]
            return PointData("moons", pts), {"points": pts}
        return super().load_data(data, config, log)

    @classmethod
    def resolve_config(cls, config: RealNVPConfig, data: Any) -> RealNVPConfig:
        """Points: the 2-D flow. Images: the data's size and channels; the size must halve ``scales`` times."""
        if isinstance(data, PointData):
            return replace(config, kind="points")
        changes = fit_image_config(cls.family, config, data, fits=lambda size: True, sizes=[])
        size = changes["image_size"]
        if not squeezable(size, config.scales):
            ok = [s for s in range(2 ** config.scales, 2 * size + 2 ** config.scales, 2 ** config.scales)]
            near = min(ok, key=lambda s: (abs(s - size), s))
            raise SozoError(f"{size}x{size} images cannot be squeezed {config.scales} times (the multi-scale flow "
                            f"halves the size at each of its {config.scales} scales, so it must divide by "
                            f"{2 ** config.scales})",
                            hint=f"use --set image_size={near}, or fewer scales (--set scales=…)")
        return replace(config, kind="images", **changes)

    @classmethod
    def fit_tensors(cls, tensors: Any, config: Any) -> Any:
        return tensors if config.kind == "points" else super().fit_tensors(tensors, config)

    def check_sample_memory(self, n: int, what: str = "samples") -> None:
        if not self.points:
            super().check_sample_memory(n, what)

    # --- the flow: x -> z and back ---------------------------------------------------------
    def _dequantise(self, images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """uint8 (B, C, H, W) (or floats in [-1, 1]) -> (x + u) / 256 in (0, 1) on the device, u ~ U[0, 1)
        (from ``gen`` on the CPU when given, else the device's generator)."""
        x = images.to(self.device)
        x = (x if x.dtype == torch.uint8 else to_uint8(x)).float()
        u = (torch.rand(x.shape, generator=gen).to(self.device) if gen is not None
             else torch.rand(x.shape, device=self.device))
        return (x + u) / 256.0

    def log_prob_dequantised(self, y: torch.Tensor) -> torch.Tensor:
        """(B,) log density of x + u = 256 y in [0, 256)^D, for y (B, C, H, W) in (0, 1): the logit
        preprocessing's log-determinant, the flow's, and the Gaussian's log density, in fp32."""
        a = self.config.alpha
        p = a + (1 - 2 * a) * y
        z0 = torch.log(p) - torch.log1p(-p)
        pre = (math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1) - self.dim * math.log(256.0)
        zs, ld = self.flow(z0, self.autocast)
        return sum(standard_normal_logp(z) for z in zs) + ld + pre

    def log_prob_points(self, x: torch.Tensor) -> torch.Tensor:
        z, ld = self.flow(x.to(self.device).float(), self.autocast)
        return standard_normal_logp(z) + ld

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.points:
            return -self.log_prob_points(batch["points"]).mean()
        return -self.log_prob_dequantised(self._dequantise(batch["images"], None)).mean()

    # --- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay,
                                                    **self.adam_options())}
        return self.optimizers

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        loss = self._loss(batch)  # nats per image (or point)
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        opt.step()
        out = {"loss": loss.detach()}
        if not self.points:
            out["bpd"] = loss.detach() / (self.dim * math.log(2))
        return out

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "bpd")

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        if self.points:
            x = batch.get("points")
            if x is None or x.dim() != 2 or x.shape[1] != 2:
                raise SozoError("the 2-D flow takes points (N, 2)")
            return
        x = self.check_image_batch(batch)
        with torch.no_grad():
            was = self.training
            self.eval()  # no actnorm initialisation from this check's batch
            try:
                lp = self.log_prob_dequantised(self._dequantise(x[:2], torch.Generator().manual_seed(0)))
            finally:
                self.train(was)
        if lp.shape != (len(x[:2]),):
            raise SozoError(f"the flow gives log-likelihoods of shape {tuple(lp.shape)}")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """The held-out bits/dim (points: NLL per point) in metrics.jsonl after every epoch."""
        def heldout(trainer: Any, epoch: int) -> dict[str, Any] | None:
            held = trainer.heldout
            if not held:
                return None
            if self.points:
                return {"heldout_nll": round(-self.log_prob(held["points"]).mean().item(), 4)}
            if len(held.get("images", ())) == 0:
                return None
            return {"heldout_bpd": round(self.bits_per_dim(held["images"]), 4)}
        return [heldout]

    # --- likelihood ----------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, data: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        """(N,) log-likelihood in nats, in eval mode, on the CPU. Images (uint8 or floats in [-1, 1]):
        log p(x + u) over [0, 256)^D with the dequantisation noise u drawn from ``seed``; points: log p(x)."""
        was = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        try:
            out = []
            for i in range(0, len(data), batch_size):
                chunk = data[i:i + batch_size]
                lp = (self.log_prob_points(chunk) if self.points
                      else self.log_prob_dequantised(self._dequantise(chunk, gen)))
                out.append(lp.cpu())
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.empty(0)

    def bits_per_dim(self, images: torch.Tensor, seed: int = 0) -> float:
        return -self.log_prob(images, seed=seed).mean().item() / (self.dim * math.log(2))

    # --- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, labels: Any = None, temperature: float | None = None,
               batch_size: int = 1000) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1] (points: (n, 2)) from z ~ N(0, T^2 I), T = ``temperature``
        (default the config's); a seed gives the same samples on any device (z from a CPU generator)."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        temp = self.config.temperature if temperature is None else float(temperature)
        if not temp > 0:
            raise SozoError(f"the temperature must be positive, got {temperature}")
        self.check_sample_memory(n)
        self.label_ids(labels, n)  # --label on an unconditional model: a clear error
        was = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out = []
        try:
            for i in range(0, n, batch_size):
                b = min(batch_size, n - i)
                if isinstance(self.flow, VectorFlow):
                    z = temp * torch.randn(b, 2, generator=gen)
                    out.append(self.flow.inverse(z.to(self.device), self.autocast).float().cpu())
                    continue
                zs = [temp * torch.randn(b, *shape, generator=gen) for shape in self.flow.shapes]
                x = self.flow.inverse([z.to(self.device) for z in zs], self.autocast).float()
                a = self.config.alpha
                y = ((torch.sigmoid(x) - a) / (1 - 2 * a)).clamp(0.0, 1.0)
                out.append((y * 2 - 1).cpu())
        finally:
            self.train(was)
        return torch.cat(out)

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """Images: a grid of ``n`` samples. Points: the picture of the learned density with the data,
        the data mapped into the latent plane, and ``n`` samples (see ``save_samples``)."""
        return self.save_samples(self.sample(n if not self.points else max(n, 1000), seed=seed), path)

    def save_samples(self, samples: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
        """What `sozo sample` writes: a grid of images, or for points the moons picture."""
        if not self.points:
            return save_grid(samples, path, nrow=nrow)
        from .plot import moons_picture
        data = make_moons(self.config.moons_points, self.config.moons_noise)
        return moons_picture(self, data, samples, Path(path))

    # --- evaluation ----------------------------------------------------------------------
    eval_table = REALNVP_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """Images: the image measures of ``options.n`` samples (FD, KID, precision/recall, classes), then the
        exact held-out bits/dim beside the Gaussian floor, and on the training images. Points: the held-out
        NLL per point beside the Gaussian floor, and on the training points."""
        if self.points:
            held, train = context.heldout.get("points"), context.train.get("points")
            if held is None or len(held) == 0 or train is None:
                raise SozoError("this run kept no held-out points (data.holdout was 0)",
                                hint="train with --set holdout=0.1 to measure the held-out likelihood")
            context.use_reference("heldout", len(held))
            return {"nll_points": -self.log_prob(held).mean().item(),
                    "nll_points_train": -self.log_prob(train).mean().item(),
                    "floor_nll_points": gaussian_nll(train, held).mean().item(), "n_heldout": len(held)}
        held, train = heldout_images(self, context)
        res = super().measure(context, options)
        nll = -self.log_prob(held).mean().item()
        floor_key = ("realnvp-floor", str(context.config.data.source), context.config.data.limit, tuple(held.shape[1:]),
               len(held), self.config.alpha)
        floor = context.shared(floor_key, lambda: image_floor(train, held, self.config.alpha))
        return {**res, "nll_8bit": nll, "bpd_8bit": nll / (self.dim * math.log(2)),
                "bpd_8bit_train": self.bits_per_dim(train), **floor, "n_heldout": len(held),
                "likelihood": LIKELIHOOD}
