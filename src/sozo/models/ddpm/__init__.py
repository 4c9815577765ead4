"""DDPM: denoising diffusion probabilistic models (Ho, Jain and Abbeel 2020), sampled with the DDPM
ancestral sampler or DDIM (Song, Meng and Ermon 2021).

Training noises a digit to a random timestep t of T (the closed form q(x_t | x_0)) and teaches a
U-Net to predict the noise (``prediction=eps``, the paper's simple loss) or v (``prediction=v``,
Salimans and Ho 2022) with a mean squared error. Sampling starts from pure noise and denoises:
DDIM with ``sample_steps`` steps by default (50; eta 0: deterministic), or the ancestral chain
(``sampler=ddpm``, all T steps unless ``--steps``). ``conditional=true`` trains on the labels too,
dropping them to a "no label" class a share ``label_dropout`` of the time, so one network gives both
the conditional and the unconditional noise and ``--guidance w`` mixes them (classifier-free
guidance, Ho and Salimans 2021): eps = eps_c + w (eps_c - eps_u); w = 0 is the plain conditional
model. The trainer's EMA of the weights (on by default here: 0.9995) gives the samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ...config import replace
from ...data.images import to_float
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row
from ...registry import register_model
from ...viz.grid import save_grid, save_walk
from ..gan import slerp  # the GANs' and VAEs' slerp of latent rows
from ..images import IMAGE_TABLE, ImageModel, fit_image_config
from . import diffusion as D
from .networks import UNet

DDPM_TABLE = IMAGE_TABLE.with_rows(Row("sampler", "sampler", "{}"), Row("sampler_steps", "  sampler steps", "{}"))

MAX_SAMPLE_BATCH = 256  # images denoised together when sampling


@dataclass
class DDPMConfig:
    """U-Net, noise schedule, objective, samplers and optimiser of a DDPM. Sizes left at None follow the data."""

    preset: str = ""
    # the U-Net: width base * m at each level (each level but the last halves the size: 28 -> 14 -> 7)
    base: int = 32  # channels of the first level
    mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # width multipliers, one level each
    blocks: int = 1  # residual blocks per level (the decoder has one more)
    attn_levels: list[int] = field(default_factory=lambda: [2])  # levels with self-attention (0 = full size)
    dropout: float = 0.0
    # the diffusion
    timesteps: int = 1000  # T
    schedule: Literal["linear", "cosine"] = "linear"  # linear: Ho et al.; cosine: Nichol and Dhariwal
    prediction: Literal["eps", "v"] = "eps"  # what the network predicts: the noise, or v (Salimans and Ho)
    # sampling
    sampler: Literal["ddim", "ddpm"] = "ddim"  # ddim: sample_steps steps; ddpm: the ancestral chain (all T steps)
    sample_steps: int = 50  # DDIM steps of `sozo sample` and `sozo evaluate` (--steps overrides)
    eta: float = 0.0  # DDIM noise: 0 deterministic, 1 the ancestral variance
    epoch_sample_steps: int = 20  # DDIM steps of the trainer's per-epoch grids (cheap)
    clip: bool = True  # clip the predicted x_0 to [-1, 1] at each sampling step
    # class-conditional training with classifier-free guidance
    conditional: bool = False
    num_classes: int = 0  # filled from the data for conditional models
    label_dropout: float = 0.1  # share of training labels replaced by the "no label" class
    guidance: float = 0.0  # default guidance scale w of conditional samples (--guidance overrides)
    image_size: int | None = None  # None: the data's size
    channels: int | None = None  # None: the data's channels
    lr: float = 1e-3  # Adam (1e-3 for the small CPU U-Net; the paper's 2e-4 with preset=paper)
    warmup: int = 100  # steps of linear learning-rate warm-up (the paper's 5000 with preset=paper)

    def validate(self) -> None:
        if self.base < 1 or not self.mults or any(m < 1 for m in self.mults):
            raise SozoError(f"the U-Net needs base >= 1 and multipliers >= 1, got base={self.base}, "
                            f"mults={self.mults}", hint="for example --set base=32 --set mults=[1,2,2]")
        if self.blocks < 1:
            raise SozoError(f"'blocks' must be at least 1, got {self.blocks}")
        if any(not 0 <= lv < len(self.mults) for lv in self.attn_levels):
            raise SozoError(f"'attn_levels' must be levels 0..{len(self.mults) - 1}, got {self.attn_levels}",
                            hint=f"for example --set attn_levels=[{len(self.mults) - 1}]")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if self.timesteps < 2:
            raise SozoError(f"'timesteps' must be at least 2, got {self.timesteps}",
                            hint="for example --set timesteps=1000")
        if not 1 <= self.sample_steps <= self.timesteps or not 1 <= self.epoch_sample_steps <= self.timesteps:
            raise SozoError(f"'sample_steps' and 'epoch_sample_steps' must be in 1..timesteps ({self.timesteps}), "
                            f"got {self.sample_steps} and {self.epoch_sample_steps}")
        if not 0 <= self.eta <= 1:
            raise SozoError(f"'eta' must be in [0, 1], got {self.eta}")
        if not 0 <= self.label_dropout < 1:
            raise SozoError(f"'label_dropout' must be in [0, 1), got {self.label_dropout}")
        if self.guidance < 0:
            raise SozoError(f"'guidance' must be at least 0, got {self.guidance}")
        if self.guidance and not self.conditional:
            raise SozoError("'guidance' applies to class-conditional models only", hint="add --set conditional=true")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.0002")
        if self.warmup < 0:
            raise SozoError(f"'warmup' must be at least 0, got {self.warmup}")
        if self.image_size is not None and self.image_size < 4:
            raise SozoError(f"'image_size' must be at least 4, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")


@register_model("ddpm")
class DDPM(ImageModel):
    """Denoising diffusion: a U-Net trained to remove noise, sampled with DDIM or the ancestral chain."""

    description = ("DDPM (Ho et al. 2020): U-Net noise predictor (base 32, 28->14->7, attention at 7x7), "
                   "T=1000 linear or cosine schedule, eps- or v-prediction, EMA; DDIM (50 steps) or ancestral "
                   "sampling; conditional=true: classifier-free guidance; preset=paper: the CIFAR-10 U-Net")
    Config = DDPMConfig
    train_defaults = {"batch_size": 32, "ema": 0.9995}  # small batches: more updates in 30 CPU minutes
    sample_options = ("steps", "guidance")

    def __init__(self, config: DDPMConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        if c.channels is None or c.image_size is None:
            raise SozoError("a DDPM is built from a resolved config", hint="DDPM.resolve_config sets the sizes")
        self.net = UNet(c.channels, c.base, tuple(c.mults), c.blocks, tuple(c.attn_levels), c.dropout,
                        c.num_classes if c.conditional else 0)
        # the schedule follows from the config: kept out of the state dict (float64 on the CPU)
        self.abar = D.alphas_bar(D.betas_for(c.schedule, c.timesteps))

    # --- config and data -----------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"small": {}, "tiny": {"base": 16, "attn_levels": []},
                # Ho et al.'s CIFAR-10 U-Net (35.7M parameters): 128 wide, 32 -> 16 -> 8 -> 4, attention at 16x16
                "paper": {"base": 128, "mults": [1, 2, 2, 2], "blocks": 2, "attn_levels": [1], "dropout": 0.1,
                          "lr": 2e-4, "warmup": 5000}}

    @classmethod
    def resolve_config(cls, config: DDPMConfig, data: Any) -> DDPMConfig:
        """The data's size, channels and classes (the U-Net takes any size of at least 4)."""
        changes = fit_image_config(cls.family, config, data, fits=lambda size: True, sizes=[])
        if changes["image_size"] < 4:
            raise SozoError(f"DDPM needs images of at least 4x4, got {changes['image_size']}")
        return replace(config, **changes)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 (or floats in [-1, 1]) -> floats in [-1, 1] on the model's device."""
        x = images.to(self.device)
        return to_float(x) if x.dtype == torch.uint8 else x.float()

    # --- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.config.lr, **self.adam_options())}
        return self.optimizers

    def loss(self, x0: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The simple loss: MSE between the network's output at a random t and its target (eps or v)."""
        c = self.config
        b = len(x0)
        t = torch.randint(0, c.timesteps, (b,), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = D.q_sample(x0, t, eps, self.abar)
        target = eps if c.prediction == "eps" else D.v_target(x0, t, eps, self.abar)
        if y is not None and c.label_dropout > 0:  # classifier-free guidance: some labels become "none"
            drop = torch.rand(b, device=x0.device) < c.label_dropout
            y = torch.where(drop, torch.full_like(y, c.num_classes), y)
        with self.autocast():
            out = self.net(x_t, t, y)
        return F.mse_loss(out.float(), target)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        x0 = self._pixels(batch["images"])
        y = batch["labels"].to(self.device) if c.conditional else None
        loss = self.loss(x0, y)
        opt = self.optimizers["adam"]
        for group in opt.param_groups:  # linear warm-up, a function of the step (resumes exactly)
            group["lr"] = c.lr * min(1.0, (step + 1) / c.warmup) if c.warmup else c.lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0, foreach=True)  # the paper's clipping
        opt.step()
        return {"loss": loss.detach()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        x = self._pixels(self.check_image_batch(batch))
        y = batch["labels"][: len(x)].to(self.device) if self.config.conditional else None
        if y is not None and (y.min() < 0 or y.max() >= self.config.num_classes):
            raise SozoError(f"labels must be in 0..{self.config.num_classes - 1}")
        with torch.no_grad():
            out = self.net(x, torch.zeros(len(x), dtype=torch.long, device=self.device), y)
        if out.shape != x.shape:
            raise SozoError(f"the U-Net gives {tuple(out.shape)} for {tuple(x.shape)} images")

    # --- sampling ------------------------------------------------------------------------
    def _denoiser(self, y: torch.Tensor | None, guidance: float) -> D.EpsX0:
        """(x_t, t) -> (eps, x0) of the network, with classifier-free guidance when w > 0."""
        c = self.config

        def fn(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t = t.to(self.device)
            with self.autocast():
                if y is not None and guidance > 0:
                    null = torch.full_like(y, c.num_classes)
                    both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).float()
                    oc, ou = both.chunk(2)
                    out = oc + guidance * (oc - ou)  # eps_c + w (eps_c - eps_u) (the same mix for v)
                else:
                    out = self.net(x, t, y).float()
            return D.to_eps_x0(out, x, t, self.abar, c.prediction)
        return fn

    def _steps(self, steps: int | None) -> tuple[str, list[int]]:
        c = self.config
        if steps is not None and not 1 <= int(steps) <= c.timesteps:
            raise SozoError(f"--steps must be in 1..{c.timesteps} (the run's timesteps), got {steps}",
                            hint=f"for example --steps {c.sample_steps}")
        if c.sampler == "ddpm":
            return "ddpm", D.timesteps_for(int(steps) if steps is not None else c.timesteps, c.timesteps)
        return "ddim", D.timesteps_for(int(steps) if steps is not None else c.sample_steps, c.timesteps)

    def _guidance(self, guidance: float | None) -> float:
        c = self.config
        if guidance is None:
            return c.guidance if c.conditional else 0.0
        if not c.conditional:
            raise SozoError(f"--guidance applies to class-conditional models, and this {self.family} run is not one",
                            hint="train with --set conditional=true for classifier-free guidance; leave out --guidance")
        if not (isinstance(guidance, (int, float)) and guidance >= 0 and math.isfinite(guidance)):
            raise SozoError(f"--guidance must be a number at least 0, got {guidance}")
        return float(guidance)

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, labels: torch.Tensor | None, steps: int | None = None,
                guidance: float | None = None, seed: int | None = None, eta: float | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] from the noise ``x_t`` (B, C, H, W), on the CPU."""
        c = self.config
        sampler, ts = self._steps(steps)
        w = self._guidance(guidance)
        gen = torch.Generator().manual_seed(seed + 1) if seed is not None else None  # the chain's noise
        was = self.training
        self.eval()
        try:
            outs = []
            for i in range(0, len(x_t), MAX_SAMPLE_BATCH):
                x = x_t[i:i + MAX_SAMPLE_BATCH].to(self.device)
                y = labels[i:i + MAX_SAMPLE_BATCH].to(self.device) if labels is not None else None
                fn = self._denoiser(y, w)
                if sampler == "ddpm":
                    x = D.ancestral(fn, x, self.abar, ts, gen=gen, clip=c.clip)
                else:
                    x = D.ddim(fn, x, self.abar, ts, eta=c.eta if eta is None else eta, gen=gen, clip=c.clip)
                outs.append(x.float().clamp(-1, 1).cpu())
        finally:
            self.train(was)
        return torch.cat(outs)

    def noise(self, n: int, seed: int | None) -> torch.Tensor:
        """x_T: (n, C, H, W) standard normal noise from a CPU generator (the same on any device)."""
        c = self.config
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, c.channels, c.image_size, c.image_size, generator=gen)

    def sample(self, n: int, seed: int | None = None, labels: Any = None, steps: int | None = None,
               guidance: float | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]: DDIM with ``steps`` steps (the run's sample_steps), or the
        ancestral chain with ``sampler=ddpm``; ``guidance``: classifier-free guidance scale (conditional
        runs only); a seed gives the same images every time, on any device."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        self._steps(steps)
        self._guidance(guidance)  # refused before any work
        ids = self.label_ids(labels, n)
        return self.denoise(self.noise(n, seed), ids, steps, guidance, seed)

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """The per-epoch grid: DDIM with the cheap ``epoch_sample_steps``; a column per class when conditional."""
        c = self.config
        steps = c.epoch_sample_steps if c.sampler == "ddim" else None
        if c.conditional:
            k = c.num_classes
            return save_grid(self.sample(-(-n // k) * k, seed=seed, steps=steps), path, nrow=k)
        return save_grid(self.sample(n, seed=seed, steps=steps), path)

    def interpolate(self, paths: int, steps: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """Walks between pairs of noises x_T (slerp), each frame denoised by deterministic DDIM (eta 0):
        (steps, paths, C, H, W)."""
        if steps < 2 or paths < 1:
            raise SozoError(f"interpolation needs at least 2 steps and 1 path, got steps={steps}, paths={paths}")
        self.check_sample_memory(steps * paths, "frames")
        z = self.noise(2 * paths, seed).flatten(1)
        a, b = z[:paths], z[paths:]
        walk = torch.stack([slerp(a, b, float(t)) for t in torch.linspace(0, 1, steps)])  # (S, P, D)
        ids = self.label_ids(labels, paths)
        c = self.config
        x = walk.reshape(steps * paths, c.channels, c.image_size, c.image_size)
        if c.sampler == "ddpm":  # the walk needs a deterministic sampler: DDIM with sample_steps
            _, ts = "ddim", D.timesteps_for(c.sample_steps, c.timesteps)
        else:
            _, ts = self._steps(None)
        imgs = self._walk(x, ids.repeat(steps) if ids is not None else None, ts)
        return imgs.view(steps, paths, *imgs.shape[1:])

    @torch.no_grad()
    def _walk(self, x_t: torch.Tensor, ids: torch.Tensor | None, ts: list[int]) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            outs = []
            for i in range(0, len(x_t), MAX_SAMPLE_BATCH):
                y = ids[i:i + MAX_SAMPLE_BATCH].to(self.device) if ids is not None else None
                fn = self._denoiser(y, self._guidance(None))
                x = D.ddim(fn, x_t[i:i + MAX_SAMPLE_BATCH].to(self.device), self.abar, ts, eta=0.0,
                           clip=self.config.clip)
                outs.append(x.float().clamp(-1, 1).cpu())
        finally:
            self.train(was)
        return torch.cat(outs)

    def write_interpolation(self, path: Path, steps: int, paths: int, seed: int, labels: Any = None) -> Path:
        """A PNG strip (a row per walk) or an animated GIF (a frame per step)."""
        return save_walk(self.interpolate(paths, steps, seed, labels), path)  # (S, P, C, H, W) walks

    # --- evaluation ----------------------------------------------------------------------------
    eval_table = DDPM_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures of ``options.n`` samples drawn with ``options.steps`` sampler steps
        (``sozo evaluate --steps``; the run's sample_steps by default), with the sampler recorded."""
        sampler, ts = self._steps(options.steps)  # checked before any sample is drawn
        res = super().measure(context, options)  # which passes options.steps to sample
        return {**res, "sampler": sampler, "sampler_steps": len(ts),
                "guidance": self._guidance(None) if self.config.conditional else None}
