"""The GAN family: gan (MLP), dcgan, wgan, wgan-gp, cgan.

One class does the work; the registered names are presets of networks + objective + optimiser.
Objectives, penalties, spectral norm and the update helpers are ``sozo.nn.adversarial``'s.
The step: a critic update on every batch, a generator update on every ``n_critic``-th batch.
The discriminator sees real and fake batches in separate forward passes (with batch norm, a
mixed batch gives a different, worse gradient).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ...config import replace
from ...data.images import to_float
from ...errors import SozoError
from ...nn.adversarial import (
    Adversary,
    ObjectiveName,
    PenaltyChoice,
    add_spectral_norm,
    adversary,
    compiled_networks,
    critic_update,
    generator_loss,
    generator_update,
)
from ...nn.init import normal_init
from ...registry import register_variant
from ...viz.grid import save_grid, save_walk
from ..base import resolved_sizes
from ..images import ImageModel, fit_image_config
from .networks import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator, conv_sizes, conv_start


@dataclass
class GANConfig:
    """Networks, objective and optimiser of a GAN. Sizes left at None follow the data."""

    preset: str = ""
    arch: Literal["mlp", "conv"] = "conv"
    latent_dim: int = 100
    image_size: int | None = None  # None: the data's size (resized to the nearest the net supports)
    channels: int | None = None  # None: the data's channels
    num_classes: int = 0  # filled from the data for conditional models
    conditional: bool = False
    embed_dim: int = 50  # label embedding size fed to the generator
    # MLP networks
    g_hidden: list[int] = field(default_factory=lambda: [100])
    d_hidden: list[int] = field(default_factory=lambda: [100])
    g_batchnorm: bool = False
    d_dropout: float = 0.5
    mlp_slope: float = 0.2  # LeakyReLU slope of both MLPs (the GAN chapter's MLP GAN: 0.01)
    d_first_bias: bool = True  # a bias on the MLP discriminator's first layer (the chapter's has none)
    # conv networks
    width: int | None = None  # None: 32 for images up to 32 px, 64 above (the DCGAN paper's 64x64)
    # chapter: the GAN chapter's networks as it prints them (28x28: G 4 -> 7 -> 14 -> 28 from 4x4, no bias
    # anywhere); sozo: sozo's first DCGAN (28x28: G from 7x7 with a last 3x3 conv; biases on the critic's ends)
    layout: Literal["chapter", "sozo"] = "sozo"
    g_act: Literal["relu", "leaky"] = "leaky"
    g_norm: Literal["batch", "none"] = "batch"
    d_norm: Literal["batch", "instance", "layer", "none"] = "batch"
    init_std: float = 0.02  # N(0, std) weights as in the DCGAN paper (0: PyTorch's default init)
    spectral_norm: bool = False  # spectral normalisation of every conv / linear weight of the critic (SNGAN)
    # objective (sozo.nn.adversarial): bce, least-squares, wasserstein-clip, wasserstein-gp, hinge
    objective: ObjectiveName = "bce"
    penalty: PenaltyChoice = "auto"  # auto: the objective's own (gp for wasserstein-gp, else none); none, gp, r1
    penalty_weight: float | None = None  # None: gp_lambda for gp, gamma 10 for r1
    n_critic: int = 1  # critic updates per generator update
    clip: float = 0.01  # wasserstein-clip
    gp_lambda: float = 10.0  # the gradient penalty's lambda (wasserstein-gp, penalty=gp)
    # optimiser
    optimizer: Literal["adam", "rmsprop"] = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    # what runs saved before a field existed used (their config.json / config.yaml lack it)
    saved_defaults: ClassVar[dict[str, Any]] = {"layout": "sozo", "mlp_slope": 0.2, "d_first_bias": True}

    def validate(self) -> None:
        if not 0 <= self.mlp_slope < 1:
            raise SozoError(f"'mlp_slope' must be in [0, 1), got {self.mlp_slope}",
                            hint="for example --set mlp_slope=0.2")
        for name in ("latent_dim", "n_critic", "embed_dim"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d", "clip"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}",
                                hint=f"for example --set {name}=0.0002")
        if not 0 <= self.d_dropout < 1:
            raise SozoError(f"'d_dropout' must be in [0, 1), got {self.d_dropout}")
        if self.image_size is not None and self.image_size < 4:
            raise SozoError(f"'image_size' must be at least 4, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")
        adv = self.adversary()
        if self.arch == "conv":
            adv.check_norm(self.d_norm, "d_norm")

    def adversary(self) -> Adversary:
        """The objective, penalty and clipping these options choose (checked)."""
        return adversary(self.objective, self.penalty, self.penalty_weight, self.clip, self.gp_lambda)


class GAN(ImageModel):
    """Generator + discriminator (critic) trained with one of the objectives."""

    Config = GANConfig
    lr_options = ("lr_g", "lr_d")

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "wdist")  # and the critic's Wasserstein estimate (the WGAN objectives log it)

    def __init__(self, config: GANConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        size, channels = resolved_sizes(c, "image_size", "channels")
        shape = (channels, size, size)
        k = c.num_classes if c.conditional else 0
        self.generator: nn.Module
        self.discriminator: nn.Module
        if c.arch == "mlp":
            self.generator = MLPGenerator(c.latent_dim, c.g_hidden, shape, c.g_batchnorm, k, c.embed_dim,
                                          slope=c.mlp_slope)
            self.discriminator = MLPDiscriminator(shape, c.d_hidden, c.d_dropout, k, c.embed_dim,
                                                  slope=c.mlp_slope, first_bias=c.d_first_bias)
        else:
            (width,) = resolved_sizes(c, "width")
            self.generator = ConvGenerator(c.latent_dim, size, channels, width, c.g_norm, c.g_act, k, c.embed_dim,
                                           layout=c.layout)
            self.discriminator = ConvDiscriminator(size, channels, width, c.d_norm, k, bias=c.layout != "chapter")
        if c.init_std > 0:
            normal_init(self, c.init_std)
        if c.spectral_norm:  # after the init: the normalised weight starts from the initialised one
            add_spectral_norm(self.discriminator)
        self.adversary = c.adversary()

    # --- config --------------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, config: GANConfig, data: Any) -> GANConfig:
        changes = fit_image_config(cls.family, config, data, lambda s: conv_start(s) is not None, conv_sizes())
        if config.width is None:
            changes["width"] = 32 if changes["image_size"] <= 32 else 64
        return replace(config, **changes)

    # --- training ------------------------------------------------------------------------
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.arch == "conv" else torch.contiguous_format

    def compiled_networks(self) -> list[nn.Module]:
        # a critic under a gradient penalty sees its double backward: it stays eager
        return compiled_networks(self.adversary, self.generator, self.discriminator)

    def ema_networks(self) -> list[nn.Module]:
        return [self.generator]  # samples come from the generator; the critic's average is never used

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        fused = self.adam_options()

        def make(params: Any, lr: float) -> torch.optim.Optimizer:
            if c.optimizer == "rmsprop":
                return torch.optim.RMSprop(params, lr=lr)
            return torch.optim.Adam(params, lr=lr, betas=(c.beta1, c.beta2), **fused)

        self.optimizers = {"generator": make(self.generator.parameters(), c.lr_g),
                           "discriminator": make(self.discriminator.parameters(), c.lr_d)}
        return self.optimizers

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=self.device)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        G, D = self.generator, self.discriminator
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        real = to_float(batch["images"])  # (B, C, H, W) in [-1, 1]
        y = batch["labels"] if c.conditional else None
        update_g = step % c.n_critic == 0

        # fakes: with a graph when this step also updates G (reused there), else without
        with torch.set_grad_enabled(update_g), self.autocast():
            fake = G(self._noise(real.size(0)), y)  # (B, C, H, W)

        # --- discriminator / critic: real and fake in separate passes, then any penalty and clipping
        out = critic_update(self.adversary, D, real, fake.detach(), opt_d, self.autocast(), cond=(y,))

        # --- generator: D's weights need no gradient here, only its input does
        if update_g:
            out["loss_g"] = generator_update(D, opt_g, lambda: generator_loss(self.adversary, lambda: D(fake, y),
                                                                              self.autocast()))
        return out

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        c = self.config
        x = self.check_image_batch(batch)
        with torch.no_grad():
            y = batch.get("labels") if c.conditional else None
            fake = self.generator(self._noise(x.size(0)), y)
            if fake.shape != x.shape:
                raise SozoError(f"the generator makes {tuple(fake.shape[1:])} images "
                                f"but the data is {tuple(x.shape[1:])}")
            logits = self.discriminator(to_float(x), y)
            if logits.shape != (x.size(0),):
                raise SozoError(f"the discriminator gives {tuple(logits.shape)} instead of ({x.size(0)},)")

    # --- sampling ------------------------------------------------------------------------
    def latents(self, n: int, seed: int | None) -> torch.Tensor:
        """(n, latent) normals drawn on the CPU from ``seed``, so a seed gives the same images on any device."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.config.latent_dim, generator=gen)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                 batch_size: int | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from latents, in batches, with the generator in eval mode.

        Batches of 1,024 on a GPU; 128 on a CPU, where larger batches fall out of cache (measured:
        DCGAN-28 at 128 makes 4,700 images/s, at 1,024 3,200)."""
        batch_size = batch_size or (1024 if self.device.type == "cuda" else 128)
        was_training = self.generator.training
        self.generator.eval()
        try:
            outs = []
            for i in range(0, z.size(0), batch_size):
                y = labels[i:i + batch_size].to(self.device) if labels is not None else None
                with self.autocast():
                    outs.append(self.generator(z[i:i + batch_size].to(self.device), y).float().cpu())
            return torch.cat(outs) if outs else torch.empty(0, self.config.channels, self.config.image_size,
                                                            self.config.image_size)
        finally:
            self.generator.train(was_training)

    def sample(self, n: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]; a seed gives the same images every time.

        ``labels`` (conditional models only): a class id or name for all, a tensor of ids, or None
        to cycle through the classes.
        """
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        return self.generate(self.latents(n, seed), self.label_ids(labels, n))

    def interpolate(self, paths: int, steps: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """Spherical walks between pairs of random latents: (steps, paths, C, H, W)."""
        if steps < 2 or paths < 1:
            raise SozoError(f"interpolation needs at least 2 steps and 1 path, got steps={steps}, paths={paths}")
        self.check_sample_memory(steps * paths, "frames")
        z = self.latents(2 * paths, seed)
        a, b = z[:paths], z[paths:]  # (P, L)
        t = torch.linspace(0, 1, steps)
        walk = torch.stack([slerp(a, b, float(ti)) for ti in t])  # (S, P, L)
        ids = self.label_ids(labels, paths)
        ids_all = ids.repeat(steps) if ids is not None else None
        imgs = self.generate(walk.reshape(steps * paths, -1), ids_all)
        return imgs.view(steps, paths, *imgs.shape[1:])

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A grid from fixed noise; conditional models get a column per class (full rows)."""
        if self.config.conditional:
            k = self.config.num_classes
            return save_grid(self.sample(-(-n // k) * k, seed=seed), path, nrow=k)
        return save_grid(self.sample(n, seed=seed), path)

    def write_interpolation(self, path: Path, steps: int, paths: int, seed: int, labels: Any = None) -> Path:
        """A PNG strip (a row per walk) or an animated GIF (a frame per step)."""
        return save_walk(self.interpolate(paths, steps, seed, labels), path)  # (S, P, C, H, W) walks


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (B, L); falls back to linear when parallel."""
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1).clamp(-1, 1)).unsqueeze(1)  # (B, 1)
    so = torch.sin(omega)
    lin = (1 - t) * a + t * b
    sph = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return torch.where(so.abs() < 1e-6, lin, sph)


