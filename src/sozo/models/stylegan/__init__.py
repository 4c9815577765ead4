"""StyleGAN (Karras et al. 2019, with StyleGAN2's modulated convolutions, Karras et al. 2020).

A family of its own package, a subclass of the GAN class: it keeps the GAN family's pieces (the
adversary from ``sozo.nn.adversarial``, DiffAugment, the optimisers, the latents, the image measures,
the EMA of the generator only) and brings its own networks (``networks.py``; the shared blocks of
``sozo.nn.progressive``), its own step (the non-saturating loss with R1 applied lazily, every
``r1_every`` critic updates at ``r1_every`` times the weight, as in StyleGAN2) and its own sampler
(seeded noise inputs, the truncation trick, the style-mixing grid).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...data.images import to_float
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row
from ...nn.adversarial import (
    ObjectiveName,
    PenaltyChoice,
    adversary,
    critic_loss,
    critic_step,
    generator_loss,
    generator_update,
    r1_penalty,
)
from ...nn.progressive import ProgressiveDiscriminator, resolutions
from ...registry import register_model
from ...viz.grid import save_grid
from ..base import resolved_sizes
from ..gan.karras import KarrasConfig, KarrasGAN
from ..images import IMAGE_TABLE
from .networks import StyleGenerator, style_bands


@dataclass
class StyleGANConfig(KarrasConfig):
    """StyleGAN's networks and training; the GAN options it shares keep their meaning (the conv-net
    layout options do not apply)."""

    preset: str = ""
    latent_dim: int = 128  # z
    w_dim: int = 128  # w, the style space
    mapping_layers: int = 4  # dense layers of the mapping network (the paper: 8)
    mapping_lr_mul: float = 0.01  # the mapping network's learning rate multiplier (the paper's 0.01)
    style_mixing: float = 0.9  # probability that a training image mixes two latents' styles
    w_avg_beta: float = 0.995  # decay of the running mean of w (the centre truncation pulls towards)
    # the non-saturating loss (bce) with R1 on real images, every r1_every critic updates (lazy regularisation)
    objective: ObjectiveName = "bce"
    penalty: PenaltyChoice = "r1"
    penalty_weight: float | None = 1.0  # R1's gamma
    r1_every: int = 4
    lr_g: float = 2e-3
    lr_d: float = 2e-3

    def validate(self) -> None:
        super().validate()
        if self.objective not in ("bce", "hinge", "least-squares") or self.penalty not in ("r1", "none"):
            raise SozoError(f"stylegan trains with bce, hinge or least-squares and penalty r1 or none, got "
                            f"{self.objective} / {self.penalty}",
                            hint="for example --set objective=bce --set penalty=r1")
        if self.ada:
            raise SozoError("stylegan takes DiffAugment (diffaug) but not ada here", hint="leave out --set ada=true")
        for name in ("w_dim", "mapping_layers", "r1_every"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.style_mixing <= 1 or not 0 <= self.w_avg_beta < 1 or not self.mapping_lr_mul > 0:
            raise SozoError("stylegan needs 0 <= style_mixing <= 1, 0 <= w_avg_beta < 1 and mapping_lr_mul > 0")
        if self.conditional:
            raise SozoError("stylegan is unconditional here", hint="train cgan for digits by label")


TRUNCATIONS = (0.7, 0.5)  # the trade-off curve `sozo evaluate` measures beside psi = 1 (no truncation)
STYLEGAN_TABLE = IMAGE_TABLE.with_rows(
    *(Row(f"fd_psi_{psi}", f"  FD at truncation psi {psi}", "{:.2f}") for psi in TRUNCATIONS),
    *(Row(f"recall_psi_{psi}", f"  recall at psi {psi}", "{:.2f}") for psi in TRUNCATIONS))


@register_model("stylegan")
class StyleGAN(KarrasGAN):
    """Mapping network + styles by modulated convs + noise inputs + constant input; ProGAN's critic."""

    description = ("StyleGAN (Karras et al. 2019; StyleGAN2's modulated convs): mapping network (4 layers), "
                   "constant input, per-layer styles, noise inputs, style mixing 0.9, non-saturating loss + lazy "
                   "R1 (gamma 1), ProGAN's critic with minibatch stddev, EMA of G 0.999; sozo sample --truncation "
                   "0.7; sozo style-mix RUN; preset=paper: 8 mapping layers, 512-d")
    Config = StyleGANConfig
    train_defaults = {"ema": 0.999}
    sample_options = ("truncation",)
    generator: StyleGenerator
    discriminator: ProgressiveDiscriminator

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"digits": {}, "paper": {"mapping_layers": 8, "latent_dim": 512, "w_dim": 512, "penalty_weight": 10.0}}

    def networks(self, config: Any) -> tuple[StyleGenerator, ProgressiveDiscriminator]:
        c = config
        size, channels, width = resolved_sizes(c, "image_size", "channels", "width")
        self.objective_only = adversary(c.objective, "none")  # the critic's loss on the steps without R1
        return (StyleGenerator(c.latent_dim, c.w_dim, c.mapping_layers, size, channels, width, c.mapping_lr_mul,
                               c.style_mixing, c.w_avg_beta),
                ProgressiveDiscriminator(size, channels, width, c.mbstd_group))

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss",)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        G, D = self.generator, self.discriminator
        real = to_float(batch["images"])  # (B, C, H, W) in [-1, 1]
        with self.autocast():
            fake = G(self._noise(real.size(0)))  # styles mixed, w_avg updated (training mode)
        loss_d, out = critic_loss(self.objective_only, D, self.augment(real), self.augment(fake.detach()),
                                  self.autocast())
        pen = self.adversary.penalty
        if pen is not None and step % c.r1_every == 0:  # lazy R1: every r1_every updates, r1_every times the weight
            r1 = r1_penalty(lambda x: D(x), self.augment(real))
            loss_d = loss_d + pen.term(r1, self.adversary.penalty_weight * c.r1_every)
            out["r1"] = r1.detach()
        critic_step(self.objective_only, self.optimizers["discriminator"], loss_d, D)
        out["loss_g"] = generator_update(D, self.optimizers["generator"], lambda: generator_loss(
            self.objective_only, lambda: D(self.augment(fake)), self.autocast()))
        return out

    eval_table = STYLEGAN_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures (psi = 1), then FD and recall at each truncation psi of ``TRUNCATIONS``
        (the same n, seed and reference): the truncation trade-off curve."""
        res = super().measure(context, options)
        ev = self.image_evaluator(context, options)
        for psi in TRUNCATIONS:
            scored = ev.score(self, options.n or res["n_generated"], options.seed, truncation=psi)
            res[f"fd_psi_{psi}"], res[f"recall_psi_{psi}"] = scored["fd"], scored.get("recall")
        return res

    # --- sampling ------------------------------------------------------------------------
    def noises(self, n: int, seed: int | None) -> list[torch.Tensor]:
        """One (n, 1, r, r) noise map per conv, drawn on the CPU from ``seed`` (after its latents)."""
        gen = torch.Generator()
        if seed is None:
            gen.seed()  # a fresh draw of this generator's own (the global RNG is left alone)
        else:
            gen.manual_seed(seed + 1)
        return [torch.randn(n, *shape, generator=gen) for shape in self.generator.noise_shapes()]

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None,
                   batch_size: int | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from styles (N, num_ws, w_dim) and per-image noise (fixed
        noise from seed 0, the same for every image, when None), in batches, in eval mode."""
        batch_size = batch_size or (1024 if self.device.type == "cuda" else 128)
        noise = noise if noise is not None else self.noises(1, 0)
        G = self.generator
        was_training = G.training
        G.eval()
        try:
            outs = []
            for i in range(0, ws.size(0), batch_size):
                nz = [m[i:i + batch_size] if m.size(0) > 1 else m for m in noise]
                with self.autocast():
                    img = G.synthesis(ws[i:i + batch_size].to(self.device), [m.to(self.device) for m in nz])
                outs.append(img.float().clamp(-1, 1).cpu())
            return torch.cat(outs)
        finally:
            G.train(was_training)

    @torch.no_grad()
    def styles(self, z: torch.Tensor, truncation: float | None = None) -> torch.Tensor:
        """(N, num_ws, w_dim) styles of latents ``z`` (on the CPU), truncated by psi (eval mode: no mixing)."""
        G = self.generator
        was_training = G.training
        G.eval()
        try:
            return torch.cat([G.styles(z[i:i + 1024].to(self.device), truncation).float().cpu()
                              for i in range(0, z.size(0), 1024)])
        finally:
            G.train(was_training)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                 batch_size: int | None = None, truncation: float | None = None) -> torch.Tensor:
        """Images from latents with the same fixed noise for all (interpolations stay smooth)."""
        return self.synthesize(self.styles(z, truncation), None, batch_size)

    def sample(self, n: int, seed: int | None = None, labels: Any = None,
               truncation: float | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]: latents and noise from ``seed``; ``truncation`` psi
        pulls every style towards the mean w (1 or None: none; 0: the mean w's image for every z)."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        check_truncation(truncation)
        self.label_ids(labels, n)  # refuses --label
        self.check_sample_memory(n)
        return self.synthesize(self.styles(self.latents(n, seed), truncation), self.noises(n, seed))

    def style_mix(self, rows: int, cols: int, seed: int = 0, truncation: float | None = None) -> torch.Tensor:
        """The StyleGAN paper's figure 3 as one grid of images ((1 + 3 rows) x (1 + cols), N, C, H, W):
        the top row holds ``cols`` source-A images (after a grey corner), then three bands of ``rows``
        rows, coarse, middle and fine: each row starts with a source-B image, followed by each A image
        with B's styles at that band's resolutions (coarse: 4-8 px, middle: 16(-32), fine: the rest).
        One fixed noise for every image, so only the styles differ."""
        if rows < 1 or cols < 1:
            raise SozoError(f"a style-mixing grid needs at least 1 row and 1 column, got {rows} x {cols}")
        check_truncation(truncation)
        self.check_sample_memory((1 + 3 * rows) * (1 + cols), "images")
        G = self.generator
        z = self.latents(cols + rows, seed)
        ws = self.styles(z, truncation)  # (A + B, L, w_dim)
        wa, wb = ws[:cols], ws[cols:]
        layers = {band: [j for i in idx for j in (2 * i, 2 * i + 1)] for band, idx in style_bands(len(G.res)).items()}
        cells = [torch.full((1, *ws.shape[1:]), float("nan")), wa]  # nan: the grey corner, drawn below
        for band in ("coarse", "middle", "fine"):
            for j in range(rows):
                mixed = wa.clone()
                mixed[:, layers[band]] = wb[j, layers[band]]
                cells += [wb[j:j + 1], mixed]
        grid = torch.cat(cells)  # ((1 + 3 rows) (1 + cols), L, w_dim)
        corner = torch.isnan(grid[:, 0, 0])
        images = self.synthesize(torch.nan_to_num(grid))
        images[corner] = 0.0
        return images

    def write_style_mix(self, path: Path, rows: int, cols: int, seed: int = 0,
                        truncation: float | None = None) -> dict[str, Any]:
        """The style-mixing grid as a PNG; returns what it drew (the bands' resolutions)."""
        save_grid(self.style_mix(rows, cols, seed, truncation), path, nrow=cols + 1)
        res = resolutions(int(self.config.image_size))
        return {"rows": rows, "cols": cols,
                "bands": {band: [res[i] for i in idx] for band, idx in style_bands(len(res)).items()}}


def check_truncation(psi: float | None) -> None:
    if psi is not None and not psi >= 0:
        raise SozoError(f"the truncation psi must be at least 0, got {psi}", hint="for example --truncation 0.7")
