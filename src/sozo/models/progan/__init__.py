"""ProGAN (Karras et al. 2018): progressive growing from 4x4, fade-in of each new resolution, the
equalised learning rate, pixel norm and minibatch standard deviation (``sozo.nn.progressive``).

A family of its own package, a subclass of the GAN class like StyleGAN: the GAN family's adversary
(WGAN-GP by default, as in the paper; any objective and penalty of ``sozo.nn.adversarial``), DiffAugment,
optimisers, latents, measures and the EMA of the generator stay; the networks, the step and the
schedule are ProGAN's.

The schedule is a function of the images seen (``step x batch``): ``stage_images`` at 4x4, then for each
next resolution ``fade_images`` of fade-in (alpha from 0 to 1) and ``stage_images`` at that
resolution alone; the last resolution stays. Nothing but the step decides it, so a resume in the middle
of a fade continues exactly. The model keeps the images seen in a buffer (``seen``, in the weights) so a
run loaded later samples at the stage it reached. While a stage is below the full size, the generator's
images are upsampled (nearest) to it, so samples, grids and measures always have the data's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from ...data.images import to_float
from ...errors import SozoError
from ...nn.adversarial import ObjectiveName, PenaltyChoice, critic_loss, critic_step, generator_loss, generator_update
from ...nn.progressive import ProgressiveDiscriminator, ProgressiveGenerator, resize, resolutions
from ...registry import register_model
from ..base import resolved_sizes
from ..gan.karras import KarrasConfig, KarrasGAN

FadeCurve = Literal["linear", "smooth"]  # how alpha rises through a fade-in (schedule)


@dataclass
class ProGANConfig(KarrasConfig):
    """ProGAN's networks and schedule; the GAN options it shares keep their meaning (the conv-net
    layout options do not apply)."""

    preset: str = ""
    latent_dim: int = 128
    # the growing schedule, in training images: at 4x4, then per new resolution a fade-in and a stable phase
    stage_images: int = 20000  # the paper: 800k
    fade_images: int | None = None  # None: stage_images
    fade_curve: FadeCurve = "linear"  # linear (the paper's alpha) or smooth (smoothstep: slow out of 0 and into 1)
    objective: ObjectiveName = "wasserstein-gp"  # the paper's WGAN-GP, one critic update per generator update
    penalty: PenaltyChoice = "auto"
    drift: float = 0.001  # the paper's epsilon_drift * D(real)^2, which keeps the critic's outputs near 0
    lr_g: float = 1e-3
    lr_d: float = 1e-3

    def validate(self) -> None:
        super().validate()
        if self.stage_images < 1 or (self.fade_images is not None and self.fade_images < 1):
            raise SozoError("'stage_images' and 'fade_images' must be at least 1",
                            hint="for example --set stage_images=20000")
        if self.drift < 0:
            raise SozoError(f"progan needs drift >= 0, got {self.drift}")
        if self.ada or self.conditional:
            raise SozoError("progan is unconditional and takes no ada here", hint="leave out ada / conditional")

    def fades(self) -> int:
        return self.fade_images if self.fade_images is not None else self.stage_images


def schedule(seen: int, stages: int, stage_images: int, fade_images: int,
             curve: FadeCurve = "linear") -> tuple[int, float]:
    """(stage, alpha) after ``seen`` training images: stage 0 for ``stage_images``, then each next stage
    fades in over ``fade_images`` and runs alone for ``stage_images``; the last stage stays, at alpha 1.
    With t = images into the fade / fade_images, alpha is t (``linear``, the paper's) or the smoothstep
    3t^2 - 2t^3 (``smooth``: it leaves 0 slowly, so the new layers take many updates (Adam's steps do not
    shrink with alpha) before they show, and reaches 1 slowly)."""
    if seen < stage_images or stages == 1:
        return 0, 1.0
    t = seen - stage_images
    stage, into = 1 + t // (fade_images + stage_images), t % (fade_images + stage_images)
    if stage >= stages:
        return stages - 1, 1.0
    frac = min(1.0, into / fade_images)
    return stage, (frac * frac * (3.0 - 2.0 * frac) if curve == "smooth" else frac)


@register_model("progan")
class ProGAN(KarrasGAN):
    """Progressive growing with fade-ins; equalised lr, pixel norm, minibatch stddev; WGAN-GP."""

    description = ("ProGAN (Karras et al. 2018): grows from 4x4 to the data's size (28: 4, 7, 14, 28), each new "
                   "resolution faded in over fade_images (default stage_images, 20,000) then trained alone as "
                   "long; equalised lr, pixel norm, minibatch stddev, WGAN-GP + drift, Adam 1e-3 (0, 0.99), EMA 0.999")
    Config = ProGANConfig
    train_defaults = {"ema": 0.999}
    seen: torch.Tensor
    generator: ProgressiveGenerator
    discriminator: ProgressiveDiscriminator

    def __init__(self, config: ProGANConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        self.res = resolutions(int(config.image_size or 0))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))  # training images so far (samples' stage)

    def networks(self, config: Any) -> tuple[ProgressiveGenerator, ProgressiveDiscriminator]:
        c = config
        size, channels, width = resolved_sizes(c, "image_size", "channels", "width")
        return (ProgressiveGenerator(c.latent_dim, size, channels, width),
                ProgressiveDiscriminator(size, channels, width, c.mbstd_group))

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "wdist", "res")

    def stage_at(self, seen: int) -> tuple[int, float]:
        c = self.config
        return schedule(seen, len(self.res), c.stage_images, c.fades(), c.fade_curve)

    def real_at(self, x: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
        """Real images as the critic sees them at (stage, alpha): area-downsampled to the stage's size and,
        while it fades in, blended with the previous size's image upsampled, as the fakes are."""
        r = self.res[stage]
        out = resize(x, r)
        if stage > 0 and alpha < 1.0:
            out = torch.lerp(resize(resize(x, self.res[stage - 1]), r), out, alpha)
        return out

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        G, D = self.generator, self.discriminator
        x = to_float(batch["images"])  # (B, C, H, W) in [-1, 1]
        b = x.size(0)
        stage, alpha = self.stage_at(step * b)  # epoch batches are full (drop_last): step x B images seen
        real = self.real_at(x, stage, alpha)  # (B, C, r, r)
        update_g = step % c.n_critic == 0

        def critic(img: torch.Tensor, *_: Any) -> torch.Tensor:
            return D(self.augment(img), None, stage, alpha)

        with torch.set_grad_enabled(update_g), self.autocast():
            fake = G(self._noise(b), None, stage, alpha, full=False)  # (B, C, r, r)
        loss_d, out = critic_loss(self.adversary, critic, real, fake.detach(), self.autocast())
        if c.drift > 0:
            with self.autocast():
                loss_d = loss_d + c.drift * critic(real).float().pow(2).mean()
        critic_step(self.adversary, self.optimizers["discriminator"], loss_d, D)
        if update_g:
            out["loss_g"] = generator_update(D, self.optimizers["generator"], lambda: generator_loss(
                self.adversary, lambda: critic(fake), self.autocast()))
        self.seen.fill_((step + 1) * b)
        out["res"] = torch.full((), float(self.res[stage]), device=x.device)
        out["alpha"] = torch.full((), alpha, device=x.device)
        return out

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                 batch_size: int | None = None) -> torch.Tensor:
        """Images at the stage the training reached (``seen``), upsampled to the full size."""
        self.generator.stage, self.generator.alpha = self.stage_at(int(self.seen.item()))
        return super().generate(z, labels, batch_size)
