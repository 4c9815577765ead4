"""The GAN family: gan (MLP), dcgan, wgan, wgan-gp, cgan, sngan, sagan, biggan.

One class does the work; the registered names are presets of networks + objective + optimiser.
Objectives, penalties, spectral norm and the update helpers are ``sozo.nn.adversarial``'s.
The step: a critic update on every batch, a generator update on every ``n_critic``-th batch.
The discriminator sees real and fake batches in separate forward passes (with batch norm, a
mixed batch gives a different, worse gradient). With ``diffaug`` both batches go through the same
DiffAugment policy (``sozo.nn.augment``) before the critic, in its update and the generator's; with
``ada`` each op is applied with ADA's probability p, adjusted from sign(D(real)).
BigGAN is the conditional resnet: class-conditional batch norm from a shared embedding with
hierarchical latents in G, the projection critic, orthogonal regularisation of G (``ortho_reg``),
EMA of G, and the truncation trick at sampling (``sample(..., truncation=t)``: |z| > t resampled).
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
from ...evaluation import EvalContext, EvalOptions, Row
from ...nn.adversarial import (
    Adversary,
    ObjectiveName,
    PenaltyChoice,
    add_spectral_norm,
    adversary,
    compiled_networks,
    critic_loss,
    critic_step,
    generator_loss,
    generator_update,
    orthogonal_penalty,
)
from ...nn.augment import Ada, check_policy, diff_augment
from ...nn.blocks import SelfAttention
from ...nn.init import normal_init
from ...registry import register_variant
from ...viz.grid import save_grid, save_walk
from ..base import GenerativeModel, resolved_sizes
from ..images import DEFAULT_SAMPLES, IMAGE_TABLE, ImageModel, fit_image_config
from .networks import (
    BigGANGenerator,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    ProjectionDiscriminator,
    ResNetDiscriminator,
    ResNetGenerator,
    StandardDiscriminator,
    attention_sizes,
    conv_sizes,
    conv_start,
    insert_attention,
    map_sizes,
)

# the thresholds of biggan's quality/diversity curve in `sozo evaluate` (None: no truncation, the table's top rows)
TRUNCATIONS = (2.0, 1.0, 0.5, 0.25)


def _curve_point(t: float) -> Row:
    def get(d: dict[str, Any]) -> str | None:
        p = next((p for p in d.get("truncation_curve", ()) if p["truncation"] == t), None)
        if p is None:
            return None
        return f"{p['fd']:.2f} / {p['precision']:.2f} / {p['recall']:.2f} / {p.get('mode_entropy', float('nan')):.2f}"
    return Row(f"truncation_{t}", f"  truncation {t}: FD / prec / recall / modes", "{}", get=get)


# the image league table with the truncation curve: FD, precision, recall and mode entropy at each threshold
TRUNCATION_TABLE = IMAGE_TABLE.with_rows(*[_curve_point(t) for t in TRUNCATIONS])


@dataclass
class GANConfig:
    """Networks, objective and optimiser of a GAN. Sizes left at None follow the data."""

    preset: str = ""
    # mlp, conv (DCGAN's stacks), resnet (SNGAN's residual networks: up blocks in G, down blocks in D; with
    # conditional=true, BigGAN's: class-conditional BN from a shared embedding, hierarchical z, projection critic)
    arch: Literal["mlp", "conv", "resnet"] = "conv"
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
    d_width: int | None = None  # the critic's width (None: width's)
    # chapter: the GAN chapter's networks as it prints them (28x28: G 4 -> 7 -> 14 -> 28 from 4x4, no bias
    # anywhere); sozo: sozo's first DCGAN (28x28: G from 7x7 with a last 3x3 conv; biases on the critic's ends)
    layout: Literal["chapter", "sozo"] = "sozo"
    # the conv critic: dcgan (strided convs with a norm) or standard (SNGAN's "standard CNN": 3x3 then
    # strided convs, LeakyReLU 0.1, no norm)
    d_layout: Literal["dcgan", "standard"] = "dcgan"
    g_act: Literal["relu", "leaky"] = "leaky"
    g_norm: Literal["batch", "none"] = "batch"
    d_norm: Literal["batch", "instance", "layer", "none"] = "batch"
    init_std: float = 0.02  # N(0, std) weights as in the DCGAN paper (0: PyTorch's default init)
    spectral_norm: bool = False  # spectral normalisation of every conv / linear weight of the critic (SNGAN)
    generator_sn: bool = False  # ... and of the generator (SAGAN)
    ortho_reg: float = 0.0  # beta of BigGAN's orthogonal regularisation of G's weights (the paper: 1e-4; 0: none)
    # SAGAN's self-attention block in both networks (conv or resnet) at attention_res x attention_res
    # (None: the largest map both networks have of at most a quarter of the size: 7 for 28 px, 8 for 32,
    # 32 for 128 as in the SAGAN paper)
    attention: bool = False
    attention_res: int | None = None
    # small data: DiffAugment ops (color, translation, cutout) on real and fake before the critic
    diffaug: list[str] = field(default_factory=list)
    ada: bool = False  # adaptive probability p of each op from r_t = E[sign(D(real))] (needs diffaug)
    ada_target: float = 0.6  # the r_t that p is moved toward
    ada_interval: int = 4  # steps between adjustments of p
    ada_speed: float = 20000.0  # images over which p can move from 0 to 1
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
        if self.d_width is not None and self.d_width < 1:
            raise SozoError(f"'d_width' must be at least 1, got {self.d_width}")
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
        if self.arch == "conv" and self.d_layout == "dcgan":
            adv.check_norm(self.d_norm, "d_norm")
        check_policy(self.diffaug)
        if self.ada and not self.diffaug:
            raise SozoError("'ada' sets the probability of the DiffAugment ops, but 'diffaug' names none",
                            hint="for example --set diffaug=color,translation,cutout --set ada=true")
        if not 0 < self.ada_target < 1 or self.ada_interval < 1 or not self.ada_speed > 0:
            raise SozoError("ADA needs 0 < ada_target < 1, ada_interval >= 1 and ada_speed > 0, got "
                            f"{self.ada_target}, {self.ada_interval}, {self.ada_speed}",
                            hint="for example --set ada_target=0.6 --set ada_interval=4 --set ada_speed=20000")
        if (self.attention or self.attention_res is not None) and self.arch == "mlp":
            raise SozoError("self-attention goes into conv or resnet networks, not the MLPs",
                            hint="--set arch=conv (or resnet), or leave out attention")
        if self.arch == "resnet" and self.conditional and (self.attention or self.attention_res is not None):
            raise SozoError("the conditional resnet networks (biggan) take no self-attention block here",
                            hint="leave out attention, or --set conditional=false")
        if self.ortho_reg < 0:
            raise SozoError(f"'ortho_reg' must be at least 0, got {self.ortho_reg}",
                            hint="for example --set ortho_reg=1e-4")

    def adversary(self) -> Adversary:
        """The objective, penalty and clipping these options choose (checked)."""
        return adversary(self.objective, self.penalty, self.penalty_weight, self.clip, self.gp_lambda)


class GAN(ImageModel):
    """Generator + discriminator (critic) trained with one of the objectives."""

    Config = GANConfig
    lr_options = ("lr_g", "lr_d")

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
            self.generator, self.discriminator = conv_networks(c, size, channels, k)
            if c.attention or c.attention_res is not None:
                res = check_attention_res(c, self.generator, self.discriminator, size, channels, k)
                insert_attention(_net(self.generator), _g_probe(c, k), res)
                insert_attention(_net(self.discriminator), _d_probe(c, size, channels, k), res)
        if c.init_std > 0:
            normal_init(self, c.init_std)
        if c.spectral_norm:  # after the init: the normalised weight starts from the initialised one
            add_spectral_norm(self.discriminator)
        if c.generator_sn:
            add_spectral_norm(self.generator)
        self.adversary = c.adversary()
        self.ada: Ada | None = Ada(c.ada_target, c.ada_interval, c.ada_speed) if c.ada else None  # in the state dict

    # --- config --------------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, config: GANConfig, data: Any) -> GANConfig:
        sized = replace(config, arch="conv") if config.arch == "resnet" else config  # the same sizes as conv
        changes = fit_image_config(cls.family, sized, data, lambda s: conv_start(s) is not None, conv_sizes())
        if config.width is None:
            changes["width"] = 32 if changes["image_size"] <= 32 else 64
        out = replace(config, **changes)
        if out.arch != "mlp" and (out.attention or out.attention_res is not None):
            size, channels = changes["image_size"], changes["channels"]
            k = out.num_classes if out.conditional else 0
            out = replace(out, attention=True,
                          attention_res=check_attention_res(out, *conv_networks(out, size, channels, k), size,
                                                            channels, k))
        return out

    # --- training ------------------------------------------------------------------------
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.arch == "conv" else torch.contiguous_format

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "wdist")  # and the critic's Wasserstein estimate (the WGAN objectives log it)

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

        # --- discriminator / critic: real and fake in separate passes (each through the same augmentation
        # policy, its own draws), then any penalty and clipping
        loss_d, out = critic_loss(self.adversary, D, self.augment(real), self.augment(fake.detach()),
                                  self.autocast(), cond=(y,), real_sign=self.ada is not None)
        critic_step(self.adversary, opt_d, loss_d, D)
        if self.ada is not None:
            self.ada.observe(out["real_sign"], real.size(0))
            self.ada.step(step)
            out["ada_p"] = self.ada.p.clone()

        # --- generator: D's weights need no gradient here, only its input does
        if update_g:
            out["loss_g"] = generator_update(D, opt_g, lambda: self._generator_loss(fake, y, out))
        return out

    def _generator_loss(self, fake: torch.Tensor, y: torch.Tensor | None, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective's generator loss, plus beta times the orthogonal penalty of G (``ortho_reg``)."""
        D = self.discriminator
        loss = generator_loss(self.adversary, lambda: D(self.augment(fake), y), self.autocast())
        if self.config.ortho_reg > 0:
            ortho = orthogonal_penalty(self.generator)
            out["ortho"] = ortho.detach()
            loss = loss + self.config.ortho_reg * ortho
        return loss

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the DiffAugment policy (with ADA's p when on); ``x`` itself without one."""
        c = self.config
        if not c.diffaug:
            return x
        return diff_augment(x, c.diffaug, self.ada.p if self.ada is not None else 1.0)

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
    def latents(self, n: int, seed: int | None, truncation: float | None = None) -> torch.Tensor:
        """(n, latent) normals drawn on the CPU from ``seed``, so a seed gives the same images on any device.

        ``truncation`` t (BigGAN's truncation trick): a truncated normal, every value with |z| > t drawn
        again until none is (t = 0: all zeros, the mean); None: the plain normal."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.config.latent_dim, generator=gen)
        if truncation is None:
            return z
        if truncation <= 0:
            return torch.zeros_like(z)
        out = z.abs() > truncation
        while out.any():  # each pass keeps P(|z| <= t) of the rest: a few dozen passes even at t = 0.05
            z[out] = torch.randn(int(out.sum()), generator=gen)
            out = z.abs() > truncation
        return z

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

    def sample(self, n: int, seed: int | None = None, labels: Any = None,
               truncation: float | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]; a seed gives the same images every time.

        ``labels`` (conditional models only): a class id or name for all, a tensor of ids, or None
        to cycle through the classes. ``truncation`` (biggan): the truncation trick's threshold (see
        ``latents``; smaller: cleaner and less varied).
        """
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        if truncation is not None and "truncation" not in self.sample_options:
            raise SozoError(f"'{self.family}' samples take no truncation", hint="train biggan for the truncation trick")
        if truncation is not None and not truncation >= 0:
            raise SozoError(f"the truncation threshold must be at least 0, got {truncation}")
        self.check_sample_memory(n)
        return self.generate(self.latents(n, seed, truncation), self.label_ids(labels, n))

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

    # --- evaluation -----------------------------------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures; for a family that samples with truncation (biggan) also its quality/diversity
        curve: FD, precision, recall and mode entropy of ``options.n`` samples at each of ``TRUNCATIONS``
        (same seed, same real reference)."""
        res = super().measure(context, options)
        if "truncation" not in self.sample_options:
            return res
        ev = self.image_evaluator(context, options)
        n = options.n or DEFAULT_SAMPLES
        keys = ("fd", "kid", "precision", "recall", "mode_entropy", "top_class_share")
        res["truncation_curve"] = [{"truncation": t, **{k: v for k, v in ev.score(self, n, options.seed,
                                                                                truncation=t).items() if k in keys}}
                                   for t in TRUNCATIONS]
        context.count_generated(n * (1 + len(TRUNCATIONS)), f"samples ({n} untruncated and {n} at each threshold)")
        return res

    # --- attention ------------------------------------------------------------------------
    def attention_map(self, n: int, seed: int, pixel: tuple[int, int] | None = None,
                      labels: Any = None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Where one output pixel attends in the generator's self-attention block: ``n`` samples
        (n, C, H, W), each one's attention row of the map position under ``pixel`` (y, x of the output
        image; default its centre) as (n, H, W) weights scaled to [0, 1] per image (nearest upsampling
        of the block's r x r map), and the pixel."""
        block = next((m for m in self.generator.modules() if isinstance(m, SelfAttention)), None)
        if block is None:
            raise SozoError(f"this {self.family} run has no self-attention block",
                            hint="train sagan (or --set attention=true) to get one")
        size = int(self.config.image_size)
        y, x = pixel if pixel is not None else (size // 2, size // 2)
        if not (0 <= y < size and 0 <= x < size):
            raise SozoError(f"--pixel {y},{x} is outside the {size}x{size} images",
                            hint=f"rows and columns from 0 to {size - 1}")
        block.keep = True
        try:
            images = self.sample(n, seed=seed, labels=labels)
            attn = block.attention
        finally:
            block.keep, block.attention = False, None
        assert attn is not None
        attn = attn[-n:].float().cpu()  # (n, N, N): the last batch holds all when n <= the batch
        r = int(round(attn.size(-1) ** 0.5))
        row = attn[:, (y * r // size) * r + x * r // size].view(n, 1, r, r)  # (n, 1, r, r)
        row = row / row.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)
        maps = torch.nn.functional.interpolate(row, size=(size, size), mode="nearest")[:, 0]
        return images, maps, (y, x)

    def write_attention_map(self, path: Path, n: int, seed: int, pixel: tuple[int, int] | None = None,
                            labels: Any = None) -> dict[str, Any]:
        """A PNG: the samples above (the pixel marked green), the attention of that pixel below (red)."""
        images, maps, (y, x) = self.attention_map(n, seed, pixel, labels)
        grey = images.mean(1, keepdim=True).expand(-1, 3, -1, -1).clone()  # (n, 3, H, W) in [-1, 1]
        marked = grey.clone()
        marked[:, :, y, x] = torch.tensor([-1.0, 1.0, -1.0]).view(1, 3)
        heat = 0.35 * grey + 0.65 * torch.stack([2 * maps - 1, -torch.ones_like(maps), 1 - 2 * maps], 1)
        heat[:, :, y, x] = torch.tensor([-1.0, 1.0, -1.0]).view(1, 3)
        save_grid(torch.cat([marked, heat]), path, nrow=n)
        return {"n": n, "pixel": (y, x), "resolution": int(self.config.attention_res or 0)}


def conv_networks(c: GANConfig, size: int, channels: int, k: int) -> tuple[nn.Module, nn.Module]:
    """The conv or resnet generator and critic that ``c`` names (without attention or spectral norm)."""
    (width,) = resolved_sizes(c, "width")
    d_width = c.d_width or width
    if c.arch == "resnet" and k:  # BigGAN's
        if c.latent_dim < 3:
            raise SozoError(f"BigGAN cuts z into a chunk per block: latent_dim={c.latent_dim} is too small",
                            hint="for example --set latent_dim=96")
        return (BigGANGenerator(c.latent_dim, size, channels, width, k, c.embed_dim),
                ProjectionDiscriminator(size, channels, d_width, k))
    if c.arch == "resnet":
        return ResNetGenerator(c.latent_dim, size, channels, width), ResNetDiscriminator(size, channels, d_width)
    g = ConvGenerator(c.latent_dim, size, channels, width, c.g_norm, c.g_act, k, c.embed_dim, layout=c.layout)
    if c.d_layout == "standard":
        if k:
            raise SozoError("the standard critic is unconditional here", hint="--set d_layout=dcgan for cgan")
        return g, StandardDiscriminator(size, channels, d_width)
    return g, ConvDiscriminator(size, channels, d_width, c.d_norm, k, bias=c.layout != "chapter")


def _net(m: nn.Module) -> nn.Sequential:
    """The layer stack of a conv or resnet network (its ``net``)."""
    net = m.net
    assert isinstance(net, nn.Sequential)
    return net


def _g_probe(c: GANConfig, k: int) -> torch.Tensor:
    """What the generator's ``net`` takes: (1, latent [+ embed], 1, 1) for conv, (1, latent) for resnet."""
    width = c.latent_dim + (c.embed_dim if k else 0)
    return torch.zeros(1, width) if c.arch == "resnet" else torch.zeros(1, width, 1, 1)


def _d_probe(c: GANConfig, size: int, channels: int, k: int) -> torch.Tensor:
    return torch.zeros(1, channels + (1 if k else 0), size, size)


def check_attention_res(c: GANConfig, g: nn.Module, d: nn.Module, size: int, channels: int, k: int) -> int:
    """``c.attention_res`` if both networks have maps of that size below the image's (else a SozoError
    listing those they have); None: the largest of them."""
    ok = attention_sizes(map_sizes(_net(g), _g_probe(c, k)), map_sizes(_net(d), _d_probe(c, size, channels, k)), size)
    if not ok:
        raise SozoError(f"the {size}x{size} networks have no map where a self-attention block can go")
    if c.attention_res is None:
        return max([s for s in ok if s <= size // 4] or ok[:1])
    if c.attention_res not in ok:
        raise SozoError(f"attention_res={c.attention_res} is not a resolution the {size}x{size} networks generate "
                        f"(they have: {', '.join(map(str, ok))})", hint=f"for example --set attention_res={ok[-1]}")
    return c.attention_res


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (B, L); falls back to linear when parallel."""
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1).clamp(-1, 1)).unsqueeze(1)  # (B, 1)
    so = torch.sin(omega)
    lin = (1 - t) * a + t * b
    sph = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return torch.where(so.abs() < 1e-6, lin, sph)


def _family(name: str, description: str, presets: dict[str, dict[str, Any]] | None = None,
            **defaults: Any) -> type[GenerativeModel]:
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
# sngan / sagan: dcgan's networks (the critic without its batch norm) so that they cost what dcgan costs on a CPU;
# preset=standard: the SNGAN paper's standard CNN critic; preset=resnet: the residual networks (the papers' own kind)
_family("sngan", "SNGAN (Miyato et al. 2018): spectral norm on every critic weight, hinge loss, Adam 2e-4 (0, 0.9), "
                 "n_critic 1, on dcgan's networks (the critic without batch norm, the generator with ReLU); "
                 "preset=standard: the paper's standard CNN critic (3x3 + strided convs, LeakyReLU 0.1); "
                 "preset=resnet (or --set arch=resnet): the ResNet networks (residual up / down blocks) with the "
                 "paper's n_critic 5",
        presets={"dcgan": {}, "standard": {"d_layout": "standard"}, "resnet": {"arch": "resnet", "n_critic": 5}},
        arch="conv", layout="chapter", g_act="relu", d_norm="none", spectral_norm=True, objective="hinge",
        lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.9)
_family("sagan", "SAGAN (Zhang et al. 2019): sngan's networks with a self-attention block in both (gamma from 0; "
                 "attention_res: 7 for 28 px, a quarter of the size), spectral norm in the critic, hinge loss, "
                 "Adam 2e-4 both (0, 0.9); preset=paper: the paper's spectral norm in both and two time-scale "
                 "G 1e-4 / D 4e-4 (on the digits it collapses to grey by epoch 11); preset=standard / resnet: "
                 "sngan's other networks; sozo sample RUN --attention-map OUT.png",
        presets={"dcgan": {}, "paper": {"generator_sn": True, "lr_g": 1e-4, "lr_d": 4e-4},
                 "standard": {"d_layout": "standard"}, "resnet": {"arch": "resnet"}},
        arch="conv", layout="chapter", g_act="relu", d_norm="none", attention=True, spectral_norm=True,
        generator_sn=False, objective="hinge", lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.9)

# biggan: the conditional resnet networks (BigGAN's G and the projection critic) at sngan's recipe on a CPU;
# the paper's EMA of G (0.999 here: its 0.9999 suits its 100k+ steps, not a few thousand); the paper's 2 critic
# updates per G update: with 1, the critic loses (hinge loss near 2 by 1,400 steps) and each class collapses to one
# drawing (FD-LeNet 9.5 at 2,009 steps against 0.75 and 0.47, two seeds, at 30 CPU minutes with 2)
_biggan = _family(
    "biggan", "BigGAN (Brock et al. 2019): class-conditional batch norm from a shared class embedding with "
              "hierarchical latents (z cut into a chunk per block), a projection critic, spectral norm in both, "
              "hinge loss, two critic updates per generator update (n_critic 2, the paper's), orthogonal "
              "regularisation of G (beta 1e-4), EMA of G (0.999), Adam 2e-4 both (0, 0.999); "
              "sozo sample RUN --truncation T (|z| > T resampled: cleaner, less varied)",
    arch="resnet", conditional=True, latent_dim=96, embed_dim=32, width=32, d_width=16, spectral_norm=True,
    generator_sn=True,
    objective="hinge", n_critic=2, ortho_reg=1e-4, lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.999)
_biggan.sample_options = ("truncation",)
_biggan.eval_table = TRUNCATION_TABLE
_biggan.train_defaults = {**GAN.train_defaults, "ema": 0.999}