def _family(name: str, description: str, presets: dict[str, dict[str, Any]] | None = None, **defaults: Any) -> type:
    return register_variant(GAN, name, description, presets, **defaults)


_family("gan", "MLP GAN of the textbook chapter (latent 20, hidden 100, LeakyReLU 0.01, dropout 0.5, no bias on "
               "the critic's first layer); preset=sozo: sozo's first (LeakyReLU 0.2, that bias); preset=deep: "
               "128-256-512-1024 with batch norm",
        presets={"textbook": {}, "sozo": {"mlp_slope": 0.2, "d_first_bias": True},
                 "deep": {"latent_dim": 100, "g_hidden": [128, 256, 512, 1024], "g_batchnorm": True,
                          "d_hidden": [512, 256], "d_dropout": 0.0, "mlp_slope": 0.2, "d_first_bias": True}},
        arch="mlp", latent_dim=20, g_hidden=[100], d_hidden=[100], d_dropout=0.5, init_std=0.0, lr_g=2e-4, lr_d=2e-4,
        mlp_slope=0.01, d_first_bias=False)
# dcgan's recipe: Adam 6e-4 for both networks (the chapter's 2e-4 x 3): at equal wall time it reaches FD-LeNet 15
# on the digits in about half the epochs (benchmarks/time_to_quality.py); wide keeps the 2e-4 it was measured with
_family("dcgan", "DCGAN: the GAN chapter's networks as it prints them (28x28: 100-128-64-32-1 from 4x4, no bias), "
                 "batch norm, BCE, Adam 6e-4 (the chapter: 2e-4); preset=wide: sozo's first DCGAN (from 7x7, a last "
                 "3x3 conv, 2e-4); preset=64: 64x64 RGB",
        presets={"mnist": {}, "wide": {"layout": "sozo", "lr_g": 2e-4, "lr_d": 2e-4},
                 "64": {"image_size": 64, "width": 64, "lr_g": 1e-4, "lr_d": 1e-4}},
        arch="conv", layout="chapter", lr_g=6e-4, lr_d=6e-4)
_family("wgan", "WGAN: sozo's first DCGAN networks (dcgan preset=wide), Wasserstein loss with weight clipping "
                "(RMSprop, n_critic 5, clip 0.01)",
        arch="conv", objective="wasserstein-clip", optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5, n_critic=5)
_family("wgan-gp", "WGAN-GP: sozo's first DCGAN networks (dcgan preset=wide), gradient penalty (lambda 10, "
                   "n_critic 5), instance-norm critic, Adam 1e-4 (0.5, 0.9)",
        arch="conv", objective="wasserstein-gp", d_norm="instance", lr_g=1e-4, lr_d=1e-4, beta1=0.5, beta2=0.9,
        n_critic=5)
_family("cgan", "Conditional DCGAN (sozo's first DCGAN networks): a class embedding into both networks; "
                "sample any digit with --label",
        arch="conv", conditional=True)
